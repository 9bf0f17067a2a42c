"""What a Normal schedule answers as its `nextFireTime`: never a time already past."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.rules.triggers import IntervalTrigger, MisfirePolicy, expected_next_fire

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HOURLY = IntervalTrigger(type="interval", interval_seconds=3600, start_at=T0)
THRESHOLD = timedelta(seconds=60)


def test_an_occurrence_ahead_is_answered_as_stored() -> None:
    for policy in MisfirePolicy:
        assert expected_next_fire(HOURLY, T0, T0 - timedelta(seconds=5), policy, THRESHOLD) == T0


def test_a_passed_occurrence_that_will_fire_is_answered_as_now() -> None:
    now = T0 + timedelta(minutes=30)
    for policy in (MisfirePolicy.FIRE_ONCE_NOW, MisfirePolicy.FIRE_ALL):
        assert expected_next_fire(HOURLY, T0, now, policy, THRESHOLD) == now
    # Late by less than the threshold: a late fire, whatever the policy.
    late = T0 + timedelta(seconds=30)
    assert expected_next_fire(HOURLY, T0, late, MisfirePolicy.DO_NOTHING, THRESHOLD) == late


def test_do_nothing_past_the_threshold_answers_the_first_occurrence_after_now() -> None:
    now = T0 + timedelta(minutes=90)
    answer = expected_next_fire(HOURLY, T0, now, MisfirePolicy.DO_NOTHING, THRESHOLD)
    assert answer == T0 + timedelta(hours=2)
