"""The dashboard's sign-in at an OpenID Connect issuer, in a real browser: the authorization code
flow with PKCE against a tiny issuer of the test's own (discovery, authorize, token, JWKS), then
the API takes the issuer's token; an answer that does not match the sign-in is refused."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.sync_api import expect

from tests.support.browser import launched, opened, shot
from tests.support.stack import Stack, free_port

pytestmark = pytest.mark.e2e

AUDIENCE = "edfi-im-api"
CLIENT_ID = "edfi-im-dashboard"


@dataclass
class Issuer:
    url: str
    key: rsa.RSAPrivateKey
    authorized: list[dict[str, str]] = field(default_factory=list)
    exchanged: list[dict[str, str]] = field(default_factory=list)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    port = free_port()
    found = Issuer(f"http://127.0.0.1:{port}", key)
    codes: dict[str, dict[str, str]] = {}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: Any, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Access-Control-Allow-Origin", "*")
            for name, value in headers.items():
                self.send_header(name, value)
            if body is not None:
                self.send_header("content-type", "application/json")
            self.end_headers()
            if body is not None:
                self.wfile.write(json.dumps(body).encode())

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/.well-known/openid-configuration":
                self._send(
                    200,
                    {
                        "issuer": found.url,
                        "authorization_endpoint": f"{found.url}/authorize",
                        "token_endpoint": f"{found.url}/token",
                        "jwks_uri": f"{found.url}/jwks",
                    },
                )
            elif parts.path == "/jwks":
                self._send(200, {"keys": [public | {"kid": "k1", "use": "sig", "alg": "RS256"}]})
            elif parts.path == "/authorize":  # the user signs in at once
                found.authorized.append(query)
                code = uuid.uuid4().hex
                codes[code] = query
                back = urlencode({"code": code, "state": query["state"]})
                self._send(302, None, Location=f"{query['redirect_uri']}?{back}")
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            found.exchanged.append(form)
            asked = codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if (
                asked is None
                or _b64url(hashlib.sha256(verifier.encode()).digest()) != asked["code_challenge"]
                or form.get("redirect_uri") != asked["redirect_uri"]
            ):
                self._send(400, {"error": "invalid_grant"})
                return
            now = int(time.time())
            token = jwt.encode(
                {
                    "iss": found.url,
                    "aud": AUDIENCE,
                    "sub": "operator-1",
                    "preferred_username": "ops@example.org",
                    "scope": "openid edfi_admin_api/full_access",
                    "iat": now,
                    "exp": now + 600,
                },
                key,
                algorithm="RS256",
                headers={"kid": "k1"},
            )
            self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 600})

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield found
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def gateway(stack: Stack, issuer: Issuer) -> Iterator[str]:
    url = stack.start_gateway(
        "gateway-dashboard-oidc",
        timeout=60,
        EDFI_IM_OIDC_ISSUER=issuer.url,
        EDFI_IM_OIDC_AUDIENCE=AUDIENCE,
        EDFI_IM_OIDC_JWKS_URL=f"{issuer.url}/jwks",
        EDFI_IM_DASHBOARD_OIDC_CLIENT_ID=CLIENT_ID,
    )
    try:
        yield url
    finally:
        stack.stop("gateway-dashboard-oidc")


def test_sign_in_at_the_oidc_issuer_with_pkce(gateway: str, issuer: Issuer) -> None:
    with launched() as browser, opened(browser) as page:
        page.goto(f"{gateway}/dashboard")
        page.click("#oidc-sign-in")
        expect(page.locator("#instances")).to_be_visible()
        expect(page.locator("#who")).to_have_text("ops@example.org")
        expect(page.locator("#create")).to_be_visible()  # full access, from the token's scope
        expect(page.locator("#live")).to_have_text("live")
        assert page.url == f"{gateway}/dashboard"  # the code is not left in the address bar
        shot(page, "oidc-signed-in")
    asked = issuer.authorized[-1]
    assert asked["client_id"] == CLIENT_ID and asked["code_challenge_method"] == "S256"
    assert asked["redirect_uri"] == f"{gateway}/dashboard"
    assert "edfi_admin_api/full_access" in asked["scope"].split()
    exchanged = issuer.exchanged[-1]
    assert exchanged["grant_type"] == "authorization_code" and exchanged["code_verifier"]


def test_an_answer_that_matches_no_sign_in_is_refused(gateway: str, issuer: Issuer) -> None:
    with launched() as browser, opened(browser) as page:
        page.goto(f"{gateway}/dashboard?code=stolen&state=made-up")
        expect(page.locator("#notice")).to_contain_text("does not match a sign-in started here")
        expect(page.locator("#oidc-sign-in")).to_be_visible()
        assert page.locator("#instances").count() == 0
    assert all(form.get("code") != "stolen" for form in issuer.exchanged)
