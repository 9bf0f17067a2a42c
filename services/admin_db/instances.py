"""Instances: the one module that writes `edfi_im.dbinstances` and Ed-Fi's `dbo` tables (an
instance and its `dbo.odsinstances` row, contexts, derivatives and client links change
together: invariant 5). Every transition of an instance is one named function here; callers
hold the transaction and lock the instance's row before its job's (the order every writer
keeps, so none waits for another in a circle)."""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Integer,
    Row,
    String,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

from contracts.messages import Operation
from services.admin_db.dialect import (
    ENGINE_SPECIFIC,
    CteWrite,
    locked,
    row_where,
    xact_lock,
    xact_locks,
)
from services.admin_db.tables import (
    api_client_application_education_organizations,
    api_client_ods_instances,
    api_client_ownership_tokens,
    api_clients,
    client_access_tokens,
    db_instances,
    jobs,
    ods_instance_contexts,
    ods_instance_derivatives,
    ods_instances,
)
from services.rules.errors import ConflictError
from services.rules.states import PENDING, InstanceStatus, is_terminal, outcome
from services.runtime.logging import get_logger

log = get_logger(__name__)

# Serialises the operations that claim the same name or database name (create, rename), so two
# of them cannot both see it free; operations on other names do not wait for each other.
# pg advisory lock class "edfi-im names" (first key of the two-key form).
NAME_LOCK_CLASS = 0x0ED1F4
# pg advisory lock key "edfi-im sync": replicas importing dbo rows together import one at a time.
SYNC_LOCK_KEY = 0x0ED1F1_5E7C
UNKNOWN_TEMPLATE = "Unknown"

# What references an API client in Ed-Fi's dbo (the foreign keys from clientaccesstokens are NO
# ACTION; the other two cascade, and are cleared explicitly all the same).
CLIENT_REFERENCES = (
    client_access_tokens,
    api_client_ownership_tokens,
    api_client_application_education_organizations,
)


def live() -> Any:
    return db_instances.c.status != InstanceStatus.DELETED.value


# --- reads that lock, and the name rules ---------------------------------------------------


async def lock(conn: AsyncConnection, instance_id: int, *, shared: bool = False) -> Row[Any] | None:
    """The instance's row, locked for the rest of the transaction (`shared`: others may read
    and share-lock it, no one may change it)."""
    row: Row[Any] | None = (
        await conn.execute(_lock_statement(shared), {"p_id": instance_id})
    ).first()
    return row


@functools.cache
def _lock_statement(shared: bool) -> Any:
    """Built once (the bound `p_id`): a hot path binds values only (building a statement and
    its cache key costs more than sending it)."""
    return locked(
        select(db_instances).where(db_instances.c.id == bindparam("p_id", type_=Integer)),
        db_instances,
        shared=shared,
    )


