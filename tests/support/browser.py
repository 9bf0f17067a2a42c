"""Debian's Chromium driven by Playwright for Python (its `executable_path`: no browser is ever
downloaded), and the dashboard's sign-in, for the browser tests."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.stack import ROOT, Stack

SHOTS = ROOT / "test-artifacts" / "screenshots"
READ_ONLY = "edfi_admin_api/read_only"


def chromium() -> str:
    """Debian's Chromium (`just test` installs it): never a downloaded browser."""
    path = os.environ.get("EDFI_IM_TEST_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("Chromium is missing: `just test` (just browser) installs Debian's `chromium`")
    return path


@contextmanager
def launched() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def opened(browser: Browser) -> Iterator[Page]:
    """A page of its own (own session storage); fails the test if the page's script threw."""
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page's script failed: {errors}"


def register(stack: Stack, scopes: str | None = None) -> tuple[str, str]:
    """A new API client's id and secret."""
    client_id = f"dash-{uuid.uuid4().hex[:10]}"
    secret = f"Dashboard-{uuid.uuid4().hex}-Secret!"
    form = {"ClientId": client_id, "ClientSecret": secret, "DisplayName": "dashboard tests"}
    if scopes:
        form["Scopes"] = scopes
    httpx.post(f"{stack.url}/connect/register", data=form, timeout=10).raise_for_status()
    return client_id, secret


def sign_in(page: Page, stack: Stack, client: tuple[str, str]) -> None:
    page.goto(f"{stack.url}/dashboard")
    page.fill("input[name=clientId]", client[0])
    page.fill("input[name=clientSecret]", client[1])
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#instances")).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
