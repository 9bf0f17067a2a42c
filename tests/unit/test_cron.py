"""Cron expressions: the Quartz dialect and standard cron, their next fire times, and DST.

Every expected instant below was worked out from a calendar (2026: January 1st is a Thursday),
not by asking the code. Daylight saving time in 2026:
* America/Chicago: 2026-03-08 02:00 CST -> 03:00 CDT (08:00 UTC); 2026-11-01 02:00 CDT ->
  01:00 CST (07:00 UTC), so 01:00-01:59 local happens twice (06:00-06:59 and 07:00-07:59 UTC).
* Europe/London: 2026-03-29 01:00 GMT -> 02:00 BST (01:00 UTC); 2026-10-25 02:00 BST ->
  01:00 GMT (01:00 UTC), so 01:00-01:59 local happens twice (00:00-00:59 and 01:00-01:59 UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from services.rules.cron import CronError, parse, to_utc

UTC_ZONE = ZoneInfo("UTC")
CHICAGO = ZoneInfo("America/Chicago")
LONDON = ZoneInfo("Europe/London")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fires(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Every fire instant strictly after `start`, up to and including `end`."""
    cron = parse(expression)
    out: list[datetime] = []
    at = cron.next_after(start, zone)
    while at is not None and at <= end:
        out.append(at)
        at = cron.next_after(at, zone)
    return out


