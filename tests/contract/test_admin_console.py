"""The Ed-Fi Admin Console's calls the gateway answers at its door, replayed as it makes them
(another origin, a bearer token from its browser, a `Tenant` header, paths in either case)
(moved from tests/e2e/test_admin_console.py): preflights, tenants, refusals, what is not managed
here, paging, expired tokens, and the README's Console configuration. An instance's life as the
Console sees it (the provisioner's work, dbo's rows) stays end-to-end."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import CONSOLE_ORIGIN, DISCOVERY_URL, unique_name
from tests.support.inprocess import InProcessGateway
from tests.support.polling import problem as _problem

pytestmark = pytest.mark.contract

SECRET = "Console-Secret-0123456789-abcdefXYZ!"


@pytest.fixture(scope="module")
def console(gateway: InProcessGateway) -> Iterator[httpx.Client]:
    """The Console's client: registered, then a token by client credentials from its page."""
    client_id = f"admin-console-{uuid.uuid4().hex[:8]}"
    r = gateway.http.post(
        "/connect/register",
        data={"ClientId": client_id, "ClientSecret": SECRET, "DisplayName": "Admin Console"},
    )
    assert r.status_code == 200, r.text
    r = gateway.http.post(
        "/connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": SECRET,
            "scope": "edfi_admin_api/full_access",
        },
        headers={"Origin": CONSOLE_ORIGIN},
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == CONSOLE_ORIGIN
    body = r.json()
    assert body["expires_in"] > 0
    headers = {
        "Authorization": f"Bearer {body['access_token']}",
        "Tenant": "default",
        "Origin": CONSOLE_ORIGIN,
    }
    with gateway.anonymous(15, **headers) as client:
        yield client


# --- the browser's preflights ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "method", "headers"),
    [
        ("/connect/token", "POST", "content-type"),
        ("/adminconsole/tenants", "GET", "authorization,tenant"),
        ("/adminconsole/odsInstances", "POST", "authorization,content-type,tenant"),
        ("/adminconsole/odsInstances/1", "PUT", "authorization,content-type,tenant"),
        ("/adminconsole/odsInstances/1", "DELETE", "authorization,tenant"),
    ],
)
def test_preflights_from_the_console_origin_are_answered(
    gateway: InProcessGateway, path: str, method: str, headers: str
) -> None:
    r = gateway.http.options(
        path,
        headers={
            "Origin": CONSOLE_ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == CONSOLE_ORIGIN
    assert method in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert all(h in allowed for h in headers.split(","))


def test_another_origin_is_not_allowed(gateway: InProcessGateway) -> None:
    r = gateway.http.options(
        "/adminconsole/tenants",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


# --- tenants -----------------------------------------------------------------------------------


def test_single_tenant_mode_lists_one_tenant_named_default(console: httpx.Client) -> None:
    r = console.get("/adminconsole/tenants")
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == CONSOLE_ORIGIN
    assert r.json() == [
        {"tenantId": 1, "document": {"name": "default", "edfiApiDiscoveryUrl": DISCOVERY_URL}}
    ]
    assert console.get("/adminConsole/Tenants/1").json()["document"]["name"] == "default"
    _problem(console.get("/adminconsole/tenants/2"), 404)


def test_without_a_token_the_console_gets_401(gateway: InProcessGateway) -> None:
    _problem(gateway.http.get("/adminconsole/odsInstances"), 401)
    _problem(gateway.http.get("/adminconsole/tenants"), 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad;Name"}, "name"),
        (
            {"name": "Fine", "odsInstanceContexts": [{"contextKey": "a", "contextValue": "1"}] * 2},
            "odsInstanceContexts",
        ),
        (
            {"name": "Fine", "odsInstanceDerivatives": [{"derivativeType": "Mirror"}]},
            "odsInstanceDerivatives",
        ),
        (
            {
                "name": "Fine",
                "odsInstanceContexts": [{"contextKey": "k" * 51, "contextValue": "1"}],
            },
            "odsInstanceContexts",
        ),
    ],
)
def test_bad_console_bodies_are_422_naming_the_field(
    console: httpx.Client, body: dict[str, Any], field: str
) -> None:
    before = len(console.get("/adminconsole/odsInstances").json())
    errors = _problem(console.post("/adminconsole/odsInstances", json=body), 422)["errors"]
    assert any(key == field or key.startswith(field) for key in errors), errors
    assert len(console.get("/adminconsole/odsInstances").json()) == before


# --- what this system does not manage ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/adminconsole/vendors"),
        ("POST", "/adminconsole/vendors"),
        ("GET", "/adminconsole/applications"),
        ("GET", "/adminconsole/claimsets"),
        ("GET", "/adminconsole/healthcheck"),
        ("GET", "/adminconsole/userprofile"),
        ("GET", "/v2/vendors"),
        ("GET", "/v2/vendors/3/applications"),
        ("POST", "/v2/vendors"),
        ("GET", "/v2/applications"),
        ("PUT", "/v2/applications/4/reset-credential"),
        ("GET", "/v2/claimSets"),
        ("GET", "/v2/claimSets/2"),
        ("GET", "/adminapi/adminconsole/healthcheck/1"),
        ("POST", "/v2/odsInstances/edOrgs/refresh"),
        ("GET", "/v3/vendors"),
    ],
)
def test_the_rest_of_admin_api_2_is_a_clear_404(
    console: httpx.Client, method: str, path: str
) -> None:
    """What the Console (and Admin App) call that is not managed here: the problem the README
    promises, saying so (the Console shows "no data" for its health check's 404)."""
    body = _problem(console.request(method, path, json={} if method == "POST" else None), 404)
    assert body["title"] == "Not found"
    assert "is not served here: this system manages ODS instances only" in body["detail"]


