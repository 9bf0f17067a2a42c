"""Invariant 7: no secret (the ODS password in connection strings, a client secret, an access
token, the encryption key, the token-signing key) appears in any log line, published message,
outbox row, problem detail or API response, over a full create, rename and delete cycle."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import aio_pika
import httpx
import pytest

from services.rules import crypto
from services.runtime.topology import EVENTS_EXCHANGE
from tests.conftest import unique_name
from tests.support import pg, rabbit
from tests.support.cluster import cluster
from tests.support.polling import wait_for_instance

pytestmark = pytest.mark.e2e

ODS_PASSWORD = f"Ods-Pw-{uuid.uuid4().hex}"
CLIENT_SECRET = f"Client-Secret-{uuid.uuid4().hex}!"


async def _listen(url: str) -> tuple[aio_pika.abc.AbstractConnection, aio_pika.abc.AbstractQueue]:
    """A private queue that receives a copy of every event."""
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    queue = await channel.declare_queue(f"test.secrets.{uuid.uuid4().hex[:8]}", exclusive=True)
    await queue.bind(exchange, routing_key="#")
    return connection, queue


async def _drain(queue: aio_pika.abc.AbstractQueue) -> list[str]:
    bodies = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        bodies.append(message.body.decode() + json.dumps(dict(message.headers or {}), default=str))
    return bodies


def test_no_secret_leaves_its_place_over_a_full_cycle(
    settings_env: dict[str, str], tmp_path: Path, encryption_key: bytes
) -> None:
    template = (
        "host=127.0.0.1;port=5432;username=postgres;"
        f"password={ODS_PASSWORD};database={{database}};pooling=true"
    )
    with cluster(settings_env, tmp_path, EDFI_IM_ODS_CONNECTION_STRING_TEMPLATE=template) as system:
        admin = system.env["EDFI_IM_ADMIN_DATABASE_URL"].rsplit("/", 1)[1]
        loop = asyncio.new_event_loop()
        connection, queue = loop.run_until_complete(_listen(rabbit.amqp_url(system.vhost)))
        seen: list[str] = []  # every response body of the cycle
        try:
            client_id = f"secrets-{uuid.uuid4().hex[:8]}"
            for r in (
                httpx.post(
                    f"{system.url}/connect/register",
                    data={"ClientId": client_id, "ClientSecret": CLIENT_SECRET, "DisplayName": "s"},
                ),
                httpx.post(  # refused: the secret must not be echoed back
                    f"{system.url}/connect/register",
                    data={
                        "ClientId": "weak",
                        "ClientSecret": CLIENT_SECRET.lower(),
                        "DisplayName": "s",
                    },
                ),
            ):
                seen.append(r.text)
            issued = httpx.post(
                f"{system.url}/connect/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": CLIENT_SECRET,
                    "scope": "edfi_admin_api/full_access",
                },
            )
            token = issued.json()["access_token"]
            wrong = httpx.post(
                f"{system.url}/connect/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": CLIENT_SECRET + "x",
                    "scope": "edfi_admin_api/full_access",
                },
            )
            seen.append(wrong.text)
            with httpx.Client(
                base_url=system.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
            ) as api:
                r = api.post(
                    "/v2/dbInstances",
                    json={"name": unique_name("Secret"), "databaseTemplate": "Minimal"},
                )
                seen.append(r.text)
                made = r.json()
                done, _ = wait_for_instance(api, made["id"])
                assert done["status"] == "Completed"
                # The password did reach dbo.odsinstances, encrypted.
                [(stored,)] = pg.query(
                    admin,
                    "SELECT connectionstring FROM dbo.odsinstances WHERE odsinstanceid = %s",
                    (done["odsInstanceId"],),
                )
                assert ODS_PASSWORD not in stored
                assert f"password={ODS_PASSWORD}" in crypto.decrypt(stored, encryption_key)
                renamed = api.put(f"/v2/dbInstances/{made['id']}", json={"name": unique_name("S2")})
                seen.append(renamed.text)
                assert wait_for_instance(api, made["id"])[0]["status"] == "Completed"
                deleted = api.delete(f"/v2/dbInstances/{made['id']}")
                seen.append(deleted.text)
                assert wait_for_instance(api, made["id"])[0]["status"] == "Deleted"
                for path in ("/v2/dbInstances", "/v2/jobs", f"/v2/dbInstances/{made['id']}"):
                    seen.append(api.get(path).text)
                seen.append(api.get("/v2/dbInstances/999999").text)
                seen.append(api.get("/openapi.json").text)
                # The bad-token answer must not echo the token it was given.
                seen.append(
                    httpx.get(
                        f"{system.url}/v2/jobs", headers={"Authorization": f"Bearer {token}x"}
                    ).text
                )
            events = loop.run_until_complete(_drain(queue))
        finally:
            loop.run_until_complete(connection.close())
            loop.close()

        outbox_rows = [
            json.dumps(row[0]) for row in pg.query(admin, "SELECT body FROM edfi_im.outbox")
        ]
        jobs = [
            json.dumps(list(row), default=str)
            for row in pg.query(
                admin, "SELECT data, command, error, progress_message FROM edfi_im.jobs"
            )
        ]
        system.stop_all()  # the shutdown lines too
        logs = {path.name: path.read_text() for path in tmp_path.glob("*.log")}

    # The places scanned are the right ones: they hold this cycle's own traces.
    assert client_id in logs["gateway.log"]
    assert any(made["jobId"] in body for body in events)
    assert any(made["jobId"] in body for body in outbox_rows)
    assert made["jobId"] in logs["provisioner-0.log"]
    secrets = {
        "ODS password": ODS_PASSWORD,
        "client secret": CLIENT_SECRET,
        "access token": token,
        "access token signature": token.rsplit(".", 1)[1],
        "encryption key": settings_env["ODS_CONNECTION_STRING_ENCRYPTION_KEY"],
        "encryption key bytes": encryption_key.hex(),
        "signing key": settings_env["EDFI_IM_JWT_SIGNING_KEY"],
    }
    places = {
        **{f"log {name}": text for name, text in logs.items()},
        **{f"event {i}": body for i, body in enumerate(events)},
        **{f"outbox {i}": body for i, body in enumerate(outbox_rows)},
        **{f"job {i}": body for i, body in enumerate(jobs)},
        **{f"response {i}": body for i, body in enumerate(seen)},
    }
    leaks = [
        f"{what} in {where}"
        for what, secret in secrets.items()
        for where, text in places.items()
        if secret in text
    ]
    assert leaks == []