def first_fires(expression: str, zone: ZoneInfo, start: datetime, count: int) -> list[datetime]:
    """The first `count` fire instants strictly after `start` (fewer when it stops firing)."""
    cron = parse(expression)
    out: list[datetime] = []
    at = cron.next_after(start, zone)
    while at is not None and len(out) < count:
        out.append(at)
        at = cron.next_after(at, zone)
    return out


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # Every day at 09:00.
        ("0 0 9 * * ?", utc(2026, 1, 1, 8, 59, 59), utc(2026, 1, 1, 9)),
        ("0 0 9 * * ?", utc(2026, 1, 1, 9), utc(2026, 1, 2, 9)),  # strictly after
        ("0 0 9 * * ?", utc(2026, 1, 31, 10), utc(2026, 2, 1, 9)),
        ("0 0 9 * * ?", utc(2026, 12, 31, 9, 0, 1), utc(2027, 1, 1, 9)),
        # Mondays at 08:00 (Thursday the 1st -> Monday the 5th).
        ("0 0 8 ? * MON", utc(2026, 1, 1), utc(2026, 1, 5, 8)),
        ("0 0 8 ? * MON", utc(2026, 1, 5, 8), utc(2026, 1, 12, 8)),
        ("0 0 8 ? * mon", utc(2026, 1, 1), utc(2026, 1, 5, 8)),
        # Every 15 minutes.
        ("0 */15 * * * ?", utc(2026, 1, 1, 10, 7), utc(2026, 1, 1, 10, 15)),
        ("0 */15 * * * ?", utc(2026, 1, 1, 10, 15), utc(2026, 1, 1, 10, 30)),
        ("0 */15 * * * ?", utc(2026, 1, 1, 10, 45), utc(2026, 1, 1, 11)),
        ("0 */15 * * * ?", utc(2026, 12, 31, 23, 50), utc(2027, 1, 1)),
        # Hourly on weekdays: Friday 2026-01-02 23:00 -> Monday 2026-01-05 00:00.
        ("0 0 * ? * MON-FRI", utc(2026, 1, 2, 22, 30), utc(2026, 1, 2, 23)),
        ("0 0 * ? * MON-FRI", utc(2026, 1, 2, 23), utc(2026, 1, 5)),
        ("0 0 * ? * MON-FRI", utc(2026, 1, 5), utc(2026, 1, 5, 1)),
        # Numeric Quartz days of the week: Sunday = 1 ... Saturday = 7.
        ("0 0 12 ? * 2", utc(2026, 1, 1), utc(2026, 1, 5, 12)),  # Monday
        ("0 0 12 ? * 1", utc(2026, 1, 1), utc(2026, 1, 4, 12)),  # Sunday
        ("0 0 12 ? * SUN", utc(2026, 1, 1), utc(2026, 1, 4, 12)),
        ("0 0 12 ? * 7", utc(2026, 1, 1), utc(2026, 1, 3, 12)),  # Saturday
        ("0 0 12 ? * 5", utc(2026, 1, 1), utc(2026, 1, 1, 12)),  # Thursday
        ("0 0 12 ? * 2-6", utc(2026, 1, 2, 13), utc(2026, 1, 5, 12)),  # Mon-Fri
        ("0 0 12 ? * 2-6", utc(2026, 1, 2, 11), utc(2026, 1, 2, 12)),
        # L alone in day-of-week is the last day of the week: Saturday.
        ("0 0 12 ? * L", utc(2026, 1, 1), utc(2026, 1, 3, 12)),
        # Seconds.
        ("*/10 * * * * ?", utc(2026, 1, 1, 12, 0, 5), utc(2026, 1, 1, 12, 0, 10)),
        ("*/10 * * * * ?", utc(2026, 1, 1, 12, 0, 10), utc(2026, 1, 1, 12, 0, 20)),
        ("*/10 * * * * ?", utc(2026, 1, 1, 12, 0, 55), utc(2026, 1, 1, 12, 1)),
        ("15 * * * * ?", utc(2026, 1, 1, 12), utc(2026, 1, 1, 12, 0, 15)),
        ("30 15 10 * * ?", utc(2026, 1, 1, 11), utc(2026, 1, 2, 10, 15, 30)),
        # Seven fields: the year.
        ("0 0 12 1 1 ? 2027", utc(2026, 6, 1), utc(2027, 1, 1, 12)),
        ("0 0 12 1 1 ? 2027-2028", utc(2027, 1, 1, 12), utc(2028, 1, 1, 12)),
        ("0 0 12 ? * MON 2027", utc(2026, 6, 1), utc(2027, 1, 4, 12)),
        ("0 0 12 1 1 ? *", utc(2026, 6, 1), utc(2027, 1, 1, 12)),
        # Standard five fields: minute first, Sunday = 0 or 7, Monday = 1.
        ("30 9 * * 1-5", utc(2026, 1, 2, 10), utc(2026, 1, 5, 9, 30)),
        ("0 12 * * 0", utc(2026, 1, 1), utc(2026, 1, 4, 12)),
        ("0 12 * * 7", utc(2026, 1, 1), utc(2026, 1, 4, 12)),
        ("0 12 * * 6", utc(2026, 1, 1), utc(2026, 1, 3, 12)),
        ("*/5 * * * *", utc(2026, 1, 1, 10, 2, 30), utc(2026, 1, 1, 10, 5)),
        ("0 0 1 * *", utc(2026, 1, 15), utc(2026, 2, 1)),
        ("0 9 * * ?", utc(2026, 1, 1, 10), utc(2026, 1, 2, 9)),
    ],
)
def test_known_next_fire_times_in_utc(expression: str, after: datetime, expected: datetime) -> None:
    assert parse(expression).next_after(after, UTC_ZONE) == expected


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # Last Friday of the month (6L): January 30th, February 27th, March 27th.
        ("0 0 12 ? * 6L", utc(2026, 1, 1), [utc(2026, 1, 30, 12), utc(2026, 2, 27, 12)]),
        ("0 0 12 ? * 6L", utc(2026, 3, 1), [utc(2026, 3, 27, 12), utc(2026, 4, 24, 12)]),
        # Last Saturday (7L): January 31st, February 28th.
        ("0 0 12 ? * 7L", utc(2026, 1, 1), [utc(2026, 1, 31, 12), utc(2026, 2, 28, 12)]),
        # Second Monday (2#2): January 12th, February 9th, March 9th.
        (
            "0 0 12 ? * 2#2",
            utc(2026, 1, 1),
            [utc(2026, 1, 12, 12), utc(2026, 2, 9, 12), utc(2026, 3, 9, 12)],
        ),
        ("0 0 12 ? * MON#2", utc(2026, 1, 1), [utc(2026, 1, 12, 12), utc(2026, 2, 9, 12)]),
        # Fifth Friday (6#5): only January, May and July have one before August.
        (
            "0 0 12 ? * 6#5",
            utc(2026, 1, 1),
            [utc(2026, 1, 30, 12), utc(2026, 5, 29, 12), utc(2026, 7, 31, 12)],
        ),
        # Last day of the month (L), leap years included.
        (
            "0 0 12 L * ?",
            utc(2026, 1, 1),
            [utc(2026, 1, 31, 12), utc(2026, 2, 28, 12), utc(2026, 3, 31, 12)],
        ),
        ("0 0 12 L 2 ?", utc(2027, 3, 1), [utc(2028, 2, 29, 12), utc(2029, 2, 28, 12)]),
        # Every other day of the week from Sunday (1/2): Sun, Tue, Thu, Sat.
        (
            "0 0 12 ? * 1/2",
            utc(2026, 1, 1),
            [
                utc(2026, 1, 1, 12),  # Thursday
                utc(2026, 1, 3, 12),  # Saturday
                utc(2026, 1, 4, 12),  # Sunday
                utc(2026, 1, 6, 12),  # Tuesday
                utc(2026, 1, 8, 12),  # Thursday
            ],
        ),
        # From Monday every other day (2/2) runs to the end of the week: Mon, Wed, Fri.
        (
            "0 0 12 ? * 2/2",
            utc(2026, 1, 1),
            [utc(2026, 1, 2, 12), utc(2026, 1, 5, 12), utc(2026, 1, 7, 12), utc(2026, 1, 9, 12)],
        ),
        # Nearest weekday to the 15th (15W).
        ("0 0 12 15W * ?", utc(2026, 1, 1), [utc(2026, 1, 15, 12)]),  # a Thursday
        ("0 0 12 15W * ?", utc(2026, 3, 1), [utc(2026, 3, 16, 12)]),  # Sunday -> Monday 16th
        ("0 0 12 15W * ?", utc(2026, 8, 1), [utc(2026, 8, 14, 12)]),  # Saturday -> Friday 14th
        ("0 0 12 15W * ?", utc(2026, 11, 1), [utc(2026, 11, 16, 12)]),  # Sunday -> Monday 16th
        # 1W on a Saturday stays in its month: Monday the 3rd.
        ("0 0 12 1W * ?", utc(2026, 7, 31), [utc(2026, 8, 3, 12)]),
        # Last weekday of the month (LW).
        (
            "0 0 12 LW * ?",
            utc(2026, 1, 1),
            [utc(2026, 1, 30, 12), utc(2026, 2, 27, 12), utc(2026, 3, 31, 12)],
        ),
        ("0 0 12 LW * ?", utc(2026, 5, 1), [utc(2026, 5, 29, 12)]),  # the 31st is a Sunday
        ("30 15 10 LW * ?", utc(2026, 3, 1), [utc(2026, 3, 31, 10, 15, 30)]),
        ("0 0 12 LW * ?", utc(2026, 1, 30, 12), [utc(2026, 2, 27, 12)]),  # strictly after
        # A year, then nothing.
        ("0 0 12 1 1 ? 2027", utc(2026, 6, 1), [utc(2027, 1, 1, 12)]),
        ("0 0 12 1 1 ? 2027-2028", utc(2026, 6, 1), [utc(2027, 1, 1, 12), utc(2028, 1, 1, 12)]),
    ],
)
def test_known_fire_sequences(expression: str, after: datetime, expected: list[datetime]) -> None:
    assert first_fires(expression, UTC_ZONE, after, len(expected)) == expected


