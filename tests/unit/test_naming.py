"""Instance names (Ed-Fi's rule) and the ODS database names derived from them."""

from __future__ import annotations

import pytest

from services.rules.naming import database_name, database_name_problem, name_problem


@pytest.mark.parametrize(
    "name",
    [
        "Grand Bend",
        "a",
        "A" * 46,
        "Grand_Bend_2024",
        "0123456789",
        "_x",
        "x y z",
    ],
    ids=["words", "one-char", "46-chars", "underscores-digits", "digits", "underscore", "spaces"],
)
def test_valid_name_is_accepted(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A" * 47,
        "O'Brien",
        'Grand "Bend"',
        "Grand;Bend",
        "Grand; DROP DATABASE x",
        "Grand-Bend",
        "Gr\u0430nd Bend",  # Cyrillic 'а' (U+0430) looks like Latin 'a'
        "\uff27rand",  # full-width 'Ｇ'
        "Grand\u00a0Bend",  # no-break space
        "caf\u00e9",
        "Grand\tBend",
        "Grand\nBend",
        "Grand Bend\n",
        "\nGrand",
        " ",
        "    ",
        "Grand.Bend",
        "Grand/Bend",
        "Grand%Bend",
        "Grand{name}",
        "\u0661",  # Arabic-Indic digit one, a Unicode digit
        "_",
        "___",
        "Col A x ",
        "   x",
        "Col  A x",
    ],
    ids=[
        "empty",
        "47-chars",
        "single-quote",
        "double-quote",
        "semicolon",
        "injection",
        "hyphen",
        "cyrillic-a",
        "full-width-G",
        "no-break-space",
        "accented",
        "tab",
        "newline-inside",
        "trailing-newline",
        "leading-newline",
        "one-space",
        "all-spaces",
        "dot",
        "slash",
        "percent",
        "braces",
        "unicode-digit",
        "underscore-only",
        "underscores-only",
        "trailing-space",
        "leading-spaces",
        "doubled-space",
    ],
)
def test_invalid_name_is_refused_with_a_reason(name: str) -> None:
    problem = name_problem(name)
    assert problem is not None
    assert problem.strip()


def test_database_name_replaces_spaces_with_underscores() -> None:
    assert database_name("Grand Bend", "EdFi_Ods_{name}") == "EdFi_Ods_Grand_Bend"


def test_database_name_follows_the_configured_pattern() -> None:
    assert database_name("Grand Bend", "ods_{name}_db") == "ods_Grand_Bend_db"
    assert database_name("A B C", "{name}") == "A_B_C"


def test_database_name_within_63_bytes_is_accepted() -> None:
    assert database_name_problem("x" * 63) is None
    assert database_name_problem(database_name("A" * 46, "EdFi_Ods_{name}")) is None


def test_database_name_over_63_bytes_is_refused_naming_the_database() -> None:
    name = "x" * 64
    problem = database_name_problem(name)
    assert problem is not None
    assert name in problem
    assert "63" in problem


def test_database_name_limit_counts_bytes_not_characters() -> None:
    # 32 two-byte characters: 32 characters but 64 bytes.
    assert database_name_problem("\u00e9" * 32) is not None
    assert database_name_problem("\u00e9" * 31 + "x") is None


def test_long_pattern_makes_a_valid_name_too_long_for_postgresql() -> None:
    db = database_name("A" * 46, "EdFi_Ods_Tenant_Long_{name}")
    assert len(db) > 63
    assert database_name_problem(db) is not None