def test_the_console_list_pages_with_offset_and_limit_and_ids_are_digits_only(
    console: httpx.Client,
) -> None:
    """`offset` and `limit` were ignored, and an id of `1%20` was read as 1 (issue 14)."""
    for _ in range(2):  # two instances to page through (accepted: Pending is enough)
        made = console.post("/adminconsole/odsInstances", json={"name": unique_name("Paged")})
        assert made.status_code == 202, made.text
    everything = console.get("/adminconsole/odsInstances").json()
    assert len(everything) >= 2
    page = console.get("/adminconsole/odsInstances", params={"offset": 1, "limit": 1}).json()
    assert [i["id"] for i in page] == [everything[1]["id"]]
    _problem(console.get("/adminconsole/odsInstances", params={"limit": 0}), 422)
    _problem(console.get("/adminconsole/odsInstances", params={"limit": 100_000}), 422)
    first = everything[0]["id"]
    for path in (f"{first}%20", f"%20{first}", f"+{first}", f"{first}.0", f"0{first}x"):
        body = _problem(console.get(f"/adminconsole/odsInstances/{path}"), 422)
        assert "digits only" in json.dumps(body["errors"]), path
    _problem(console.get(f"/v2/dbInstances/{first}%20"), 422)


# --- what the Console needs to recover by itself ------------------------------------------------


def test_validation_messages_read_as_written_for_people(console: httpx.Client) -> None:
    errors = _problem(console.post("/adminconsole/odsInstances", json={"name": "bad-name!"}), 422)[
        "errors"
    ]
    assert errors["name"] == [
        "must be 1-46 characters: ASCII letters, digits, space and underscore"
    ]
    assert "Value error" not in json.dumps(errors)