@pytest.mark.parametrize("expression", ["0 0 12 ? * FRIL", "0 0 12 ? * fril"])
def test_the_last_weekday_of_the_month_by_name(expression: str) -> None:
    assert first_fires(expression, UTC_ZONE, utc(2026, 1, 1), 2) == [
        utc(2026, 1, 30, 12),
        utc(2026, 2, 27, 12),
    ]


@pytest.mark.parametrize(
    ("expression", "after"),
    [
        ("0 0 0 30 2 ?", utc(2026, 1, 1)),  # February 30th
        ("0 0 0 31 4 ?", utc(2026, 1, 1)),  # April 31st
        ("0 0 12 1 1 ? 2020", utc(2026, 1, 1)),  # a year gone by
        ("0 0 12 1 1 ? 2027", utc(2027, 1, 1, 12)),  # its only fire is not strictly after
    ],
)
def test_an_expression_that_never_fires_again_has_no_next_time(
    expression: str, after: datetime
) -> None:
    assert parse(expression).next_after(after, UTC_ZONE) is None


def test_the_next_fire_is_strictly_after_a_sub_second_instant() -> None:
    after = datetime(2026, 1, 1, 9, 0, 0, 500_000, tzinfo=UTC)
    assert parse("0 0 9 * * ?").next_after(after, UTC_ZONE) == utc(2026, 1, 2, 9)
    assert parse("0 9 * * *").next_after(after, UTC_ZONE) == utc(2026, 1, 2, 9)


