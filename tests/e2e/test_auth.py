"""Only the right caller: OAuth2 client credentials as Ed-Fi Admin API 2 has them, signed and
expiring tokens, scopes, an optional external OpenID Connect issuer, and problem details for
every refusal (401 without a valid token, 403 for the wrong scope)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import unique_name
from tests.support import pg
from tests.support.polling import wait_for_instance
from tests.support.stack import Stack, free_port

pytestmark = pytest.mark.e2e

FULL = "edfi_admin_api/full_access"
READ = "edfi_admin_api/read_only"
GOOD_SECRET = "Correct-Horse-Battery-Staple-2027!"

PROTECTED = [
    ("GET", "/v2/dbInstances"),
    ("POST", "/v2/dbInstances"),
    ("GET", "/v2/dbInstances/1"),
    ("PUT", "/v2/dbInstances/1"),
    ("DELETE", "/v2/dbInstances/1"),
    ("GET", "/v2/jobs"),
    ("GET", f"/v2/jobs/{uuid.UUID(int=1)}"),
    ("DELETE", f"/v2/jobs/{uuid.UUID(int=1)}"),
    ("GET", "/v2/schedules"),
    ("POST", "/v2/schedules"),
    ("POST", f"/v2/schedules/{uuid.UUID(int=1)}/pause"),
    ("GET", f"/v2/schedules/{uuid.UUID(int=1)}/runs"),
]


def _register(
    stack: Stack, client_id: str, secret: str = GOOD_SECRET, **extra: str
) -> httpx.Response:
    return httpx.post(
        f"{stack.url}/connect/register",
        data={"ClientId": client_id, "ClientSecret": secret, "DisplayName": "Auth tests", **extra},
        timeout=10,
    )


def _token(
    stack: Stack, client_id: str, secret: str = GOOD_SECRET, scope: str = FULL
) -> httpx.Response:
    return httpx.post(
        f"{stack.url}/connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
        },
        timeout=10,
    )


def _is_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_endpoint_needs_a_valid_token(stack: Stack, method: str, path: str) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Basic {GOOD_SECRET}"},
        {"Authorization": "Bearer " + jwt.encode({"sub": "x", "scope": FULL}, "wrong-key-" * 4)},
    ):
        r = httpx.request(method, f"{stack.url}{path}", headers=headers, json={}, timeout=10)
        problem = _is_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "token" in problem["detail"].lower()
        assert set(problem) == {"type", "title", "status", "detail", "instance"}


def test_open_endpoints_need_no_token(stack: Stack) -> None:
    for path in ("/health", "/ready", "/docs", "/openapi.json"):
        assert httpx.get(f"{stack.url}{path}", timeout=10).status_code == 200, path
    spec = httpx.get(f"{stack.url}/openapi.json", timeout=10).json()
    flows = spec["components"]["securitySchemes"]["OAuth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/connect/token"
    assert set(flows["clientCredentials"]["scopes"]) == {FULL, READ}


def test_register_then_token_then_call(stack: Stack, admin_database: str) -> None:
    client_id = f"auth-{uuid.uuid4().hex[:8]}"
    r = _register(stack, client_id)
    assert r.status_code == 200
    assert r.json() == {"title": f"Registered client {client_id} successfully.", "status": 200}
    _is_problem(_register(stack, client_id), 409)

    issued = _token(stack, client_id)
    assert issued.status_code == 200
    assert issued.headers["cache-control"] == "no-store"
    body = issued.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 7200
    assert body["scope"] == FULL
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == client_id and claims["exp"] - claims["iat"] == 7200
    call = httpx.get(
        f"{stack.url}/v2/dbInstances",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=10,
    )
    assert call.status_code == 200

    # HTTP Basic client authentication works too (RFC 6749 2.3.1).
    basic = httpx.post(
        f"{stack.url}/connect/token",
        data={"grant_type": "client_credentials", "scope": READ},
        auth=(client_id, GOOD_SECRET),
        timeout=10,
    )
    assert basic.status_code == 200 and basic.json()["scope"] == READ

    # The secret is stored as an argon2id hash only.
    [(stored,)] = pg.query(
        admin_database,
        "SELECT secret_hash FROM edfi_im.clients WHERE client_id = %s",
        (client_id,),
    )
    assert stored.startswith("$argon2id$") and GOOD_SECRET not in stored


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"ClientSecret": "Short-1!"}, "ClientSecret"),
        ({"ClientSecret": "all-lower-case-and-digits-1234567890!"}, "ClientSecret"),
        ({"ClientSecret": "ALL-UPPER-CASE-AND-DIGITS-1234567890!"}, "ClientSecret"),
        ({"ClientSecret": "No-Digits-In-This-Secret-At-All-Sorry!"}, "ClientSecret"),
        ({"ClientSecret": "NoSymbolsInThisSecretAtAll1234567890"}, "ClientSecret"),
        ({"ClientSecret": "Aa1!" * 33}, "ClientSecret"),
        ({"ClientId": "has space"}, "ClientId"),
        ({"ClientId": "x" * 101}, "ClientId"),
        ({"ClientId": "quote'; DROP TABLE edfi_im.clients; --"}, "ClientId"),
        ({"DisplayName": ""}, "DisplayName"),
        ({"Tenants": "ok,not ok"}, "Tenants"),
    ],
)
def test_bad_registrations_are_refused_naming_the_field(
    stack: Stack, admin_database: str, fields: dict[str, str], field: str
) -> None:
    data = {
        "ClientId": f"bad-{uuid.uuid4().hex[:8]}",
        "ClientSecret": GOOD_SECRET,
        "DisplayName": "Bad",
    } | fields
    before = pg.query(admin_database, "SELECT count(*) FROM edfi_im.clients")[0][0]
    r = httpx.post(f"{stack.url}/connect/register", data=data, timeout=10)
    problem = _is_problem(r, 422)
    assert field in problem["errors"], problem
    assert GOOD_SECRET not in r.text and data["ClientSecret"] not in r.text
    assert pg.query(admin_database, "SELECT count(*) FROM edfi_im.clients")[0][0] == before


def test_token_requests_are_refused_with_oauth2_errors(stack: Stack) -> None:
    client_id = f"tok-{uuid.uuid4().hex[:8]}"
    assert _register(stack, client_id).status_code == 200
    wrong = _token(stack, client_id, secret=GOOD_SECRET + "x")
    unknown = _token(stack, f"nobody-{uuid.uuid4().hex[:6]}")
    for r in (wrong, unknown):
        problem = _is_problem(r, 401)
        assert problem["error"] == "invalid_client"
        assert "access_token" not in problem
    assert wrong.json()["detail"] == unknown.json()["detail"]  # nothing tells them apart
    assert _is_problem(_token(stack, client_id, scope="root"), 400)["error"] == "invalid_scope"
    grant = httpx.post(
        f"{stack.url}/connect/token",
        data={"grant_type": "password", "client_id": client_id, "client_secret": GOOD_SECRET},
        timeout=10,
    )
    assert _is_problem(grant, 400)["error"] == "unsupported_grant_type"


def test_a_read_only_token_reads_and_may_change_nothing(stack: Stack) -> None:
    with stack.client(READ) as reader, stack.client(FULL) as writer:
        made = writer.post(
            "/v2/dbInstances", json={"name": unique_name("Scoped"), "databaseTemplate": "Minimal"}
        ).json()
        wait_for_instance(reader, made["id"])
        assert reader.get("/v2/jobs").status_code == 200
        assert reader.get("/v2/schedules").status_code == 200
        before = reader.get("/v2/dbInstances", params={"limit": 500}).json()
        for r in (
            reader.post("/v2/dbInstances", json={"name": "Nope", "databaseTemplate": "Minimal"}),
            reader.put(f"/v2/dbInstances/{made['id']}", json={"name": "Nope"}),
            reader.delete(f"/v2/dbInstances/{made['id']}"),
            reader.delete(f"/v2/jobs/{made['jobId']}"),
            reader.post("/v2/schedules", json={}),
        ):
            problem = _is_problem(r, 403)
            assert FULL in problem["detail"]
        assert reader.get("/v2/dbInstances", params={"limit": 500}).json() == before


def test_an_expired_or_foreign_token_is_refused(stack: Stack, settings_env: dict[str, str]) -> None:
    key = settings_env["EDFI_IM_JWT_SIGNING_KEY"]
    now = int(time.time())
    base = {"iss": "edfi-instance-manager", "aud": "edfi-instance-manager", "sub": "x"}
    for claims in (
        base | {"scope": FULL, "iat": now - 7200, "exp": now - 3600},  # expired
        base | {"scope": FULL, "iat": now, "exp": now + 600, "aud": "someone-else"},
        base | {"scope": FULL, "iat": now, "exp": now + 600, "iss": "someone-else"},
        base | {"iat": now, "exp": now + 600},  # no scope
    ):
        token = jwt.encode(claims, key, algorithm="HS256")
        r = httpx.get(
            f"{stack.url}/v2/dbInstances", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        _is_problem(r, 401)
    # alg=none is never accepted.
    unsigned = jwt.encode(base | {"scope": FULL, "iat": now, "exp": now + 600}, "", "none")
    r = httpx.get(
        f"{stack.url}/v2/dbInstances", headers={"Authorization": f"Bearer {unsigned}"}, timeout=10
    )
    _is_problem(r, 401)


@pytest.fixture
def jwks() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    """A tiny OpenID Connect issuer: its JWKS over HTTP, its private key for the test."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    document = json.dumps({"keys": [public | {"kid": "test-key", "use": "sig", "alg": "RS256"}]})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(document.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/jwks", key
    finally:
        server.shutdown()