def test_an_expired_console_token_is_401_saying_it_expired_and_how_to_recover(
    gateway: InProcessGateway, settings_env: dict[str, str]
) -> None:
    now = int(time.time())
    expired = jwt.encode(
        {
            "iss": "edfi-instance-manager",
            "aud": "edfi-instance-manager",
            "sub": "admin-console",
            "scope": "edfi_admin_api/full_access",
            "iat": now - 3600,
            "exp": now - 60,
        },
        settings_env["EDFI_IM_JWT_SIGNING_KEY"],
        algorithm="HS256",
    )
    r = gateway.http.get(
        "/adminconsole/odsinstances",
        headers={"Authorization": f"Bearer {expired}", "Origin": CONSOLE_ORIGIN},
    )
    body = _problem(r, 401)
    assert "expired" in body["detail"] and "localStorage.authUser" in body["detail"]
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert r.headers["access-control-allow-origin"] == CONSOLE_ORIGIN


def _readme_console_config() -> dict[str, Any]:
    """The `config.json` the README gives for the Console, as written there."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("3. **Put this `config.json` in the Console**", 1)[1]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    config: dict[str, Any] = json.loads(block)
    return config


def test_the_readmes_console_config_has_what_this_console_version_reads() -> None:
    """Keys read by Ed-Fi-Admin-Console eff2936 and its Shared SDK 2.2.12-pre (SDK
    useAuthActions.ts reads auth.TokenEndpoint/clientId/clientSecret; the Console's BasePlugin
    loads only the plugins named in `plugins`; legacy services default useLocalMockData to true;
    the tenant switch navigates to app.basePath)."""
    config = _readme_console_config()
    assert config["auth"]["TokenEndpoint"].endswith("/connect/token")
    assert config["auth"]["clientId"] and config["auth"]["clientSecret"]
    assert "customApiTokenEndpoint" not in config["auth"]
    assert config["plugins"] == ["test-plugin"]
    assert config["api"]["useLocalMockData"] is False
    assert config["app"]["basePath"] == ""
    assert config["api"]["edfiAdminApiBaseUri"] == config["auth"]["TokenEndpoint"].removesuffix(
        "/connect/token"
    )


def test_the_readmes_console_config_works_against_the_gateway_as_the_console_calls_it(
    gateway: InProcessGateway,
) -> None:
    """The README's client and config, replayed as the Console makes its calls: the token
    request of useAuthActions (form, `tenant: tenant1` before any tenant is chosen), a token
    whose payload the Console decodes with atob (standard base64, no `-` or `_`), then the
    plugin's calls relative to edfiAdminApiBaseUri."""
    config = _readme_console_config()
    base = config["api"]["edfiAdminApiBaseUri"]

    def here(url: str) -> str:  # the README's address, on this test's gateway
        return url.replace(base, gateway.url)

    client_id = config["auth"]["clientId"] + "-" + uuid.uuid4().hex[:6]
    r = gateway.http.post(
        "/connect/register",
        data={
            "ClientId": client_id,
            "ClientSecret": config["auth"]["clientSecret"],
            "DisplayName": "Admin Console",
        },
    )
    assert r.status_code == 200, r.text
    r = gateway.http.post(
        here(config["auth"]["TokenEndpoint"]),
        content=(
            f"client_id={client_id}&client_secret={config['auth']['clientSecret']}"
            "&grant_type=client_credentials&scope=edfi_admin_api/full_access"
        ).replace("!", "%21"),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "tenant": "tenant1",
            "Origin": CONSOLE_ORIGIN,
        },
    )
    assert r.status_code == 200, r.text
    token = r.json()
    payload = token["access_token"].split(".")[1]
    assert "-" not in payload and "_" not in payload
    padded = payload + "=" * (-len(payload) % 4)
    assert json.loads(base64.b64decode(padded, validate=True))["sub"] == client_id
    headers = {
        "Authorization": f"Bearer {token['access_token']}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Origin": CONSOLE_ORIGIN,
    }
    with httpx.Client(
        transport=gateway.transport, base_url=here(base), headers=headers, timeout=15
    ) as plugin:
        tenants = plugin.get("/adminconsole/tenants").json()
        assert tenants[0]["document"]["name"] == "default"
        assert isinstance(plugin.get("/adminconsole/odsinstances").json(), list)
