"""Cron expressions: the Quartz dialect and standard 5-field cron, behind one small adapter.

The maths is croniter's (cronsim's for Quartz's `LW`, which croniter lacks). This module only
translates the dialect and maps local wall-clock times to UTC instants:

* Quartz: 6 or 7 fields (seconds first, optional year), `?` in day-of-month or day-of-week,
  day-of-week 1-7 with Sunday = 1, `nL` (last weekday n of the month), `n#k`, `L`, `nW`, `LW`.
* Standard: 5 fields (minute first), day-of-week 0-7 with Sunday = 0 or 7.

Time zones: a local time that does not exist (spring forward) fires at the first valid instant
after the gap; a local time that happens twice (fall back) fires once, at its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError
from cronsim import CronSim, CronSimError

# Steps taken past local times that map before the last fire (the second pass of a repeated
# hour is skipped one candidate at a time): an every-second expression needs 3,600 for one hour.
MAX_SKIPPED_CANDIDATES = 100_000

_DOW_NAMES = "SUN|MON|TUE|WED|THU|FRI|SAT"
_DOW_NUMBER = {name: str(i) for i, name in enumerate(_DOW_NAMES.split("|"))}
SECONDS_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week", "year")
STANDARD_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


class CronError(ValueError):
    """The expression cannot be read; the message says which field and why."""


@dataclass(frozen=True)
class Cron:
    """A parsed expression: `source` as given, `expression` in the engine's own dialect."""

    source: str
    expression: str
    seconds: bool
    engine: str  # "croniter" | "cronsim"

    def local_times(self, after: datetime) -> Iterator[datetime]:
        """Naive local wall-clock times strictly after `after` (naive), in order."""
        if self.engine == "cronsim":
            yield from CronSim(self.expression, after)
            return
        it = croniter(self.expression, after, ret_type=datetime, second_at_beginning=self.seconds)
        while True:
            try:
                yield it.get_next(datetime)
            except CroniterBadDateError:
                return

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        """The first fire instant (UTC) strictly after the instant `after`; None if none."""
        after = after.astimezone(UTC)
        local_after = after.astimezone(tz).replace(tzinfo=None)
        for skipped, candidate in enumerate(self.local_times(local_after)):
            instant = to_utc(candidate, tz)
            if instant > after:
                return instant
            if skipped >= MAX_SKIPPED_CANDIDATES:
                return None
        return None


def to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """The instant of a naive local time: its first occurrence when it happens twice, the end
    of the gap when it does not exist."""
    first = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == local:
        return first
    # In a gap: fold=1 reads it with the offset after the change (an instant before the gap),
    # fold=0 with the one before (an instant after it). The gap ends between the two.
    low = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    offset_after = high.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(tz).utcoffset() == offset_after:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def _shift_dow_number(token: str) -> str:
    value = int(token)
    if not 1 <= value <= 7:
        raise CronError(f"day-of-week: {value} is not a Quartz day of the week (1-7, Sunday = 1)")
    return str(value - 1)


def _quartz_dow(field: str) -> str:
    """Quartz day-of-week (1-7, Sunday = 1) to croniter's (0-6, Sunday = 0)."""
    out = []
    for part in field.split(","):
        upper = part.upper()
        if upper in ("*", "?"):
            out.append("*")
            continue
        if upper == "L":  # alone, L is the last day of the week: Saturday
            out.append("6")
            continue
        last = re.fullmatch(rf"(\d|{_DOW_NAMES})L", upper)
        if last:  # nL: the last such weekday of the month (croniter writes it Ln)
            day = last.group(1)  # croniter wants a number here: Ln
            out.append("L" + (_shift_dow_number(day) if day.isdigit() else _DOW_NUMBER[day]))
            continue
        nth = re.fullmatch(rf"(\d|{_DOW_NAMES})#([1-5])", upper)
        if nth:
            day = nth.group(1)
            day = _shift_dow_number(day) if day.isdigit() else day
            out.append(f"{day}#{nth.group(2)}")
            continue
        stepped = re.fullmatch(rf"(\*|\d|{_DOW_NAMES})(?:-(\d|{_DOW_NAMES}))?(?:/(\d+))?", upper)
        if not stepped:
            raise CronError(f"day-of-week: cannot read {part!r}")
        start, end, step = stepped.groups()
        text = start if start == "*" or not start.isdigit() else _shift_dow_number(start)
        if end:
            text += "-" + (_shift_dow_number(end) if end.isdigit() else end)
        elif step and start != "*":
            text += "-6"  # Quartz's n/s runs to the end of the week
        if step:
            text += f"/{step}"
        out.append(text)
    return ",".join(out)


def _problem(expression: str, seconds: bool) -> str | None:
    """croniter's complaint about the expression, or None when it reads it."""
    try:
        croniter(expression, datetime(2026, 1, 1), second_at_beginning=seconds)
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _check(expression: str, seconds: bool, source: str) -> None:
    problem = _problem(expression, seconds)
    if problem is None:
        return
    # Name the field: the first one that, replaced by '*', makes the expression readable.
    parts = expression.split()
    names = SECONDS_FIELDS if seconds else STANDARD_FIELDS
    for i, name in enumerate(names[: len(parts)]):
        if _problem(" ".join([*parts[:i], "*", *parts[i + 1 :]]), seconds) is None:
            value = source.split()[i]
            raise CronError(f"{name}: cannot read {value!r} in {source!r}: {problem}")
    raise CronError(f"cannot read {source!r}: {problem}")


def parse(source: str) -> Cron:
    """Read a Quartz (6-7 fields) or standard (5 fields) expression."""
    fields = source.split()
    if len(fields) == 5:
        expression = " ".join("*" if f == "?" else f for f in fields)
        _check(expression, False, source)
        return Cron(source, expression, seconds=False, engine="croniter")
    if len(fields) not in (6, 7):
        raise CronError(
            f"{source!r} has {len(fields)} fields: use 5 (standard cron) or 6-7 (Quartz: "
            "seconds minutes hours day-of-month month day-of-week [year])"
        )
    sec, minute, hour, dom, month, dow = fields[:6]
    year = fields[6] if len(fields) == 7 else None
    if "?" in [*fields[:3], month, *fields[6:]]:
        raise CronError("'?' is allowed only in day-of-month or day-of-week")
    restricted = [f for f in (dom, dow) if f not in ("?", "*")]
    if len(restricted) == 2:
        raise CronError(
            "give either day-of-month or day-of-week and put '?' in the other (Quartz cannot "
            "combine them)"
        )
    dom_u = dom.upper()
    if re.fullmatch(r"L-\d+", dom_u):
        raise CronError(f"day-of-month {dom!r}: offsets from the last day (L-n) are not supported")
    if dom_u == "LW":
        if year not in (None, "*"):
            raise CronError("day-of-month 'LW' cannot be combined with a year")
        expression = " ".join([sec, minute, hour, "LW", month, "*"])
        try:
            CronSim(expression, datetime(2026, 1, 1))
        except CronSimError as exc:
            raise CronError(f"cannot read {source!r}: {exc}") from exc
        return Cron(source, expression, seconds=True, engine="cronsim")
    parts = [sec, minute, hour, "*" if dom == "?" else dom, month, _quartz_dow(dow)]
    if year is not None:
        parts.append(year)
    expression = " ".join(parts)
    _check(expression, True, source)
    return Cron(source, expression, seconds=True, engine="croniter")