def test_a_second_gateway_with_registration_off_and_an_oidc_issuer(
    stack: Stack, jwks: tuple[str, rsa.RSAPrivateKey]
) -> None:
    url, key = jwks
    port = free_port()
    stack.start(
        "gateway-oidc",
        "gateway",
        EDFI_IM_GATEWAY_PORT=str(port),
        EDFI_IM_REGISTRATION_ENABLED="false",
        EDFI_IM_OIDC_ISSUER="https://login.example.org/",
        EDFI_IM_OIDC_AUDIENCE="edfi-im-api",
        EDFI_IM_OIDC_JWKS_URL=url,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        closed = httpx.post(
            f"{base}/connect/register",
            data={"ClientId": "later", "ClientSecret": GOOD_SECRET, "DisplayName": "x"},
            timeout=10,
        )
        assert "disabled" in _is_problem(closed, 403)["detail"]

        now = int(time.time())
        claims = {
            "iss": "https://login.example.org/",
            "aud": "edfi-im-api",
            "sub": "console",
            "scope": f"openid {FULL}",
            "iat": now,
            "exp": now + 600,
        }

        def call(token: str) -> httpx.Response:
            return httpx.get(
                f"{base}/v2/dbInstances", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )

        good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "test-key"})
        assert call(good).status_code == 200
        other_audience = jwt.encode(
            claims | {"aud": "another-api"}, key, algorithm="RS256", headers={"kid": "test-key"}
        )
        _is_problem(call(other_audience), 401)
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": "test-key"})
        _is_problem(call(forged), 401)
        # The gateway's own tokens still work beside the issuer's.
        assert call(stack.token()).status_code == 200
    finally:
        stack.stop("gateway-oidc")


