"""A value Ed-Fi's EdFi_Admin cannot hold: dbo.odsinstances.connectionstring is varchar(1500).
A connection string longer than that (long ODS options or credentials, encrypted) is refused by
the database; the refusal is read as one no retry cures (SQLSTATE 22001), told in words without
the value, and recorded as the create's failure on the job and the instance at once."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.messages import InstanceCreated
from services.runtime import dberrors
from services.status.events import ConnectionStrings, apply_event
from services.status.recovery import record_refusal
from tests.integration.test_status_apply import _accepted, _state

pytestmark = pytest.mark.integration


async def test_a_connection_string_over_varchar_1500_fails_the_create_at_once(
    engine: AsyncEngine, encryption_key: bytes, db_prefix: str
) -> None:
    secret = "x" * 1400  # stands for long options or credentials; never shown in the reason
    too_long = ConnectionStrings(
        encryption_key, lambda db: f"host=h;database={db};password={secret}"
    )
    instance_id, job_id, db = await _accepted(engine, db_prefix)
    created = InstanceCreated(job_id=job_id, instance_id=instance_id, database_name=db)
    with pytest.raises(DBAPIError) as caught:
        async with engine.begin() as conn:
            await apply_event(conn, created, "long-1", too_long)
    exc = caught.value
    assert dberrors.sqlstate(exc) == "22001"
    assert not dberrors.is_transient(exc)  # no retry loop: the status service fails the job
    meaning = dberrors.describe(exc)
    assert "a value longer than its column allows" in meaning
    assert secret not in meaning and "password" not in meaning

    async with engine.begin() as conn:
        reason = await record_refusal(conn, created, meaning, "long-1")
    assert reason is not None and "a value longer than its column allows" in reason
    inst, job, dbo_rows = await _state(engine, instance_id, job_id)
    assert (inst.status, job.status, dbo_rows) == ("Error", "Failed", 0)  # type: ignore[attr-defined]
    assert job.error == inst.error == reason  # type: ignore[attr-defined]
