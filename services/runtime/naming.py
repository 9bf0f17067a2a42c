"""Instance names and the ODS database names derived from them."""

from __future__ import annotations

import re

# The rule Ed-Fi's own manage endpoint uses for instance names.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9 _]{1,46}$")
NAME_RULE = "1-46 characters: ASCII letters, digits, space and underscore"
POSTGRES_IDENTIFIER_BYTES = 63


def name_problem(name: str) -> str | None:
    """Why a name is refused, or None when it is acceptable."""
    if not NAME_PATTERN.fullmatch(name):
        return f"must be {NAME_RULE}"
    if not name.strip():
        return "must contain a letter, digit or underscore"
    return None


def database_name(name: str, pattern: str) -> str:
    """`EdFi_Ods_<name>` by default: spaces become underscores."""
    return pattern.format(name=name.replace(" ", "_"))


def database_name_problem(db_name: str, limit: int = POSTGRES_IDENTIFIER_BYTES) -> str | None:
    if len(db_name.encode("utf-8")) > limit:
        return f"the database name {db_name!r} would exceed the server's {limit}-byte limit"
    return None