def test_the_next_fire_is_in_utc_whatever_the_offset_of_the_instant_given() -> None:
    after = datetime(2026, 1, 15, 8, 0, tzinfo=CHICAGO)  # 14:00 UTC
    result = parse("0 0 9 * * ?").next_after(after, CHICAGO)
    assert result == utc(2026, 1, 15, 15)
    assert result is not None
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        # 09:00 in Chicago: CST (UTC-6) in winter, CDT (UTC-5) in summer.
        ("0 0 9 * * ?", CHICAGO, utc(2026, 1, 15), utc(2026, 1, 15, 15)),
        ("0 0 9 * * ?", CHICAGO, utc(2026, 7, 15), utc(2026, 7, 15, 14)),
        ("0 9 * * *", CHICAGO, utc(2026, 1, 15), utc(2026, 1, 15, 15)),
        # 20:00 CST on January 14th is already January 15th in UTC.
        ("0 0 20 * * ?", CHICAGO, utc(2026, 1, 15), utc(2026, 1, 15, 2)),
        # The local day decides the day of the week: Sunday 20:00 CST is Monday 02:00 UTC.
        ("0 0 20 ? * SUN", CHICAGO, utc(2026, 1, 1), utc(2026, 1, 5, 2)),
        # London: GMT in winter, BST (UTC+1) in summer.
        ("0 0 9 * * ?", LONDON, utc(2026, 1, 15), utc(2026, 1, 15, 9)),
        ("0 0 9 * * ?", LONDON, utc(2026, 7, 15), utc(2026, 7, 15, 8)),
        # The last weekday of May in Chicago, at noon CDT.
        ("0 0 12 LW * ?", CHICAGO, utc(2026, 5, 1), utc(2026, 5, 29, 17)),
    ],
)
def test_local_times_in_a_time_zone(
    expression: str, zone: ZoneInfo, after: datetime, expected: datetime
) -> None:
    assert parse(expression).next_after(after, zone) == expected


# Refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "fragments"),
    [
        ("* * * *", ["4 fields", "5", "6-7"]),
        ("0 0 9 * * ? 2027 x", ["8 fields"]),
        ("", ["0 fields"]),
        ("? 0 9 * * ?", ["'?'", "day-of-month or day-of-week"]),  # ? in the seconds field
        ("0 ? 9 * * ?", ["'?'", "day-of-month or day-of-week"]),
        ("0 0 ? * * ?", ["'?'", "day-of-month or day-of-week"]),
        ("0 0 9 * ? ?", ["'?'", "day-of-month or day-of-week"]),
        ("0 0 9 1 1 ? ?", ["'?'", "day-of-month or day-of-week"]),
        ("0 0 12 ? * 0", ["day-of-week", "0", "Sunday = 1"]),
        ("0 0 12 ? * 8", ["day-of-week", "8", "Sunday = 1"]),
        ("0 0 12 ? * 0-5", ["day-of-week", "0"]),
        ("0 0 12 ? * 1-8", ["day-of-week", "8"]),
        ("0 0 12 ? * 8L", ["day-of-week", "8"]),
        ("0 0 12 ? * 0#2", ["day-of-week", "0"]),
        ("0 0 12 ? * FOO", ["day-of-week", "FOO"]),
        ("0 0 12 ? * 2#6", ["day-of-week", "2#6"]),
        ("0 0 12 1 * MON", ["day-of-month", "day-of-week", "'?'"]),
        ("0 0 12 15 * 2", ["day-of-month", "day-of-week", "'?'"]),
        ("0 0 12 L * 6L", ["day-of-month", "day-of-week", "'?'"]),
        ("0 0 12 L-3 * ?", ["day-of-month", "L-3", "L-n"]),
        ("0 0 12 l-1 * ?", ["day-of-month", "L-n"]),
        ("0 0 12 LW * ? 2027", ["LW", "year"]),
        ("0 0 25 * * ?", ["0 0 25 * * ?", "out of range"]),  # hour
        ("0 60 * * * ?", ["0 60 * * * ?", "out of range"]),  # minute
        ("60 * * * * ?", ["60 * * * * ?", "out of range"]),  # second
        ("0 0 12 32 * ?", ["0 0 12 32 * ?", "out of range"]),  # day-of-month
        ("0 0 12 * 13 ?", ["0 0 12 * 13 ?", "out of range"]),  # month
        ("0 0 12 1 1 ? 2150", ["0 0 12 1 1 ? 2150"]),  # year
        ("0 25 * * *", ["0 25 * * *", "out of range"]),  # standard: hour
        ("0 0 * * 8", ["0 0 * * 8"]),  # standard: day-of-week
    ],
)
def test_unreadable_expressions_are_refused_with_a_helpful_message(
    expression: str, fragments: list[str]
) -> None:
    with pytest.raises(CronError) as refused:
        parse(expression)
    for fragment in fragments:
        assert fragment in str(refused.value)


def test_a_cron_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="day-of-week"):
        parse("0 0 12 ? * 0")


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("0 0 25 * * ?", "hour"),
        ("0 60 * * * ?", "minute"),
        ("0 0 12 32 * ?", "day-of-month"),
    ],
)
def test_an_out_of_range_value_is_refused_naming_its_field(expression: str, field: str) -> None:
    with pytest.raises(CronError) as refused:
        parse(expression)
    assert field in str(refused.value)


# Daylight saving time --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "zone", "expected"),
    [
        # Chicago, spring forward: 02:00-02:59 does not exist; the gap ends at 03:00 CDT.
        (datetime(2026, 3, 8, 1, 59, 59), CHICAGO, utc(2026, 3, 8, 7, 59, 59)),
        (datetime(2026, 3, 8, 2, 0), CHICAGO, utc(2026, 3, 8, 8)),
        (datetime(2026, 3, 8, 2, 30), CHICAGO, utc(2026, 3, 8, 8)),
        (datetime(2026, 3, 8, 2, 59, 59), CHICAGO, utc(2026, 3, 8, 8)),
        (datetime(2026, 3, 8, 3, 0), CHICAGO, utc(2026, 3, 8, 8)),
        (datetime(2026, 3, 8, 3, 30), CHICAGO, utc(2026, 3, 8, 8, 30)),
        # Chicago, fall back: 01:00-01:59 happens twice; the first (CDT) is taken.
        (datetime(2026, 11, 1, 0, 59), CHICAGO, utc(2026, 11, 1, 5, 59)),
        (datetime(2026, 11, 1, 1, 0), CHICAGO, utc(2026, 11, 1, 6)),
        (datetime(2026, 11, 1, 1, 30), CHICAGO, utc(2026, 11, 1, 6, 30)),
        (datetime(2026, 11, 1, 2, 0), CHICAGO, utc(2026, 11, 1, 8)),
        # London.
        (datetime(2026, 3, 29, 1, 30), LONDON, utc(2026, 3, 29, 1)),
        (datetime(2026, 3, 29, 2, 0), LONDON, utc(2026, 3, 29, 1)),
        (datetime(2026, 10, 25, 1, 30), LONDON, utc(2026, 10, 25, 0, 30)),
        (datetime(2026, 10, 25, 2, 0), LONDON, utc(2026, 10, 25, 2)),
    ],
)
def test_local_times_map_to_instants(local: datetime, zone: ZoneInfo, expected: datetime) -> None:
    assert to_utc(local, zone) == expected


