"""Only the right caller, at the gateway's door (moved from tests/e2e/test_auth.py): OAuth2 client
credentials as Ed-Fi Admin API 2 has them, signed and expiring tokens, scopes, an optional
external OpenID Connect issuer, a lockout of guessed secrets, and problem details for every
refusal (401 without a valid token, 403 for the wrong scope)."""

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

from tests.support import pg
from tests.support.inprocess import AdminTemplate, InProcessGateway, gateway_on, settings_from
from tests.support.stack import free_port

pytestmark = pytest.mark.contract

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
    gateway: InProcessGateway, client_id: str, secret: str = GOOD_SECRET, **extra: str
) -> httpx.Response:
    return gateway.http.post(
        "/connect/register",
        data={"ClientId": client_id, "ClientSecret": secret, "DisplayName": "Auth tests", **extra},
    )


def _token(
    gateway: InProcessGateway, client_id: str, secret: str = GOOD_SECRET, scope: str = FULL
) -> httpx.Response:
    return gateway.http.post(
        "/connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
        },
    )


def _is_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_endpoint_needs_a_valid_token(
    gateway: InProcessGateway, method: str, path: str
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Basic {GOOD_SECRET}"},
        {"Authorization": "Bearer " + jwt.encode({"sub": "x", "scope": FULL}, "wrong-key-" * 4)},
    ):
        r = gateway.http.request(method, path, headers=headers, json={})
        problem = _is_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "token" in problem["detail"].lower()
        assert set(problem) == {"type", "title", "status", "detail", "instance"}


