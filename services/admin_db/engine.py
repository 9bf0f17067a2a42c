"""Engines for the admin database; URLs are plain libpq-style in settings."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def with_driver(url: str, driver: str) -> str:
    """`postgresql://…` → `postgresql+<driver>://…`."""
    parsed = make_url(url)
    return parsed.set(drivername=f"{parsed.get_backend_name()}+{driver}").render_as_string(
        hide_password=False
    )


def database_identity(url: str) -> str:
    """`host:port/database` of a URL (no credentials): what names one admin database."""
    parsed = make_url(url)
    return f"{(parsed.host or 'localhost').lower()}:{parsed.port or 5432}/{parsed.database}"


def create_admin_engine(url: str, pool_size: int = 5) -> AsyncEngine:
    return create_async_engine(
        with_driver(url, "asyncpg"),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )
