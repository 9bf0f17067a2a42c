"""Triggers (cron, interval, once), their fire times, and the misfire rules (pure, unit-tested).

A schedule keeps `next_fire_time`. When the scheduler reaches it at `now`:
* on time (no later than the misfire threshold): that occurrence fires;
* later than the threshold (the scheduler was down, or the schedule paused): a misfire, and the
  policy decides - `fireOnceNow` fires one job for everything missed, `doNothing` fires none,
  `fireAll` fires every missed occurrence (a bounded number per pass, catching up pass by pass).
Either way the schedule then moves on to its next occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from services.rules import cron
from services.rules.naming import Printable

# Missed occurrences counted one by one before a misfire report says "at least".
MAX_COUNTED_MISSES = 1_000


class MisfirePolicy(StrEnum):
    FIRE_ONCE_NOW = "fireOnceNow"
    DO_NOTHING = "doNothing"
    FIRE_ALL = "fireAll"


class ScheduleState(StrEnum):
    NORMAL = "Normal"
    PAUSED = "Paused"
    COMPLETE = "Complete"
    ERROR = "Error"


class _Trigger(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# Instants a trigger may name: far enough from datetime's limits that the trigger maths (a
# year of interval, a time zone's offset) never leave them.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("must include a UTC offset, e.g. 2026-12-01T10:00:00Z")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError("must be between 1970-01-01T00:00:00Z and 9000-01-01T00:00:00Z")
    return utc


class CronTrigger(_Trigger):
    type: Literal["cron"]
    cron: Printable = Field(
        max_length=200,
        description="Quartz (`0 0 9 * * ?`, seconds first) or standard 5-field cron",
        examples=["0 0 9 * * ?"],
    )
    time_zone: Printable = Field(default="UTC", max_length=64, description="IANA name")

    @field_validator("cron")
    @classmethod
    def _readable(cls, value: str) -> str:
        try:
            cron.parse(value)
        except cron.CronError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a tzdata folder
            raise ValueError(f"{value!r} is not an IANA time zone, e.g. America/Chicago") from None
        return value

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


class IntervalTrigger(_Trigger):
    type: Literal["interval"]
    interval_seconds: int = Field(ge=1, le=366 * 86_400)
    repeat_count: int | None = Field(
        default=None, ge=0, description="Repeats after the first fire; null = forever"
    )
    start_at: datetime | None = Field(default=None, description="Default: when it is created")
    end_at: datetime | None = None

    _aware_start = field_validator("start_at")(_aware)
    _aware_end = field_validator("end_at")(_aware)

    @model_validator(mode="after")
    def _ordered(self) -> IntervalTrigger:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("endAt must be after startAt")
        return self


class OnceTrigger(_Trigger):
    type: Literal["once"]
    run_at: datetime

    _aware_run = field_validator("run_at")(_aware)


Trigger = Annotated[CronTrigger | IntervalTrigger | OnceTrigger, Field(discriminator="type")]


def anchored(trigger: Trigger, now: datetime) -> Trigger:
    """The trigger as stored: an interval without a start starts now."""
    if isinstance(trigger, IntervalTrigger) and trigger.start_at is None:
        return trigger.model_copy(update={"start_at": now.replace(microsecond=0)})
    return trigger


def next_after(trigger: Trigger, after: datetime) -> datetime | None:
    """The first occurrence strictly after `after`, or None when there is none."""
    if isinstance(trigger, OnceTrigger):
        return trigger.run_at if trigger.run_at > after else None
    if isinstance(trigger, CronTrigger):
        return cron.parse(trigger.cron).next_after(after, trigger.zone())
    assert trigger.start_at is not None, "an interval trigger is anchored before use"
    step = timedelta(seconds=trigger.interval_seconds)
    k = 0 if after < trigger.start_at else (after - trigger.start_at) // step + 1
    if trigger.repeat_count is not None and k > trigger.repeat_count:
        return None
    at = trigger.start_at + k * step
    if (trigger.end_at is not None and at > trigger.end_at) or at >= LATEST:
        return None
    return at


def first_fire(trigger: Trigger, now: datetime) -> datetime | None:
    """When a new schedule first fires. A one-time trigger fires at its time, even one already
    past (the misfire policy then decides). An interval fires at its start when that is now
    (within the current second) or later; a start in the past is not made up for: the first
    fire is the next point of its grid. A cron trigger fires at its first occurrence after now."""
    if isinstance(trigger, OnceTrigger):
        return trigger.run_at
    if isinstance(trigger, IntervalTrigger):
        assert trigger.start_at is not None
        if trigger.start_at >= now.replace(microsecond=0):
            return trigger.start_at
        return next_after(trigger, now - timedelta(microseconds=1))
    return next_after(trigger, now)


@dataclass
class FirePlan:
    """What to do with a due schedule now."""

    fires: list[datetime] = field(default_factory=list)  # occurrences to fire, in order
    missed: list[datetime] = field(default_factory=list)  # missed and not fired (counted)
    misfired: bool = False
    missed_more: bool = False  # more were missed than were counted
    next_fire: datetime | None = None


def plan(
    trigger: Trigger,
    next_fire: datetime,
    now: datetime,
    policy: MisfirePolicy,
    threshold: timedelta,
    max_fires: int,
) -> FirePlan:
    """The fires due at `now` for a schedule whose next occurrence is `next_fire` (<= now)."""
    if next_fire > now:
        return FirePlan(next_fire=next_fire)
    if now - next_fire <= threshold:
        return FirePlan(fires=[next_fire], next_fire=next_after(trigger, next_fire))
    # A misfire: list what was missed (bounded), then apply the policy.
    limit = max_fires if policy is MisfirePolicy.FIRE_ALL else MAX_COUNTED_MISSES
    due = [next_fire]
    following = next_after(trigger, next_fire)
    while following is not None and following <= now and len(due) < limit:
        due.append(following)
        following = next_after(trigger, following)
    more = following is not None and following <= now
    if policy is MisfirePolicy.FIRE_ALL:
        # `following` may still be due: the next pass fires it (and the rest) in turn.
        return FirePlan(fires=due, misfired=True, next_fire=following)
    upcoming = next_after(trigger, now)
    if policy is MisfirePolicy.FIRE_ONCE_NOW:
        return FirePlan(
            fires=[due[0]],
            missed=due[1:],
            misfired=True,
            missed_more=more,
            next_fire=upcoming,
        )
    return FirePlan(missed=due, misfired=True, missed_more=more, next_fire=upcoming)


def expected_next_fire(
    trigger: Trigger,
    stored: datetime | None,
    now: datetime,
    policy: MisfirePolicy,
    threshold: timedelta,
) -> datetime | None:
    """When a Normal schedule fires next, as seen at `now`. Its stored occurrence while that is
    ahead. Once it has passed (the schedule just resumed, or the scheduler is behind) the
    occurrence stays stored so that the misfire policy applies at the scheduler's next pass
    (`plan`): it fires at once (`now`), unless doNothing skips what is more than `threshold`
    late, to the first occurrence after now. Never a time already past."""
    if stored is None or stored > now:
        return stored
    if policy is MisfirePolicy.DO_NOTHING and now - stored > threshold:
        return next_after(trigger, now)
    return now


class RunOutcome:
    """What a schedule's run recorded for an occurrence."""

    FIRED = "Fired"
    REFUSED = "Refused"
    SKIPPED = "Skipped"
    MISSED = "Missed"
