"""`POST /v2/dbInstances/{id}/copy`: a new instance from an existing instance's database (the
school-year rollover Ed-Fi's own worker design lists). A create like any other (its job,
idempotency, marker and recovery); the source is only read. PostgreSQL copies a database only
while nobody is connected to it, so the request says whether the source's sessions may be ended."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import select

from contracts.messages import Operation
from services.admin_db.accept import accept_create
from services.admin_db.tables import db_instances
from services.gateway.facts import facts_of
from services.gateway.problems import ProblemError
from services.gateway.routes import PROBLEM, InstanceId, accepted
from services.gateway.schemas import CopyDbInstance, DbInstance
from services.gateway.state import request_tenant
from services.gateway.views import instance_out
from services.rules.connection_strings import is_sqlserver
from services.rules.parameters import checked_database_name

router = APIRouter(prefix="/v2")


@router.post(
    "/dbInstances/{instance_id}/copy",
    status_code=202,
    response_model=DbInstance,
    responses={404: PROBLEM, 409: PROBLEM, 422: PROBLEM, 503: PROBLEM},
    summary="Accept a new instance whose database is a copy of this instance's",
    description=(
        "The source must be Completed. If sessions are connected to its database, the copy is "
        "refused (409, naming how many) unless `endSourceSessions` is true; the sessions are "
        "then ended just before the copy. The source instance and its data are never changed."
    ),
)
async def copy_db_instance(
    instance_id: InstanceId, body: CopyDbInstance, request: Request, response: Response
) -> DbInstance:
    state = request_tenant(request)
    database_name = checked_database_name(state.settings, body.name)
    async with state.engine.connect() as conn:
        source = (
            await conn.execute(select(db_instances).where(db_instances.c.id == instance_id))
        ).first()
    if source is None:
        raise ProblemError(404, "Not found", f"no instance with id {instance_id}")
    # PostgreSQL copies a database only while nobody is connected to it (SQL Server's backup
    # and Azure's copy read it online: nothing to count there).
    if not body.end_source_sessions and not is_sqlserver(state.settings.ods_server_url):
        facts = await facts_of(state, source)
        if facts is not None and facts.unavailable:
            raise ProblemError(
                503,
                "Service unavailable",
                f"the sessions on instance {instance_id}'s database could not be counted "
                f"({facts.unavailable}); nothing was changed: retry, or ask with "
                "endSourceSessions: true",
                headers={"Retry-After": "5"},
            )
        if facts is not None and facts.sessions:
            raise ProblemError(
                409,
                "Conflict",
                f"{facts.sessions} session(s) are connected to instance {instance_id}'s database "
                f"{source.databasename!r}; PostgreSQL copies a database only while nobody is "
                "connected to it: ask again with endSourceSessions: true to end them for the copy",
                sessions=facts.sessions,
                errors={"endSourceSessions": [f"{facts.sessions} session(s) are connected"]},
            )
    async with state.engine.begin() as conn:
        row = await accept_create(
            conn,
            name=body.name,
            template_key=source.databasetemplate,
            template_database="",  # the source's database, read under its lock
            database_name=database_name,
            correlation_id=request.state.correlation_id,
            tenant=state.tenant,
            details=body.stored(),
            switch=state.settings.switch,
            source=instance_id,
            end_source_sessions=body.end_source_sessions,
        )
    accepted(
        state,
        Operation.CREATE,
        "api",
        row,
        name=row.name,
        database_name=row.databasename,
        copy_of=instance_id,
        end_source_sessions=body.end_source_sessions,
    )
    response.headers["Location"] = f"/v2/dbInstances/{row.id}"
    return instance_out(row)