def test_a_body_over_the_limit_is_refused_and_changes_nothing(stack: Stack) -> None:
    with stack.client() as api:
        before = len(api.get("/v2/dbInstances", params={"limit": 500}).json())
        huge = {"name": "Big", "databaseTemplate": "Minimal", "padding": "x" * 70_000}
        problem = _is_problem(api.post("/v2/dbInstances", json=huge), 413)
        assert "larger than" in problem["detail"]

        def chunks() -> Iterator[bytes]:
            yield b'{"name": "Chunked", "databaseTemplate": "Minimal", "padding": "'
            for _ in range(20):
                yield b"y" * 5_000
            yield b'"}'

        streamed = api.post(
            "/v2/dbInstances", content=chunks(), headers={"content-type": "application/json"}
        )
        _is_problem(streamed, 413)
        assert len(api.get("/v2/dbInstances", params={"limit": 500}).json()) == before


def _token_at(base: str, client_id: str, secret: str, scope: str = FULL) -> httpx.Response:
    return httpx.post(
        f"{base}/connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
        },
        timeout=10,
    )


def test_a_client_gets_only_the_scopes_it_was_registered_with(stack: Stack) -> None:
    """Any client could ask for full access (issue 14): now each has its allowed scopes."""
    client_id = f"monitor-{uuid.uuid4().hex[:8]}"
    r = httpx.post(
        f"{stack.url}/connect/register",
        data={
            "ClientId": client_id,
            "ClientSecret": GOOD_SECRET,
            "DisplayName": "Monitoring",
            "Scopes": "edfi_admin_api/read_only",
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    refused = _token_at(stack.url, client_id, GOOD_SECRET, FULL)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    assert "edfi_admin_api/read_only" in refused.json()["detail"]
    allowed = _token_at(stack.url, client_id, GOOD_SECRET, "edfi_admin_api/read_only")
    assert allowed.status_code == 200 and allowed.json()["scope"] == "edfi_admin_api/read_only"
    bad = httpx.post(
        f"{stack.url}/connect/register",
        data={
            "ClientId": f"bad-{uuid.uuid4().hex[:8]}",
            "ClientSecret": GOOD_SECRET,
            "DisplayName": "Bad",
            "Scopes": "edfi_admin_api/everything",
        },
        timeout=10,
    )
    assert list(_is_problem(bad, 422)["errors"]) == ["Scopes"]


def test_guessing_a_secret_is_stopped_after_a_few_tries(stack: Stack) -> None:
    """~10 guesses a second were possible (issue 14): after EDFI_IM_TOKEN_MAX_FAILURES wrong
    secrets the client id is refused (429, Retry-After), the right secret included, until the
    lockout passes. A gateway of its own, so the lockout touches no other test."""
    port = free_port()
    stack.start(
        "gateway-throttle",
        "gateway",
        EDFI_IM_GATEWAY_PORT=str(port),
        EDFI_IM_TOKEN_MAX_FAILURES="3",
        EDFI_IM_TOKEN_LOCKOUT_SECONDS="3",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        client_id = f"guessed-{uuid.uuid4().hex[:8]}"
        r = httpx.post(
            f"{base}/connect/register",
            data={"ClientId": client_id, "ClientSecret": GOOD_SECRET, "DisplayName": "x"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        for k in range(3):
            assert (
                _token_at(base, client_id, f"Wrong-Guess-{k}-0123456789abcdef!").status_code == 401
            )
        locked = _token_at(base, client_id, GOOD_SECRET)
        assert _is_problem(locked, 429)["error"] == "slow_down"
        assert 1 <= int(locked.headers["retry-after"]) <= 3
        time.sleep(3.2)
        assert _token_at(base, client_id, GOOD_SECRET).status_code == 200
    finally:
        stack.stop("gateway-throttle")
