"""Instance names and the ODS database names derived from them."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# The rule Ed-Fi's own manage endpoint uses for instance names.
# Ed-Fi Admin API's own rule: 46 leaves room for a prefix within the 63-character limit.
MAX_NAME_LENGTH = 46
NAME_PATTERN = re.compile(rf"^[A-Za-z0-9 _]{{1,{MAX_NAME_LENGTH}}}$")
NAME_RULE = f"1-{MAX_NAME_LENGTH} characters: ASCII letters, digits, space and underscore"
POSTGRES_IDENTIFIER_BYTES = 63


def name_problem(name: str) -> str | None:
    """Why a name is refused, or None when it is acceptable. Beyond Ed-Fi's rule, names that
    people could not tell apart are refused: spaces at either end or two in a row ("Col A x "
    and "Col  A x" look like "Col A x"), and names with no letter or digit ("_", "   ")."""
    if not NAME_PATTERN.fullmatch(name):
        return f"must be {NAME_RULE}"
    if not any(c.isalnum() for c in name):
        return "must contain a letter or a digit"
    if name != name.strip(" "):
        return "must not start or end with a space"
    if "  " in name:
        return "must not have two spaces in a row"
    return None


def database_name(name: str, pattern: str) -> str:
    """`EdFi_Ods_<name>` by default: spaces become underscores."""
    return pattern.format(name=name.replace(" ", "_"))


def database_name_problem(db_name: str, limit: int = POSTGRES_IDENTIFIER_BYTES) -> str | None:
    if len(db_name.encode("utf-8")) > limit:
        return f"the database name {db_name!r} would exceed the server's {limit}-byte limit"
    return None


def printable(value: str) -> str:
    """No control characters (PostgreSQL cannot store NUL, and nobody means a tab in a name)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


# Free text stored as it is: printable characters only.
Printable = Annotated[str, AfterValidator(printable)]