@pytest.mark.parametrize("expression", ["0 30 2 * * ?", "30 2 * * *"])
def test_a_daily_time_in_the_spring_gap_fires_at_the_end_of_the_gap(expression: str) -> None:
    assert first_fires(expression, CHICAGO, utc(2026, 3, 7), 3) == [
        utc(2026, 3, 7, 8, 30),  # 02:30 CST
        utc(2026, 3, 8, 8),  # 02:30 does not exist: 03:00 CDT
        utc(2026, 3, 9, 7, 30),  # 02:30 CDT
    ]


def test_every_thirty_minutes_across_the_spring_gap_has_no_duplicate_and_nothing_in_the_gap() -> (
    None
):
    got = fires("0 0/30 * * * ?", CHICAGO, utc(2026, 3, 8, 6), utc(2026, 3, 8, 10))
    assert got == [
        utc(2026, 3, 8, 6, 30),  # 00:30 CST
        utc(2026, 3, 8, 7),  # 01:00 CST
        utc(2026, 3, 8, 7, 30),  # 01:30 CST
        utc(2026, 3, 8, 8),  # 03:00 CDT: 02:00, 02:30 and 03:00 all land here, once
        utc(2026, 3, 8, 8, 30),  # 03:30 CDT
        utc(2026, 3, 8, 9),
        utc(2026, 3, 8, 9, 30),
        utc(2026, 3, 8, 10),
    ]
    assert len(set(got)) == len(got)
    local_hours = [at.astimezone(CHICAGO).hour for at in got]
    assert 2 not in local_hours


def test_an_hourly_cron_across_the_spring_gap_skips_the_missing_hour() -> None:
    assert fires("0 0 * * * ?", CHICAGO, utc(2026, 3, 8, 6), utc(2026, 3, 8, 10)) == [
        utc(2026, 3, 8, 7),  # 01:00 CST
        utc(2026, 3, 8, 8),  # 03:00 CDT
        utc(2026, 3, 8, 9),  # 04:00 CDT
        utc(2026, 3, 8, 10),
    ]


@pytest.mark.parametrize("expression", ["0 30 1 * * ?", "30 1 * * *"])
def test_a_daily_time_in_the_repeated_hour_fires_once_at_its_first_occurrence(
    expression: str,
) -> None:
    got = fires(expression, CHICAGO, utc(2026, 10, 31), utc(2026, 11, 3))
    assert got == [
        utc(2026, 10, 31, 6, 30),  # 01:30 CDT
        utc(2026, 11, 1, 6, 30),  # 01:30 CDT, not 07:30 UTC (01:30 CST)
        utc(2026, 11, 2, 7, 30),  # 01:30 CST
    ]
    on_the_day = [at for at in got if at.astimezone(CHICAGO).date().isoformat() == "2026-11-01"]
    assert on_the_day == [utc(2026, 11, 1, 6, 30)]


