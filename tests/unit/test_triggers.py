"""Triggers: what a schedule accepts, when it fires, and what a late scheduler does (misfires)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from services.rules.triggers import (
    MAX_COUNTED_MISSES,
    CronTrigger,
    FirePlan,
    IntervalTrigger,
    MisfirePolicy,
    OnceTrigger,
    Trigger,
    anchored,
    first_fire,
    next_after,
    plan,
)

TRIGGER: TypeAdapter[Trigger] = TypeAdapter(Trigger)
THRESHOLD = timedelta(seconds=60)
START = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
P = MisfirePolicy


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def cron_trigger(expression: str, time_zone: str = "UTC") -> CronTrigger:
    return CronTrigger.model_validate({"type": "cron", "cron": expression, "timeZone": time_zone})


def interval_trigger(seconds: int, **fields: Any) -> IntervalTrigger:
    body = {"type": "interval", "intervalSeconds": seconds, "startAt": START, **fields}
    return IntervalTrigger.model_validate(body)


def once_trigger(run_at: datetime) -> OnceTrigger:
    return OnceTrigger.model_validate({"type": "once", "runAt": run_at})


def occurrences(trigger: Trigger, after: datetime, limit: int = 100) -> list[datetime]:
    out: list[datetime] = []
    at = next_after(trigger, after)
    while at is not None and len(out) < limit:
        out.append(at)
        at = next_after(trigger, at)
    return out


DAILY = cron_trigger("0 0 9 * * ?")


# Validation ----------------------------------------------------------------------------------


def test_an_interval_trigger_is_read_from_camel_case() -> None:
    trigger = TRIGGER.validate_python(
        {
            "type": "interval",
            "intervalSeconds": 600,
            "repeatCount": 3,
            "startAt": "2026-01-01T10:00:00Z",
            "endAt": "2026-01-02T10:00:00+02:00",
        }
    )
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.interval_seconds == 600
    assert trigger.repeat_count == 3
    assert trigger.start_at == START
    assert trigger.end_at == utc(2026, 1, 2, 8)
    assert trigger.end_at is not None
    assert trigger.end_at.tzinfo is UTC


def test_a_cron_trigger_is_read_from_camel_case_and_defaults_to_utc() -> None:
    trigger = TRIGGER.validate_python({"type": "cron", "cron": "0 0 9 * * ?"})
    assert isinstance(trigger, CronTrigger)
    assert trigger.time_zone == "UTC"
    chicago = TRIGGER.validate_python(
        {"type": "cron", "cron": "0 0 8 ? * MON-FRI", "timeZone": "America/Chicago"}
    )
    assert isinstance(chicago, CronTrigger)
    assert chicago.zone().key == "America/Chicago"


def test_a_once_trigger_is_read_from_camel_case_in_utc() -> None:
    trigger = TRIGGER.validate_python({"type": "once", "runAt": "2026-01-01T04:00:00-06:00"})
    assert isinstance(trigger, OnceTrigger)
    assert trigger.run_at == START
    assert trigger.run_at.tzinfo is UTC


@pytest.mark.parametrize(
    "body",
    [
        {"type": "cron", "cron": "0 0 9 * * ?", "timeZone": "Europe/London"},
        {"type": "interval", "intervalSeconds": 60, "repeatCount": 0, "startAt": START},
        {"type": "interval", "intervalSeconds": 60, "endAt": START},
        {"type": "once", "runAt": START},
    ],
)
def test_a_trigger_survives_being_stored_by_alias(body: dict[str, Any]) -> None:
    trigger = TRIGGER.validate_python(body)
    stored = trigger.model_dump(mode="json", by_alias=True)
    assert "type" in stored
    assert not any("_" in key for key in stored)
    assert TRIGGER.validate_python(stored) == trigger


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({"type": "interval", "intervalSeconds": 0}, ["intervalSeconds"]),
        ({"type": "interval", "intervalSeconds": 366 * 86_400 + 1}, ["intervalSeconds"]),
        ({"type": "interval"}, ["intervalSeconds"]),
        ({"type": "interval", "intervalSeconds": 60, "repeatCount": -1}, ["repeatCount"]),
        (
            {"type": "interval", "intervalSeconds": 60, "startAt": "2026-01-01T10:00:00"},
            ["startAt", "UTC offset"],
        ),
        (
            {"type": "interval", "intervalSeconds": 60, "endAt": "2026-01-01T10:00:00"},
            ["endAt", "UTC offset"],
        ),
        (
            {
                "type": "interval",
                "intervalSeconds": 60,
                "startAt": "2026-01-01T10:00:00Z",
                "endAt": "2026-01-01T10:00:00Z",
            },
            ["endAt must be after startAt"],
        ),
        (
            {
                "type": "interval",
                "intervalSeconds": 60,
                "startAt": "2026-01-01T10:00:00Z",
                "endAt": "2026-01-01T11:00:00+02:00",  # 09:00 UTC
            },
            ["endAt must be after startAt"],
        ),
        ({"type": "once", "runAt": "2026-01-01T10:00:00"}, ["runAt", "UTC offset"]),
        ({"type": "once"}, ["runAt"]),
        ({"type": "cron", "cron": "0 0 25 * * ?"}, ["cron", "out of range"]),
        ({"type": "cron", "cron": "? 0 9 * * ?"}, ["cron", "day-of-month or day-of-week"]),
        ({"type": "cron", "cron": "0 0 9 1 * MON"}, ["cron", "'?'"]),
        ({"type": "cron", "cron": "* * * *"}, ["cron", "4 fields"]),
        ({"type": "cron", "cron": "0 " * 101}, ["cron"]),  # too long
        ({"type": "cron"}, ["cron"]),
        (
            {"type": "cron", "cron": "0 0 9 * * ?", "timeZone": "Mars/Olympus"},
            ["timeZone", "Mars/Olympus", "IANA"],
        ),
        ({"type": "cron", "cron": "0 0 9 * * ?", "timeZone": ""}, ["timeZone", "IANA"]),
        (
            {"type": "cron", "cron": "0 0 9 * * ?", "timeZone": "America/../UTC"},
            ["timeZone", "IANA"],
        ),
        ({"type": "weekly", "cron": "0 0 9 * * ?"}, ["weekly"]),
        ({"cron": "0 0 9 * * ?"}, ["type"]),
        (
            {"type": "cron", "cron": "0 0 9 * * ?", "misfirePolicy": "doNothing"},
            ["misfirePolicy", "Extra inputs are not permitted"],
        ),
        (
            {"type": "once", "runAt": "2026-01-01T10:00:00Z", "repeatCount": 1},
            ["repeatCount", "Extra inputs are not permitted"],
        ),
        (
            {"type": "interval", "intervalSeconds": 60, "runAt": "2026-01-01T10:00:00Z"},
            ["runAt", "Extra inputs are not permitted"],
        ),
    ],
)
def test_bad_triggers_are_refused_naming_the_field(
    body: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(ValidationError) as refused:
        TRIGGER.validate_python(body)
    for fragment in fragments:
        assert fragment in str(refused.value)


@pytest.mark.parametrize("field", ["startAt", "endAt"])
def test_a_naive_datetime_object_is_refused_with_a_message_about_the_utc_offset(
    field: str,
) -> None:
    with pytest.raises(ValidationError, match="must include a UTC offset"):
        IntervalTrigger.model_validate(
            {"type": "interval", "intervalSeconds": 60, field: datetime(2026, 1, 1, 10)}
        )
    with pytest.raises(ValidationError, match="must include a UTC offset"):
        OnceTrigger.model_validate({"type": "once", "runAt": datetime(2026, 1, 1, 10)})


@pytest.mark.parametrize("zone", ["America", "Etc"])
def test_a_time_zone_region_that_is_not_a_zone_is_refused(zone: str) -> None:
    with pytest.raises(ValidationError, match="IANA"):
        TRIGGER.validate_python({"type": "cron", "cron": "0 0 9 * * ?", "timeZone": zone})


def test_the_misfire_policies_are_spelt_as_in_the_api() -> None:
    assert [policy.value for policy in MisfirePolicy] == ["fireOnceNow", "doNothing", "fireAll"]


# Occurrences -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (START - timedelta(days=3), START),  # before the start: the start
        (START - timedelta(microseconds=1), START),
        (START, START + timedelta(minutes=10)),  # on a grid point: strictly after it
        (START + timedelta(minutes=5), START + timedelta(minutes=10)),  # between grid points
        (START + timedelta(minutes=20), START + timedelta(minutes=30)),
        (START + timedelta(minutes=20, microseconds=-1), START + timedelta(minutes=20)),
        (START + timedelta(days=400), START + timedelta(days=400, minutes=10)),
    ],
)
def test_an_interval_fires_on_its_grid_strictly_after(after: datetime, expected: datetime) -> None:
    assert next_after(interval_trigger(600), after) == expected


def test_an_interval_with_no_repeats_fires_once() -> None:
    trigger = interval_trigger(600, repeatCount=0)
    assert next_after(trigger, START - timedelta(seconds=1)) == START
    assert next_after(trigger, START) is None
    assert occurrences(trigger, START - timedelta(days=1)) == [START]


@pytest.mark.parametrize("repeats", [1, 2, 5])
def test_an_interval_repeated_n_times_fires_n_plus_one_times(repeats: int) -> None:
    trigger = interval_trigger(600, repeatCount=repeats)
    assert occurrences(trigger, START - timedelta(seconds=1)) == [
        START + k * timedelta(minutes=10) for k in range(repeats + 1)
    ]


@pytest.mark.parametrize(
    ("end_at", "last"),
    [
        (START + timedelta(minutes=30), START + timedelta(minutes=30)),  # the end is included
        (START + timedelta(minutes=25), START + timedelta(minutes=20)),
        (START + timedelta(seconds=1), START),
    ],
)
def test_an_interval_stops_at_its_end(end_at: datetime, last: datetime) -> None:
    got = occurrences(interval_trigger(600, endAt=end_at), START - timedelta(seconds=1))
    assert got[0] == START
    assert got[-1] == last
    assert got == [START + k * timedelta(minutes=10) for k in range(len(got))]


def test_the_earlier_of_repeat_count_and_end_wins() -> None:
    trigger = interval_trigger(600, repeatCount=10, endAt=START + timedelta(minutes=25))
    assert len(occurrences(trigger, START - timedelta(seconds=1))) == 3
    trigger = interval_trigger(600, repeatCount=1, endAt=START + timedelta(days=1))
    assert len(occurrences(trigger, START - timedelta(seconds=1))) == 2


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (START - timedelta(days=1), START),
        (START - timedelta(microseconds=1), START),
        (START, None),
        (START + timedelta(seconds=1), None),
    ],
)
def test_a_once_trigger_fires_at_its_time_only(after: datetime, expected: datetime | None) -> None:
    assert next_after(once_trigger(START), after) == expected


def test_a_cron_trigger_fires_in_its_time_zone() -> None:
    trigger = cron_trigger("0 0 9 * * ?", "America/Chicago")
    assert occurrences(trigger, utc(2026, 3, 6), limit=3) == [
        utc(2026, 3, 6, 15),  # 09:00 CST
        utc(2026, 3, 7, 15),
        utc(2026, 3, 8, 14),  # 09:00 CDT
    ]


# Anchoring and the first fire ------------------------------------------------------------------


def test_an_interval_without_a_start_starts_now_to_the_second() -> None:
    now = datetime(2026, 1, 1, 10, 0, 0, 750_000, tzinfo=UTC)
    trigger = IntervalTrigger.model_validate({"type": "interval", "intervalSeconds": 60})
    assert trigger.start_at is None
    stored = anchored(trigger, now)
    assert isinstance(stored, IntervalTrigger)
    assert stored.start_at == START
    assert stored.interval_seconds == 60


@pytest.mark.parametrize(
    "trigger",
    [interval_trigger(60), cron_trigger("0 0 9 * * ?"), once_trigger(START)],
)
def test_anchoring_leaves_other_triggers_alone(trigger: Trigger) -> None:
    assert anchored(trigger, START + timedelta(days=1)) == trigger


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (START - timedelta(hours=1), START),  # start in the future
        (START, START),
        (START + timedelta(minutes=25), START + timedelta(minutes=30)),  # start in the past
        (START + timedelta(minutes=20), START + timedelta(minutes=20)),
        (START + timedelta(minutes=20, microseconds=1), START + timedelta(minutes=30)),
    ],
)
def test_an_interval_first_fires_at_its_first_occurrence_from_now_on(
    now: datetime, expected: datetime
) -> None:
    assert first_fire(interval_trigger(600), now) == expected


def test_an_interval_whose_occurrences_are_all_past_never_fires() -> None:
    now = START + timedelta(hours=1)
    assert first_fire(interval_trigger(600, repeatCount=2), now) is None
    assert first_fire(interval_trigger(600, endAt=START + timedelta(minutes=30)), now) is None


@pytest.mark.parametrize(
    "run_at", [START - timedelta(days=2), START - timedelta(seconds=1), START + timedelta(days=1)]
)
def test_a_once_trigger_first_fires_at_its_time_even_in_the_past(run_at: datetime) -> None:
    assert first_fire(once_trigger(run_at), START) == run_at


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 1, 1, 8), utc(2026, 1, 1, 9)),
        (utc(2026, 1, 1, 9), utc(2026, 1, 2, 9)),
        (utc(2026, 1, 1, 10), utc(2026, 1, 2, 9)),
    ],
)
def test_a_cron_trigger_first_fires_strictly_after_now(now: datetime, expected: datetime) -> None:
    assert first_fire(DAILY, now) == expected


def test_the_first_fire_of_an_interval_starting_now_does_not_depend_on_the_sub_second() -> None:
    trigger = IntervalTrigger.model_validate({"type": "interval", "intervalSeconds": 60})
    on_the_second = START
    within_the_second = START + timedelta(microseconds=500_000)
    assert first_fire(anchored(trigger, within_the_second), within_the_second) == first_fire(
        anchored(trigger, on_the_second), on_the_second
    )


# Plans -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", list(MisfirePolicy))
def test_a_schedule_not_due_yet_does_nothing(policy: MisfirePolicy) -> None:
    next_fire = utc(2026, 1, 2, 9)
    got = plan(DAILY, next_fire, next_fire - timedelta(seconds=1), policy, THRESHOLD, 10)
    assert got == FirePlan(next_fire=next_fire)


@pytest.mark.parametrize("policy", list(MisfirePolicy))
@pytest.mark.parametrize("late", [timedelta(0), timedelta(seconds=30), THRESHOLD])
def test_on_time_within_the_threshold_the_occurrence_fires(
    policy: MisfirePolicy, late: timedelta
) -> None:
    next_fire = utc(2026, 1, 2, 9)
    got = plan(DAILY, next_fire, next_fire + late, policy, THRESHOLD, 10)
    assert got == FirePlan(fires=[next_fire], next_fire=utc(2026, 1, 3, 9))
    assert not got.misfired


@pytest.mark.parametrize("policy", list(MisfirePolicy))
def test_a_once_trigger_on_time_fires_and_is_done(policy: MisfirePolicy) -> None:
    got = plan(once_trigger(START), START, START + timedelta(seconds=5), policy, THRESHOLD, 10)
    assert got == FirePlan(fires=[START], next_fire=None)


# A daily 09:00 last due on January 1st; the scheduler comes back on the 4th at noon: four
# occurrences (the 1st to the 4th) were missed, the next is on the 5th.
MISSED_DAYS = [utc(2026, 1, day, 9) for day in (1, 2, 3, 4)]
BACK = utc(2026, 1, 4, 12)


def test_fire_once_now_fires_the_first_missed_occurrence_and_moves_past_now() -> None:
    got = plan(DAILY, MISSED_DAYS[0], BACK, P.FIRE_ONCE_NOW, THRESHOLD, 10)
    assert got == FirePlan(
        fires=[MISSED_DAYS[0]],
        missed=MISSED_DAYS[1:],
        misfired=True,
        missed_more=False,
        next_fire=utc(2026, 1, 5, 9),
    )


def test_do_nothing_fires_nothing_and_moves_past_now() -> None:
    got = plan(DAILY, MISSED_DAYS[0], BACK, P.DO_NOTHING, THRESHOLD, 10)
    assert got == FirePlan(
        fires=[],
        missed=MISSED_DAYS,
        misfired=True,
        missed_more=False,
        next_fire=utc(2026, 1, 5, 9),
    )


def test_fire_all_fires_every_missed_occurrence_in_order() -> None:
    got = plan(DAILY, MISSED_DAYS[0], BACK, P.FIRE_ALL, THRESHOLD, 10)
    assert got.fires == MISSED_DAYS
    assert got.missed == []
    assert got.misfired
    assert got.next_fire == utc(2026, 1, 5, 9)


def test_fire_all_is_bounded_per_pass_and_catches_up_on_the_next() -> None:
    first = plan(DAILY, MISSED_DAYS[0], BACK, P.FIRE_ALL, THRESHOLD, 2)
    assert first.fires == MISSED_DAYS[:2]
    assert first.misfired
    assert first.next_fire == MISSED_DAYS[2]
    assert first.next_fire <= BACK  # still due: the next pass fires it
    second = plan(DAILY, first.next_fire, BACK, P.FIRE_ALL, THRESHOLD, 2)
    assert second.fires == MISSED_DAYS[2:]
    assert second.next_fire == utc(2026, 1, 5, 9)


@pytest.mark.parametrize("max_fires", [1, 3, 7])
def test_fire_all_passes_together_fire_each_missed_occurrence_exactly_once(
    max_fires: int,
) -> None:
    trigger = interval_trigger(60)
    now = START + timedelta(minutes=20, seconds=30)
    next_fire: datetime | None = START
    fired: list[datetime] = []
    passes = 0
    while next_fire is not None and next_fire <= now:
        got = plan(trigger, next_fire, now, P.FIRE_ALL, THRESHOLD, max_fires)
        assert 1 <= len(got.fires) <= max_fires
        fired += got.fires
        next_fire = got.next_fire
        passes += 1
    assert fired == [START + k * timedelta(minutes=1) for k in range(21)]
    assert next_fire == START + timedelta(minutes=21)
    assert passes == -(-21 // max_fires)


def test_just_past_the_threshold_is_a_misfire_even_with_one_occurrence_missed() -> None:
    next_fire = utc(2026, 1, 2, 9)
    now = next_fire + THRESHOLD + timedelta(seconds=1)
    got = plan(DAILY, next_fire, now, P.FIRE_ONCE_NOW, THRESHOLD, 10)
    assert got == FirePlan(
        fires=[next_fire], missed=[], misfired=True, next_fire=utc(2026, 1, 3, 9)
    )
    got = plan(DAILY, next_fire, now, P.DO_NOTHING, THRESHOLD, 10)
    assert got == FirePlan(missed=[next_fire], misfired=True, next_fire=utc(2026, 1, 3, 9))


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (P.DO_NOTHING, FirePlan(missed=[START], misfired=True, next_fire=None)),
        (P.FIRE_ONCE_NOW, FirePlan(fires=[START], misfired=True, next_fire=None)),
        (P.FIRE_ALL, FirePlan(fires=[START], misfired=True, next_fire=None)),
    ],
)
def test_a_misfired_once_trigger_is_done_whatever_the_policy(
    policy: MisfirePolicy, expected: FirePlan
) -> None:
    got = plan(once_trigger(START), START, START + timedelta(days=1), policy, THRESHOLD, 10)
    assert got == expected


def test_a_misfire_past_the_last_repeat_leaves_nothing_to_fire() -> None:
    trigger = interval_trigger(600, repeatCount=2)  # 10:00, 10:10, 10:20
    now = START + timedelta(hours=1)
    got = plan(trigger, START, now, P.FIRE_ONCE_NOW, THRESHOLD, 10)
    assert got == FirePlan(
        fires=[START],
        missed=[START + timedelta(minutes=10), START + timedelta(minutes=20)],
        misfired=True,
        next_fire=None,
    )
    got = plan(trigger, START, now, P.FIRE_ALL, THRESHOLD, 10)
    assert got.fires == [START + k * timedelta(minutes=10) for k in range(3)]
    assert got.next_fire is None


@pytest.mark.parametrize("policy", [P.FIRE_ONCE_NOW, P.DO_NOTHING])
def test_missed_occurrences_are_counted_up_to_a_bound(policy: MisfirePolicy) -> None:
    every_second = cron_trigger("* * * * * ?")
    next_fire = utc(2026, 1, 1)
    now = utc(2026, 1, 1, 2)  # 7,201 occurrences due
    got = plan(every_second, next_fire, now, policy, THRESHOLD, 10)
    assert got.misfired
    assert got.missed_more
    counted = [*got.fires, *got.missed]
    assert len(counted) == MAX_COUNTED_MISSES
    assert counted == [next_fire + timedelta(seconds=k) for k in range(MAX_COUNTED_MISSES)]
    assert got.next_fire == utc(2026, 1, 1, 2, 0, 1)


@pytest.mark.parametrize(
    ("due", "more"),
    [(MAX_COUNTED_MISSES - 1, False), (MAX_COUNTED_MISSES, False), (MAX_COUNTED_MISSES + 1, True)],
)
def test_more_missed_is_reported_only_past_the_bound(due: int, more: bool) -> None:
    trigger = interval_trigger(1)
    now = START + timedelta(seconds=due - 1)
    got = plan(trigger, START, now, P.DO_NOTHING, THRESHOLD, 10)
    assert got.missed_more is more
    assert len(got.missed) == min(due, MAX_COUNTED_MISSES)
    assert got.next_fire == now + timedelta(seconds=1)