def test_open_endpoints_need_no_token(gateway: InProcessGateway) -> None:
    for path in ("/health", "/ready", "/docs", "/openapi.json"):
        assert gateway.http.get(path).status_code == 200, path
    spec = gateway.http.get("/openapi.json").json()
    flows = spec["components"]["securitySchemes"]["OAuth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/connect/token"
    assert set(flows["clientCredentials"]["scopes"]) == {FULL, READ}


def test_register_then_token_then_call(gateway: InProcessGateway, admin_database: str) -> None:
    client_id = f"auth-{uuid.uuid4().hex[:8]}"
    r = _register(gateway, client_id)
    assert r.status_code == 200
    assert r.json() == {"title": f"Registered client {client_id} successfully.", "status": 200}
    _is_problem(_register(gateway, client_id), 409)

    issued = _token(gateway, client_id)
    assert issued.status_code == 200
    assert issued.headers["cache-control"] == "no-store"
    body = issued.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 7200
    assert body["scope"] == FULL
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == client_id and claims["exp"] - claims["iat"] == 7200
    call = gateway.http.get(
        "/v2/dbInstances", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert call.status_code == 200

    # HTTP Basic client authentication works too (RFC 6749 2.3.1).
    basic = gateway.http.post(
        "/connect/token",
        data={"grant_type": "client_credentials", "scope": READ},
        auth=(client_id, GOOD_SECRET),
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
    gateway: InProcessGateway, admin_database: str, fields: dict[str, str], field: str
) -> None:
    data = {
        "ClientId": f"bad-{uuid.uuid4().hex[:8]}",
        "ClientSecret": GOOD_SECRET,
        "DisplayName": "Bad",
    } | fields
    before = pg.query(admin_database, "SELECT count(*) FROM edfi_im.clients")[0][0]
    r = gateway.http.post("/connect/register", data=data)
    problem = _is_problem(r, 422)
    assert field in problem["errors"], problem
    assert GOOD_SECRET not in r.text and data["ClientSecret"] not in r.text
    assert pg.query(admin_database, "SELECT count(*) FROM edfi_im.clients")[0][0] == before


def test_token_requests_are_refused_with_oauth2_errors(gateway: InProcessGateway) -> None:
    client_id = f"tok-{uuid.uuid4().hex[:8]}"
    assert _register(gateway, client_id).status_code == 200
    wrong = _token(gateway, client_id, secret=GOOD_SECRET + "x")
    unknown = _token(gateway, f"nobody-{uuid.uuid4().hex[:6]}")
    for r in (wrong, unknown):
        problem = _is_problem(r, 401)
        assert problem["error"] == "invalid_client"
        assert "access_token" not in problem
    assert wrong.json()["detail"] == unknown.json()["detail"]  # nothing tells them apart
    assert _is_problem(_token(gateway, client_id, scope="root"), 400)["error"] == "invalid_scope"
    grant = gateway.http.post(
        "/connect/token",
        data={"grant_type": "password", "client_id": client_id, "client_secret": GOOD_SECRET},
    )
    assert _is_problem(grant, 400)["error"] == "unsupported_grant_type"


def test_an_expired_or_foreign_token_is_refused(
    gateway: InProcessGateway, settings_env: dict[str, str]
) -> None:
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
        r = gateway.http.get("/v2/dbInstances", headers={"Authorization": f"Bearer {token}"})
        _is_problem(r, 401)
    # alg=none is never accepted.
    unsigned = jwt.encode(base | {"scope": FULL, "iat": now, "exp": now + 600}, "", "none")
    r = gateway.http.get("/v2/dbInstances", headers={"Authorization": f"Bearer {unsigned}"})
    _is_problem(r, 401)


def test_a_token_taken_before_is_refused_once_it_expires(
    gateway: InProcessGateway, settings_env: dict[str, str]
) -> None:
    """The gateway remembers the own tokens it verified (it skips their signature the next
    time), never past their `exp`: the same token is refused, as expired, the moment it is."""
    now = int(time.time())
    claims = {
        "iss": "edfi-instance-manager",
        "aud": "edfi-instance-manager",
        "sub": "x",
        "scope": FULL,
        "iat": now,
        "exp": now + 2,
    }
    token = jwt.encode(claims, settings_env["EDFI_IM_JWT_SIGNING_KEY"], algorithm="HS256")
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(2):  # verified, then remembered
        assert gateway.http.get("/v2/dbInstances", headers=headers).status_code == 200
    time.sleep(max(0.0, now + 2.1 - time.time()))
    body = _is_problem(gateway.http.get("/v2/dbInstances", headers=headers), 401)
    assert "expired" in body["detail"]


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
    gateway: InProcessGateway, jwks: tuple[str, rsa.RSAPrivateKey]
) -> None:
    """A second gateway on the same admin database as the module's, as a second replica."""
    url, key = jwks
    env = gateway.env | {
        "EDFI_IM_REGISTRATION_ENABLED": "false",
        "EDFI_IM_OIDC_ISSUER": "https://login.example.org/",
        "EDFI_IM_OIDC_AUDIENCE": "edfi-im-api",
        "EDFI_IM_OIDC_JWKS_URL": url,
    }
    second = InProcessGateway(settings_from(env), env, gateway.admin_database).start()
    try:
        closed = second.http.post(
            "/connect/register",
            data={"ClientId": "later", "ClientSecret": GOOD_SECRET, "DisplayName": "x"},
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
            return second.http.get("/v2/dbInstances", headers={"Authorization": f"Bearer {token}"})

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
        assert call(gateway.token()).status_code == 200
    finally:
        second.stop()


def test_a_body_over_the_limit_is_refused_and_changes_nothing(api: httpx.Client) -> None:
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


def test_a_client_gets_only_the_scopes_it_was_registered_with(gateway: InProcessGateway) -> None:
    """Any client could ask for full access (issue 14): now each has its allowed scopes."""
    client_id = f"monitor-{uuid.uuid4().hex[:8]}"
    r = _register(gateway, client_id, DisplayName="Monitoring", Scopes=READ)
    assert r.status_code == 200, r.text
    refused = _token(gateway, client_id, GOOD_SECRET, FULL)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    assert READ in refused.json()["detail"]
    allowed = _token(gateway, client_id, GOOD_SECRET, READ)
    assert allowed.status_code == 200 and allowed.json()["scope"] == READ
    bad = _register(
        gateway,
        f"bad-{uuid.uuid4().hex[:8]}",
        DisplayName="Bad",
        Scopes="edfi_admin_api/everything",
    )
    assert list(_is_problem(bad, 422)["errors"]) == ["Scopes"]


def test_guessing_a_secret_is_stopped_after_a_few_tries(
    admin_template: AdminTemplate, contract_env: dict[str, str]
) -> None:
    """~10 guesses a second were possible (issue 14): after EDFI_IM_TOKEN_MAX_FAILURES wrong
    secrets the client id is refused (429, Retry-After), the right secret included, until the
    lockout passes. A gateway of its own, so the lockout touches no other test."""
    with gateway_on(
        admin_template,
        contract_env,
        EDFI_IM_TOKEN_MAX_FAILURES="3",
        EDFI_IM_TOKEN_LOCKOUT_SECONDS="3",
    ) as throttled:
        client_id = f"guessed-{uuid.uuid4().hex[:8]}"
        r = _register(throttled, client_id, DisplayName="x")
        assert r.status_code == 200, r.text
        for k in range(3):
            guess = _token(throttled, client_id, f"Wrong-Guess-{k}-0123456789abcdef!")
            assert guess.status_code == 401
        locked = _token(throttled, client_id, GOOD_SECRET)
        assert _is_problem(locked, 429)["error"] == "slow_down"
        assert 1 <= int(locked.headers["retry-after"]) <= 3
        time.sleep(3.2)
        assert _token(throttled, client_id, GOOD_SECRET).status_code == 200