def test_every_fifteen_minutes_across_the_fall_back_hour_never_repeats_a_wall_time() -> None:
    got = fires("0 0/15 * * * ?", CHICAGO, utc(2026, 11, 1, 5), utc(2026, 11, 1, 9))
    assert got == [
        utc(2026, 11, 1, 5, 15),  # 00:15 CDT
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 5, 45),
        utc(2026, 11, 1, 6),  # 01:00 CDT
        utc(2026, 11, 1, 6, 15),
        utc(2026, 11, 1, 6, 30),
        utc(2026, 11, 1, 6, 45),  # 01:45 CDT; the second pass (01:00-01:45 CST) is skipped
        utc(2026, 11, 1, 8),  # 02:00 CST
        utc(2026, 11, 1, 8, 15),
        utc(2026, 11, 1, 8, 30),
        utc(2026, 11, 1, 8, 45),
        utc(2026, 11, 1, 9),
    ]
    assert all(a < b for a, b in pairwise(got))
    wall_times = [at.astimezone(CHICAGO).replace(tzinfo=None) for at in got]
    assert len(set(wall_times)) == len(wall_times)


def test_an_hourly_cron_fires_the_repeated_hour_once() -> None:
    assert fires("0 0 * * * ?", CHICAGO, utc(2026, 11, 1, 5), utc(2026, 11, 1, 9)) == [
        utc(2026, 11, 1, 6),  # 01:00 CDT
        utc(2026, 11, 1, 8),  # 02:00 CST: 01:00 CST (07:00 UTC) is not fired again
        utc(2026, 11, 1, 9),
    ]


@pytest.mark.parametrize(
    ("expression", "after"),
    [
        ("0 0/15 * * * ?", utc(2026, 11, 1, 7)),  # 01:00 CST
        ("0 0/15 * * * ?", utc(2026, 11, 1, 7, 10)),  # 01:10 CST
        ("0 0/15 * * * ?", utc(2026, 11, 1, 7, 59, 59)),
        ("* * * * * ?", utc(2026, 11, 1, 7)),  # 3,599 candidates to skip
    ],
)
def test_from_inside_the_second_pass_the_next_fire_is_after_the_repeated_hour(
    expression: str, after: datetime
) -> None:
    assert parse(expression).next_after(after, CHICAGO) == utc(2026, 11, 1, 8)


def test_london_spring_forward_fires_a_missing_time_at_the_end_of_the_gap() -> None:
    assert first_fires("0 30 1 * * ?", LONDON, utc(2026, 3, 28), 3) == [
        utc(2026, 3, 28, 1, 30),  # 01:30 GMT
        utc(2026, 3, 29, 1),  # 01:30 does not exist: 02:00 BST
        utc(2026, 3, 30, 0, 30),  # 01:30 BST
    ]


def test_london_fall_back_fires_a_repeated_time_once_at_its_first_occurrence() -> None:
    assert first_fires("0 30 1 * * ?", LONDON, utc(2026, 10, 24), 3) == [
        utc(2026, 10, 24, 0, 30),  # 01:30 BST
        utc(2026, 10, 25, 0, 30),  # 01:30 BST, not 01:30 UTC (01:30 GMT)
        utc(2026, 10, 26, 1, 30),  # 01:30 GMT
    ]


def test_london_every_fifteen_minutes_across_the_fall_back_hour() -> None:
    got = fires("0 0/15 * * * ?", LONDON, utc(2026, 10, 25, 0), utc(2026, 10, 25, 2, 30))
    assert got == [
        utc(2026, 10, 25, 0, 15),  # 01:15 BST
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 0, 45),
        utc(2026, 10, 25, 2),  # 02:00 GMT
        utc(2026, 10, 25, 2, 15),
        utc(2026, 10, 25, 2, 30),
    ]


def test_london_every_thirty_minutes_across_the_spring_gap() -> None:
    got = fires("0 0/30 * * * ?", LONDON, utc(2026, 3, 29, 0), utc(2026, 3, 29, 2))
    assert got == [
        utc(2026, 3, 29, 0, 30),  # 00:30 GMT
        utc(2026, 3, 29, 1),  # 02:00 BST (01:00 and 01:30 GMT do not exist)
        utc(2026, 3, 29, 1, 30),  # 02:30 BST
        utc(2026, 3, 29, 2),
    ]
    assert len(set(got)) == len(got)
    assert all(b - a >= timedelta(minutes=30) for a, b in pairwise(got))
