"""The ownership marker, staging names and how driver errors are classified."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg import errors as pg_errors

from services.rules.errors import PermanentError, TransientError
from services.rules.marker import MANAGED_BY, Marker, staging_name
from services.runtime.ods_server import classify

JOB = uuid.UUID("3f2b8c4e-1d2a-4b6c-9e8f-0a1b2c3d4e5f")


# --- marker ------------------------------------------------------------------------------------


@pytest.mark.parametrize("instance_id", [1, 42, 2**31 - 1])
def test_rendered_marker_parses_back_to_the_same_marker(instance_id: int) -> None:
    marker = Marker(instance_id, uuid.uuid4())
    assert Marker.parse(marker.render()) == marker


def test_rendered_marker_is_json_naming_this_system() -> None:
    data = json.loads(Marker(7, JOB).render())
    assert data["managedBy"] == MANAGED_BY
    assert data["instanceId"] == 7
    assert data["jobId"] == str(JOB)


@pytest.mark.parametrize(
    "comment",
    [
        None,
        "",
        "Created by the DBA for reporting",
        "{not json",
        "[]",
        "42",
        "null",
        '"edfi-instance-manager"',
        json.dumps({"instanceId": 7, "jobId": str(JOB)}),
        json.dumps({"managedBy": "someone-else", "instanceId": 7, "jobId": str(JOB)}),
        json.dumps({"managedBy": MANAGED_BY.upper(), "instanceId": 7, "jobId": str(JOB)}),
        json.dumps({"managedBy": MANAGED_BY, "jobId": str(JOB)}),
        json.dumps({"managedBy": MANAGED_BY, "instanceId": 7}),
        json.dumps({"managedBy": MANAGED_BY, "instanceId": "seven", "jobId": str(JOB)}),
        json.dumps({"managedBy": MANAGED_BY, "instanceId": None, "jobId": str(JOB)}),
        json.dumps({"managedBy": MANAGED_BY, "instanceId": 7, "jobId": "not-a-uuid"}),
        json.dumps({"managedBy": MANAGED_BY, "instanceId": 7, "jobId": 12345}),
    ],
    ids=[
        "none",
        "empty",
        "free-text",
        "invalid-json",
        "json-list",
        "json-number",
        "json-null",
        "json-string",
        "no-managed-by",
        "other-managed-by",
        "managed-by-wrong-case",
        "no-instance-id",
        "no-job-id",
        "non-numeric-instance-id",
        "null-instance-id",
        "bad-job-id",
        "numeric-job-id",
    ],
)
def test_comment_that_is_not_our_marker_parses_to_none(comment: str | None) -> None:
    assert Marker.parse(comment) is None


@pytest.mark.parametrize("tenant", [None, "district-a"])
def test_a_marker_names_its_tenant_and_parses_back_with_it(tenant: str | None) -> None:
    marker = Marker(7, JOB, tenant)
    assert Marker.parse(marker.render()) == marker
    assert json.loads(marker.render()).get("tenant") == tenant
    assert marker.names(tenant, 7)
    assert not marker.names(tenant, 8)


def test_the_same_instance_id_in_another_tenant_is_not_named_by_the_marker() -> None:
    assert not Marker(7, JOB, "district-a").names("district-b", 7)
    assert not Marker(7, JOB, "district-a").names(None, 7)
    assert not Marker(7, JOB).names("district-a", 7)


def test_markers_for_different_instances_differ() -> None:
    assert Marker.parse(Marker(1, JOB).render()) != Marker(2, JOB)


# --- staging name ------------------------------------------------------------------------------


def test_staging_name_is_stable_for_a_job() -> None:
    assert staging_name(JOB) == staging_name(uuid.UUID(str(JOB)))


def test_staging_names_of_different_jobs_differ() -> None:
    names = {staging_name(uuid.uuid4()) for _ in range(200)}
    assert len(names) == 200


def test_staging_name_contains_the_whole_job_id() -> None:
    assert JOB.hex in staging_name(JOB)


@pytest.mark.parametrize("job", [JOB, uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)])
def test_staging_name_fits_the_postgresql_identifier_limit(job: uuid.UUID) -> None:
    assert len(staging_name(job).encode("utf-8")) <= 63


def test_staging_name_is_a_plain_lowercase_identifier() -> None:
    # PostgreSQL folds unquoted identifiers to lower case; a lower-case, [a-z0-9_] name is the
    # same whether or not a tool quotes it.
    name = staging_name(JOB)
    assert name == name.lower()
    assert all(c.isascii() and (c.isalnum() or c == "_") for c in name)
    assert not name[0].isdigit()


# --- classify ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        pg_errors.ObjectInUse("source database is being accessed by other users"),
        pg_errors.LockNotAvailable("could not obtain lock"),
        pg_errors.ConnectionException("connection exception"),
        pg_errors.ConnectionFailure("connection failure"),
        pg_errors.SqlclientUnableToEstablishSqlconnection("cannot connect"),
        pg_errors.ConnectionDoesNotExist("gone"),
        pg_errors.CannotConnectNow("the database system is starting up"),
        pg_errors.TooManyConnections("too many clients"),
        pg_errors.SerializationFailure("could not serialize"),
        pg_errors.DeadlockDetected("deadlock"),
    ],
    ids=lambda e: f"{type(e).__name__}-{e.sqlstate}",
)
def test_retryable_server_errors_are_transient(error: psycopg.Error) -> None:
    result = classify(error)
    assert isinstance(result, TransientError)
    assert str(error) in str(result)


def test_connection_failure_without_sqlstate_is_transient() -> None:
    error = psycopg.OperationalError("connection refused")
    assert error.sqlstate is None
    assert isinstance(classify(error), TransientError)


@pytest.mark.parametrize(
    "error",
    [
        pg_errors.DuplicateDatabase('database "x" already exists'),
        pg_errors.InvalidCatalogName('template database "t" does not exist'),
        pg_errors.InsufficientPrivilege("permission denied to create database"),
        pg_errors.SyntaxError("syntax error"),
        pg_errors.UniqueViolation("duplicate key"),
        pg_errors.DiskFull("no space left"),
    ],
    ids=lambda e: f"{type(e).__name__}-{e.sqlstate}",
)
def test_other_server_errors_are_permanent_and_keep_the_sqlstate(error: psycopg.Error) -> None:
    result = classify(error)
    assert isinstance(result, PermanentError)
    assert not isinstance(result, TransientError)
    assert str(error) in str(result)
    assert str(error.sqlstate) in str(result)


def test_error_that_is_not_from_the_driver_is_permanent() -> None:
    assert isinstance(classify(RuntimeError("boom")), PermanentError)