def _name_key(value: str) -> int:
    """A stable 32-bit key of a name; two names sharing one only wait for each other."""
    digest = hashlib.blake2b(value.lower().encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


# The id the next instance takes (its SERIAL's sequence), reserved with the name locks.
_NEXT_ID = func.nextval(func.pg_get_serial_sequence(db_instances.fullname, "id"))


async def lock_names(
    conn: AsyncConnection, name: str, database_name: str, *, reserve_id: bool = False
) -> int | None:
    """Transaction locks on the name and the database name (ignoring case), taken in one order
    so that two operations never wait for each other in a circle. `reserve_id`: on PostgreSQL,
    also the id a new instance will be inserted with (`add_pending_if_free`), in the same round
    trip; None elsewhere (an id not used is a gap in the ids, as a rolled-back insert leaves)."""
    keys = sorted({_name_key(name), _name_key(database_name)})
    reserved = await xact_locks(
        conn,
        *((NAME_LOCK_CLASS, key) for key in keys),
        then=_NEXT_ID if reserve_id else None,
    )
    return None if reserved is None else int(reserved)


def _holds(name: str, database: str) -> Any:
    """A live instance that has, or is being renamed to, the name or the database name bound
    (lower-cased) as `name` and `database`."""
    d = db_instances.c
    name_value = bindparam(name, type_=String)
    database_value = bindparam(database, type_=String)
    return live() & (
        (func.lower(d.name) == name_value)
        | (func.lower(d.databasename) == database_value)
        | (func.lower(d.pendingname) == name_value)
        | (func.lower(d.pendingdatabasename) == database_value)
    )


@functools.cache
def _conflict_query(exclude: bool) -> Any:
    """Built once (bound parameters `name`, `database_name`, lower-cased, and `exclude_id`):
    a request binds values only."""
    d = db_instances.c
    query = (
        select(d.id, d.name, d.databasename, d.pendingname, d.pendingdatabasename)
        .where(_holds("name", "database_name"))
        .limit(1)
    )
    if exclude:
        query = query.where(d.id != bindparam("exclude_id", type_=Integer))
    return query


async def conflict(
    conn: AsyncConnection, name: str, database_name: str, exclude_id: int | None = None
) -> ConflictError | None:
    """A live instance that has, or is being renamed to, this name or database name."""
    values: dict[str, Any] = {"name": name.lower(), "database_name": database_name.lower()}
    if exclude_id is not None:
        values["exclude_id"] = exclude_id
    query = _conflict_query(exclude_id is not None)
    row = (await conn.execute(query, values)).first()
    if row is None:
        return None
    if row.name.lower() == name.lower():
        detail = f"an instance named {row.name!r} already exists (id {row.id})"
    elif (row.pendingname or "").lower() == name.lower():
        detail = f"instance {row.id} is being renamed to {row.pendingname!r}"
    else:
        detail = (
            f"instance {row.id} ({row.name!r}) already uses the database the name {name!r} "
            f"maps to ({database_name!r})"
        )
    return ConflictError(detail, errors={"name": [detail]}, conflictingInstanceId=row.id)


async def retire_failed_create(conn: AsyncConnection, instance_id: int, reason: str) -> bool:
    """Retire an instance whose create failed before it made a database (Error, its job ended
    and its server step never done: the fence guarantees none will be), so that a new create
    may take its name: it becomes Deleted, with `reason`. False when it is not such an instance
    (it keeps its name)."""
    row = await lock(conn, instance_id)
    if row is None or row.status != InstanceStatus.ERROR.value or row.currentjobid is None:
        return False
    job = (
        await conn.execute(
            select(jobs.c.status, jobs.c.server_done_at).where(jobs.c.id == row.currentjobid)
        )
    ).first()
    if job is None or not is_terminal(job.status) or job.server_done_at is not None:
        return False
    await settle(conn, instance_id, InstanceStatus.DELETED, reason=f"{row.error}; {reason}")
    log.info("failed create retired", instance_id=instance_id, reason=reason)
    return True


# --- transitions ---------------------------------------------------------------------------------


# A new instance's fixed values (a create Pending, now); the rest are bound per create.
_PENDING: dict[str, Any] = {
    "status": InstanceStatus.PENDING.value,
    "lastrefreshed": func.now(),
    "lastmodifieddate": func.now(),
    "createdat": func.now(),
    "imported": False,
}
# The details of an instance created without any (the columns' defaults).
_NO_DETAILS: dict[str, Any] = {"instancetype": None, "contexts": [], "derivatives": []}
# Built once: a create binds values only.
_ADD_PENDING = insert(db_instances).values(**_PENDING).returning(db_instances)
_PG_ADD_PENDING = (
    pg_insert(db_instances)
    .values(**_PENDING)
    .on_conflict_do_nothing()
    .returning(db_instances)
    .execution_options(**ENGINE_SPECIFIC)
)


# A statement of another table that a new instance's INSERT carries: the builder of its CTE,
# given the instance's (inserting only when the instance was), and the CTE's bound values.
Along = tuple[Callable[[Any], Any], dict[str, Any]]


@functools.cache
def _pg_add_pending_if_free(along: tuple[Callable[[Any], Any], ...]) -> Any:
    """`WITH new_instance AS (INSERT … (id, …) SELECT … WHERE NOT EXISTS (a live holder of
    either name) ON CONFLICT DO NOTHING RETURNING *), <along> SELECT * FROM new_instance`: the
    name check, the insert with the id reserved by `lock_names`, and each `along` CTE in one
    statement (PostgreSQL; built once per set of builders)."""
    d = db_instances.c
    holder = select(d.id).where(_holds("p_name_lower", "p_database_lower"))
    bound = ("id", "name", "databasetemplate", "databasename", "currentjobid", *_NO_DETAILS)
    values = {c: bindparam(f"p_{c}", type_=d[c].type) for c in bound} | _PENDING
    new_instance = (
        pg_insert(db_instances)
        .from_select(*row_where(db_instances, values, ~exists(holder)))
        .on_conflict_do_nothing()
        .returning(db_instances)
        .cte("new_instance")
    )
    return (
        select(new_instance)
        .add_cte(*(build(new_instance) for build in along))
        .execution_options(**ENGINE_SPECIFIC)
    )


async def add_pending_if_free(
    conn: AsyncConnection,
    *,
    instance_id: int,
    name: str,
    template_key: str,
    database_name: str,
    job_id: uuid.UUID,
    details: dict[str, Any],
    along: tuple[Along, ...],
) -> Row[Any] | None:
    """A new instance (`instance_id`: reserved by `lock_names`), Pending its create, when no
    live instance has or is being renamed to either name (the caller holds its name locks, so
    the statement's snapshot, taken after them, sees every holder): one round trip where
    `conflict` then `add_pending` take two. `along`: rows of other tables written in the same
    statement, only with the instance (its job and command: one round trip more saved). None
    when a name is held: nothing was written (the caller then finds out by whom and takes the
    two steps). PostgreSQL only (SQL Server, and a copy, whose source is checked between the
    two, take the two steps)."""
    values = _pending_values(name, template_key, database_name, job_id, details)
    params = {f"p_{column}": value for column, value in values.items()}
    params |= {"p_id": instance_id, "p_name_lower": name.lower()}
    params |= {"p_database_lower": database_name.lower()}
    for _, along_values in along:
        params |= along_values
    statement = _pg_add_pending_if_free(tuple(build for build, _ in along))
    row: Row[Any] | None = (await conn.execute(statement, params)).first()
    return row


def _pending_values(
    name: str, template_key: str, database_name: str, job_id: uuid.UUID, details: dict[str, Any]
) -> dict[str, Any]:
    """A new instance's bound columns."""
    return {
        "name": name,
        "databasetemplate": template_key,
        "databasename": database_name,
        "currentjobid": job_id,
        **_NO_DETAILS,
        **details,
    }


async def add_pending(
    conn: AsyncConnection,
    *,
    name: str,
    template_key: str,
    database_name: str,
    job_id: uuid.UUID,
    details: dict[str, Any],
) -> Row[Any]:
    """A new instance, Pending its create (the caller holds its name locks). A unique index
    that refuses it (a name taken by a writer that does not hold the name locks) is a
    ConflictError naming the holder."""
    values = _pending_values(name, template_key, database_name, job_id, details)
    if conn.dialect.name == "postgresql":
        # ON CONFLICT DO NOTHING: a refusal leaves the transaction usable without a savepoint
        # (two round trips fewer on every create).
        inserted: Row[Any] | None = (await conn.execute(_PG_ADD_PENDING, values)).first()
        if inserted is None:
            found = await conflict(conn, name, database_name)
            raise found or ConflictError(f"{name!r} is taken")
        return inserted
    try:
        async with conn.begin_nested():
            row: Row[Any] = (await conn.execute(_ADD_PENDING, values)).one()
    except IntegrityError:
        found = await conflict(conn, name, database_name)
        raise found or ConflictError(f"{name!r} is taken") from None
    return row


async def _set(conn: AsyncConnection, instance_id: int, **values: Any) -> Row[Any]:
    """The instance's columns set to `values` (plain values, bound), its times to now."""
    params = _set_values("p_", instance_id, values)
    row: Row[Any] = (await conn.execute(_set_statement(tuple(sorted(values))), params)).one()
    return row


@functools.cache
def _set_statement(columns: tuple[str, ...]) -> Any:
    """`UPDATE … SET <columns> = bound values … RETURNING *`, built once per set of columns."""
    return _set_update("p_", columns).returning(db_instances)


def _set_update(prefix: str, columns: tuple[str, ...]) -> Any:
    """`UPDATE … SET <columns>` with values bound as `<prefix><column>`, the id as
    `<prefix>id`, the times now."""
    c = db_instances.c
    return (
        update(db_instances)
        .where(c.id == bindparam(f"{prefix}id", type_=Integer))
        .values(
            lastmodifieddate=func.now(),
            lastrefreshed=func.now(),
            **{name: bindparam(f"{prefix}{name}", type_=c[name].type) for name in columns},
        )
    )


def _set_values(prefix: str, instance_id: int, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{key}": value for key, value in values.items()} | {f"{prefix}id": instance_id}


async def begin_operation(
    conn: AsyncConnection,
    instance_id: int,
    operation: Operation,
    job_id: uuid.UUID,
    *,
    pending_name: str | None = None,
    pending_database_name: str | None = None,
) -> Row[Any]:
    """A rename or delete accepted: the instance takes the operation's pending status, its job,
    and (a rename) the name it reserves."""
    values: dict[str, Any] = {}
    if operation is Operation.RENAME:
        values = {"pendingname": pending_name, "pendingdatabasename": pending_database_name}
    return await _set(
        conn,
        instance_id,
        status=PENDING[operation].value,
        currentjobid=job_id,
        error=None,
        **values,
    )


async def put_back(conn: AsyncConnection, instance_id: int, previous: str | None) -> None:
    """Its job was cancelled before it started: the instance is as it was (a cancelled create's
    instance is Deleted: nothing was made)."""
    await _set(
        conn,
        instance_id,
        status=previous or InstanceStatus.DELETED.value,
        pendingname=None,
        pendingdatabasename=None,
        error=None if previous else "the create was cancelled before it started",
    )


async def mark_started(conn: AsyncConnection, instance_id: int) -> None:
    """A worker began its create: InProgress (other operations keep their pending status)."""
    await _set(conn, instance_id, **_started())


def started_along(instance_id: int) -> CteWrite:
    """PostgreSQL: `mark_started` as a CTE for the job's statement to carry (`jobs`' `along`)."""
    return _set_along(instance_id, _started())


def _started() -> dict[str, Any]:
    return {"status": InstanceStatus.IN_PROGRESS.value}


async def settle(
    conn: AsyncConnection,
    instance_id: int,
    status: InstanceStatus,
    *,
    reason: str | None,
    **values: Any,
) -> None:
    """The operation's outcome: its status, the reason of a failure, no name reserved."""
    await _set(conn, instance_id, **_settled_values(status, reason, values))


def _settled_values(
    status: InstanceStatus, reason: str | None, values: dict[str, Any]
) -> dict[str, Any]:
    return {
        "status": status.value,
        "error": reason,
        "pendingname": None,
        "pendingdatabasename": None,
        **values,
    }


def _set_along(instance_id: int, values: dict[str, Any]) -> CteWrite:
    """`_set` as a CTE (its own bound names, `i_…`) and its values."""
    return _set_cte(tuple(sorted(values))), _set_values("i_", instance_id, values)


@functools.cache
def _set_cte(columns: tuple[str, ...]) -> Any:
    """`_set_statement` as a CTE, built once per set of columns."""
    return _set_update("i_", columns).returning(db_instances.c.id).cte("instance_set")


async def fail_operation(
    conn: AsyncConnection, instance_id: int, job_id: uuid.UUID, operation: Operation, reason: str
) -> None:
    """Its operation failed without an outcome (given up, dead-lettered, refused): the instance
    takes the operation's failure status, if that job is still its current one."""
    failed, _ = outcome(operation, succeeded=False)
    await conn.execute(
        update(db_instances)
        .where(db_instances.c.id == instance_id)
        .where(db_instances.c.currentjobid == job_id)
        .values(
            status=failed.value,
            error=reason,
            pendingname=None,
            pendingdatabasename=None,
            lastmodifieddate=func.now(),
            lastrefreshed=func.now(),
        )
    )


async def record_database(conn: AsyncConnection, instance_id: int, database: str) -> None:
    """The database the server now has under the instance's name (a late fact)."""
    await _set(conn, instance_id, databasename=database)


async def reopen_operation(
    conn: AsyncConnection,
    instance_id: int,
    operation: Operation,
    *,
    started: bool,
    new_name: str | None = None,
    new_database_name: str | None = None,
) -> None:
    """A failed operation open again (its command or outcome requeued): the operation's pending
    status (InProgress for a create already started), the name a rename reserves."""
    status = (
        InstanceStatus.IN_PROGRESS
        if started and operation is Operation.CREATE
        else PENDING[operation]
    )
    values: dict[str, Any] = {"status": status.value, "error": None}
    if operation is Operation.RENAME:
        values |= {"pendingname": new_name, "pendingdatabasename": new_database_name}
    await _set(conn, instance_id, **values)


async def replace_details(
    conn: AsyncConnection, instance_id: int, details: dict[str, Any], ods_id: int | None
) -> None:
    """An instance's type, contexts and derivatives, replaced here and (once it is in dbo) in
    dbo, where the ODS/API reads them."""
    await _set(conn, instance_id, **details)
    if ods_id is None:
        return
    found = (
        await conn.execute(
            select(ods_instances.c.connectionstring).where(ods_instances.c.odsinstanceid == ods_id)
        )
    ).first()
    if found is None:
        return
    connection_string = found.connectionstring
    await conn.execute(
        update(ods_instances)
        .where(ods_instances.c.odsinstanceid == ods_id)
        .values(instancetype=details["instancetype"])
    )
    await write_details(
        conn, ods_id, details["contexts"], details["derivatives"], connection_string or ""
    )


# --- Ed-Fi's dbo ---------------------------------------------------------------------------------


async def write_details(
    conn: AsyncConnection,
    ods_id: int,
    contexts: list[dict[str, str]] | None,
    derivatives: list[dict[str, str]] | None,
    connection_string: str,
    *,
    new: bool = False,
) -> None:
    """The instance's contexts and derivatives in dbo, replacing what was there (`new`: a row
    this transaction has just inserted, which has none yet). A derivative gets the instance's
    own connection string until its real one is set by whoever runs it."""
    if not new:
        for table in (ods_instance_contexts, ods_instance_derivatives):
            await conn.execute(delete(table).where(table.c.odsinstance_odsinstanceid == ods_id))
    if contexts:
        await conn.execute(
            insert(ods_instance_contexts),
            [
                {
                    "odsinstance_odsinstanceid": ods_id,
                    "contextkey": c["contextKey"],
                    "contextvalue": c["contextValue"],
                }
                for c in contexts
            ],
        )
    if derivatives:
        await conn.execute(
            insert(ods_instance_derivatives),
            [
                {
                    "odsinstance_odsinstanceid": ods_id,
                    "derivativetype": d["derivativeType"],
                    "connectionstring": connection_string,
                }
                for d in derivatives
            ],
        )


async def add_to_dbo(conn: AsyncConnection, instance: Any, encrypted: Callable[[], str]) -> int:
    """The created instance's dbo.odsinstances row, contexts and derivatives; its id."""
    connection_string = encrypted()
    ods_id: int = await conn.scalar(
        _ADD_TO_DBO,
        {
            "name": instance.name,
            "instancetype": instance.instancetype,
            "connectionstring": connection_string,
        },
    )
    if instance.contexts or instance.derivatives:
        await write_details(
            conn, ods_id, instance.contexts, instance.derivatives, connection_string, new=True
        )
    return ods_id


_ADD_TO_DBO = insert(ods_instances).returning(ods_instances.c.odsinstanceid)


async def settle_created(
    conn: AsyncConnection,
    instance: Any,
    encrypted: Callable[[], str],
    status: InstanceStatus,
    **values: Any,
) -> int:
    """A create's outcome: the instance's dbo.odsinstances row (and its contexts and
    derivatives) added, then the instance settled (`settle`) pointing at it; the row's id. On
    PostgreSQL, for an instance with no contexts or derivatives, one statement: the dbo row's
    INSERT a CTE of the instance's UPDATE (one round trip fewer on every create's way)."""
    if conn.dialect.name != "postgresql" or instance.contexts or instance.derivatives:
        added = await add_to_dbo(conn, instance, encrypted)
        await settle(conn, instance.id, status, reason=None, odsinstanceid=added, **values)
        return added
    settled = _settled_values(status, None, values)
    params = _set_values("p_", instance.id, settled) | {
        "d_name": instance.name,
        "d_instancetype": instance.instancetype,
        "d_connectionstring": encrypted(),
    }
    ods_id: int = await conn.scalar(_settle_created_statement(tuple(sorted(settled))), params)
    return ods_id


@functools.cache
def _settle_created_statement(columns: tuple[str, ...]) -> Any:
    """Built once per set of columns: `WITH dbo_added AS (INSERT INTO dbo.odsinstances …
    RETURNING odsinstanceid) UPDATE edfi_im.dbinstances SET odsinstanceid = (SELECT … FROM
    dbo_added), <columns> … RETURNING odsinstanceid`."""
    d = ods_instances.c
    added = (
        insert(ods_instances)
        .values(
            name=bindparam("d_name", type_=d.name.type),
            instancetype=bindparam("d_instancetype", type_=d.instancetype.type),
            connectionstring=bindparam("d_connectionstring", type_=d.connectionstring.type),
        )
        .returning(d.odsinstanceid)
        .cte("dbo_added")
    )
    return (
        _set_update("p_", columns)
        .values(odsinstanceid=select(added.c.odsinstanceid).scalar_subquery())
        .add_cte(added)
        .returning(db_instances.c.odsinstanceid)
        .execution_options(**ENGINE_SPECIFIC)
    )


async def repoint_in_dbo(
    conn: AsyncConnection,
    ods_id: int,
    *,
    new_name: str,
    encrypted: Callable[[], str],
    was_own: Callable[[str | None], bool],
) -> None:
    """A renamed instance's dbo row: its name and connection string follow the rename, and so
    does every derivative whose connection string `was_own` (the instance's own; one pointed at
    a real replica is left alone)."""
    await conn.execute(
        update(ods_instances)
        .where(ods_instances.c.odsinstanceid == ods_id)
        .values(name=new_name, connectionstring=encrypted())
    )
    d = ods_instance_derivatives.c
    derivatives = (
        await conn.execute(
            locked(
                select(d.odsinstancederivativeid, d.connectionstring).where(
                    d.odsinstance_odsinstanceid == ods_id
                ),
                ods_instance_derivatives,
            )
        )
    ).all()
    for row in derivatives:
        if row.connectionstring and was_own(row.connectionstring):
            await conn.execute(
                update(ods_instance_derivatives)
                .where(d.odsinstancederivativeid == row.odsinstancederivativeid)
                .values(connectionstring=encrypted())
            )


async def connection_string_of(conn: AsyncConnection, ods_id: int) -> str | None:
    """The dbo row's (encrypted) connection string, its row locked."""
    value: str | None = await conn.scalar(
        locked(
            select(ods_instances.c.connectionstring).where(ods_instances.c.odsinstanceid == ods_id),
            ods_instances,
        )
    )
    return value


async def clients_of_only(conn: AsyncConnection, ods_id: int) -> list[int]:
    """The API clients linked to this ODS instance and to no other, locked: a link or token
    another tool adds meanwhile waits for this transaction (seed 001: they go with it)."""
    links, other = api_client_ods_instances, aliased(api_client_ods_instances)
    found = await conn.scalars(
        locked(
            select(api_clients.c.apiclientid)
            .where(
                api_clients.c.apiclientid.in_(
                    select(links.c.apiclient_apiclientid).where(
                        links.c.odsinstance_odsinstanceid == ods_id
                    )
                )
            )
            .where(
                ~exists()
                .where(other.c.apiclient_apiclientid == api_clients.c.apiclientid)
                .where(other.c.odsinstance_odsinstanceid != ods_id)
            )
            .order_by(api_clients.c.apiclientid),
            api_clients,
        )
    )
    return list(found.all())


async def remove_from_dbo(conn: AsyncConnection, ods_id: int) -> int:
    """Remove an ODS instance from dbo in the order Ed-Fi's foreign keys need: the tokens,
    ownership-token and education-organization links of the clients linked to it alone, every
    client link, those clients, its contexts and derivatives, then the row. A client another
    instance still uses keeps everything but its link to this one; applications and vendors
    stay (as Ed-Fi's Admin API leaves them). Returns how many clients went."""
    await conn.execute(
        locked(
            select(ods_instances.c.odsinstanceid).where(ods_instances.c.odsinstanceid == ods_id),
            ods_instances,
        )
    )
    doomed = await clients_of_only(conn, ods_id)
    if doomed:
        for table in CLIENT_REFERENCES:
            await conn.execute(delete(table).where(table.c.apiclient_apiclientid.in_(doomed)))
    await conn.execute(
        delete(api_client_ods_instances).where(
            api_client_ods_instances.c.odsinstance_odsinstanceid == ods_id
        )
    )
    if doomed:
        await conn.execute(delete(api_clients).where(api_clients.c.apiclientid.in_(doomed)))
    for table in (ods_instance_contexts, ods_instance_derivatives):
        await conn.execute(delete(table).where(table.c.odsinstance_odsinstanceid == ods_id))
    await conn.execute(delete(ods_instances).where(ods_instances.c.odsinstanceid == ods_id))
    return len(doomed)


# --- rows other Ed-Fi tools made ------------------------------------------------------------------


async def import_from_dbo(
    engine: AsyncEngine,
    place_of: Callable[[str | None], tuple[str | None, str | None, str | None]],
) -> list[int]:
    """Start-up sync (seed 001): every dbo.odsinstances row without an instance gets one
    (Completed, imported), unless `place_of(connection string)` refuses it. `place_of` returns
    (database, problem, refusal): a refused row is left out; a row whose database is unknown is
    imported with the problem as its error. Safe to run repeatedly and from several replicas at
    once (an advisory lock serialises it; each row is imported once)."""
    imported: list[int] = []
    async with engine.begin() as conn:
        await xact_lock(conn, SYNC_LOCK_KEY)
        rows = (
            await conn.execute(
                select(ods_instances)
                .where(
                    ~exists().where(db_instances.c.odsinstanceid == ods_instances.c.odsinstanceid)
                )
                .order_by(ods_instances.c.odsinstanceid)
            )
        ).all()
        for row in rows:
            database, problem, refusal = place_of(row.connectionstring)
            if refusal is not None:
                log.warning(
                    "dbo.odsinstances row not imported",
                    ods_instance_id=row.odsinstanceid,
                    name=row.name,
                    reason=refusal,
                )
                continue
            try:
                async with conn.begin_nested():
                    await conn.execute(
                        insert(db_instances).values(
                            name=row.name,
                            odsinstanceid=row.odsinstanceid,
                            odsinstancename=row.name,
                            status=InstanceStatus.COMPLETED.value,
                            databasetemplate=UNKNOWN_TEMPLATE,
                            databasename=database,
                            error=problem,
                            imported=True,
                            lastrefreshed=func.now(),
                            lastmodifieddate=func.now(),
                            createdat=func.now(),
                        )
                    )
            except IntegrityError:
                log.warning(
                    "dbo.odsinstances row not imported: a live instance already has its name "
                    "or database",
                    ods_instance_id=row.odsinstanceid,
                    name=row.name,
                )
                continue
            imported.append(row.odsinstanceid)
            log.info(
                "imported dbo.odsinstances row",
                ods_instance_id=row.odsinstanceid,
                name=row.name,
                database_name=database,
                problem=problem,
            )
    return imported
