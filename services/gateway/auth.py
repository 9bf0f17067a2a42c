"""Authentication as Ed-Fi Admin API 2 does it: OAuth2 client credentials.

`POST /connect/register` (when enabled) stores a client with an argon2id hash of its secret;
`POST /connect/token` exchanges the client's id and secret for a signed, expiring JWT (HS256).
Optionally, tokens of an external OpenID Connect issuer are accepted instead (keys from its
JWKS). Every other endpoint but health, readiness and the API docs needs a bearer token:
`edfi_admin_api/full_access` may do everything, `edfi_admin_api/read_only` may read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote

import httpx
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from fastapi import APIRouter, Depends, Form, Request
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2
from sqlalchemy.ext.asyncio import AsyncEngine

from services.admin_db import clients as client_rows
from services.gateway.jwks import JwksCache, KeyNotFoundError
from services.gateway.problems import ProblemError, validation_problem
from services.gateway.throttle import Throttle
from services.runtime.logging import get_logger
from services.runtime.settings import TENANT_NAME, Settings

log = get_logger(__name__)

FULL_ACCESS = "edfi_admin_api/full_access"
READ_ONLY = "edfi_admin_api/read_only"
SCOPES = {
    FULL_ACCESS: "Everything: create, rename and delete instances, schedules, jobs",
    READ_ONLY: "Reads only, for monitoring",
}
READ_METHODS = frozenset({"GET", "HEAD"})

CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,100}$")
STRENGTH_RULE = (
    "32-128 characters with at least one upper-case letter, one lower-case letter, one digit "
    "and one symbol"
)

_hasher = PasswordHasher()
# Verified against when the client id is unknown, so both cases take the same time.
_UNKNOWN = _hasher.hash("an unknown client's secret, never matched")


def secret_problem(secret: str) -> str | None:
    if not 32 <= len(secret) <= 128:
        return f"must be {STRENGTH_RULE}"
    checks = (
        any(c.isupper() for c in secret),
        any(c.islower() for c in secret),
        any(c.isdigit() for c in secret),
        any(not c.isalnum() and not c.isspace() for c in secret),
    )
    return None if all(checks) and secret.isprintable() else f"must be {STRENGTH_RULE}"


@dataclass(frozen=True)
class Caller:
    """Who is calling, with what rights: from a verified token."""

    client_id: str
    scopes: frozenset[str]
    tenants: tuple[str, ...] | None  # None: every tenant
    expires_at: float | None = None  # the token's `exp` (an event stream ends then)

    def sees(self, tenant: str) -> bool:
        """Whether the caller may act on this tenant (its token may limit it to some)."""
        return self.tenants is None or tenant.lower() in {t.lower() for t in self.tenants}

    def may(self, method: str) -> bool:
        if FULL_ACCESS in self.scopes:
            return True
        return method in READ_METHODS and READ_ONLY in self.scopes


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="edfi-im"'}
    )


def parse_scopes(value: str | None) -> list[str] | None:
    """`Scopes` of a registration: space- or comma-separated (None: every scope)."""
    if value is None:
        return None
    return [s for s in value.replace(",", " ").split() if s]


def client_problems(
    client_id: str,
    secret: str,
    display_name: str,
    tenants: list[str] | None,
    settings: Settings,
    scopes: list[str] | None = None,
) -> dict[str, str]:
    """What is wrong with a registration, by form field (empty when it is acceptable). With
    tenants configured, a client can be limited only to tenants that exist."""
    problems: dict[str, str] = {}
    if not CLIENT_ID.fullmatch(client_id):
        problems["ClientId"] = "must be 1-100 letters, digits, '.', '_', '~' or '-'"
    problem = secret_problem(secret)
    if problem:
        problems["ClientSecret"] = problem
    if not 1 <= len(display_name.strip()) <= 200 or not display_name.isprintable():
        problems["DisplayName"] = "must be 1-200 printable characters"
    if tenants is not None and (not tenants or not all(TENANT_NAME.fullmatch(t) for t in tenants)):
        problems["Tenants"] = "must be a comma-separated list of tenant names"
    elif tenants and settings.multi_tenant:
        unknown = [t for t in tenants if settings.find_tenant(t) is None]
        if unknown:
            problems["Tenants"] = f"names tenants that are not configured: {', '.join(unknown)}"
    if scopes is not None and (not scopes or not set(scopes) <= set(SCOPES)):
        problems["Scopes"] = f"must name one or more of: {', '.join(sorted(SCOPES))}"
    return problems


async def register_client(
    engine: AsyncEngine,
    client_id: str,
    secret: str,
    display_name: str,
    tenants: list[str] | None,
    scopes: list[str] | None = None,
) -> None:
    """Store a client with an argon2id hash of its secret; 409 when the id is taken."""
    await client_rows.add(
        engine,
        client_id=client_id,
        secret_hash=await asyncio.to_thread(_hasher.hash, secret),
        display_name=display_name.strip(),
        tenants=tenants,
        scopes=None if scopes is None else sorted(set(scopes)),
    )


# How many verified own tokens a gateway remembers (each a few hundred bytes).
VERIFIED_TOKENS = 4096


class Authenticator:
    """Issues the gateway's own tokens and verifies them (or an OIDC issuer's)."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self._settings = settings
        self._engine = engine
        self._key = settings.signing_key()
        # Tokens signed with `_key` already verified: the caller each names, and from when.
        self._verified: dict[str, tuple[Caller, float]] = {}
        self.throttle = Throttle(settings.token_max_failures, settings.token_lockout_seconds)
        self._jwks: JwksCache | None = None
        if settings.oidc_issuer:
            url = settings.oidc_jwks_url or (
                settings.oidc_issuer.rstrip("/") + "/.well-known/jwks.json"
            )
            self._jwks = JwksCache(url, lifespan=600, timeout=10)

    async def check_secret(self, client_id: str, secret: str) -> Any:
        """The client row when the secret matches; None otherwise (same time either way)."""
        row = await client_rows.get(self._engine, client_id)
        stored = row.secret_hash if row is not None else _UNKNOWN

        def verify() -> bool:
            try:
                return _hasher.verify(stored, secret)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        ok = await asyncio.to_thread(verify)
        return row if ok and row is not None else None

    def issue(self, client_id: str, scope: str, tenants: list[str] | None) -> tuple[str, int]:
        now = int(time.time())
        lifetime = self._settings.token_lifetime_seconds
        claims: dict[str, Any] = {
            "iss": self._settings.token_issuer,
            "aud": self._settings.token_audience,
            "sub": client_id,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
        }
        if tenants is not None:
            claims["tenants"] = tenants
        return jwt.encode(claims, self._key, algorithm="HS256"), lifetime

    async def verify(self, token: str) -> Caller:
        """The caller a valid token names; 401 for anything else (without saying more)."""
        known = self._verified.get(token)
        if known is not None:
            caller, valid_from = known
            if valid_from <= time.time() < (caller.expires_at or 0):
                return caller
            del self._verified[token]  # expired: verified again below, refused as such
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") == "HS256":
                claims = jwt.decode(
                    token,
                    self._key,
                    algorithms=["HS256"],
                    audience=self._settings.token_audience,
                    issuer=self._settings.token_issuer,
                    options={"require": ["exp", "iat", "sub", "scope"]},
                )
            elif self._jwks is not None:
                signing = await self._jwks.key(header.get("kid"))
                claims = jwt.decode(
                    token,
                    signing.key,
                    algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"],
                    audience=self._settings.oidc_audience,
                    issuer=self._settings.oidc_issuer,
                    options={"require": ["exp", "iat"]},
                )
            else:
                raise jwt.InvalidTokenError("unsupported algorithm")
        except jwt.ExpiredSignatureError:
            # Signed by a key it trusts, only too old: say so, for clients that never look at
            # expires_in (the Ed-Fi Admin Console keeps using an expired token).
            log.info("token refused", reason="ExpiredSignatureError")
            raise ProblemError(
                401,
                "Unauthorized",
                "The access token has expired: get a new one (POST /connect/token). The Ed-Fi "
                "Admin Console keeps an expired token until it is signed out or its "
                "localStorage.authUser is cleared (README, Admin Console).",
                headers={
                    "WWW-Authenticate": 'Bearer realm="edfi-im", error="invalid_token", '
                    'error_description="The access token expired"'
                },
            ) from None
        except (jwt.PyJWTError, ValueError, KeyNotFoundError, httpx.HTTPError) as exc:
            log.info("token refused", reason=type(exc).__name__)
            raise unauthorized("The access token is missing, invalid or expired.") from None
        scope = claims.get("scope") or claims.get("scp") or ""
        scopes = frozenset(scope.split() if isinstance(scope, str) else scope)
        try:
            tenants = tenant_claim(claims)
        except ValueError as exc:
            log.info("token refused", reason=str(exc))
            raise unauthorized("The access token is missing, invalid or expired.") from None
        expiry = claims.get("exp")
        caller = Caller(
            client_id=str(claims.get("client_id") or claims.get("sub") or "?"),
            scopes=scopes,
            tenants=tenants,
            expires_at=float(expiry) if isinstance(expiry, int | float) else None,
        )
        if header.get("alg") == "HS256" and caller.expires_at is not None:
            self._remember(token, caller, claims)
        return caller

    def _remember(self, token: str, caller: Caller, claims: dict[str, Any]) -> None:
        """A token signed with this gateway's own key, verified: later requests with it skip
        the signature (it cannot change, nor can the key while the process runs) but not the
        clock (it is taken only between its `nbf`/`iat` and its `exp`)."""
        if len(self._verified) >= VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]  # the oldest first
        starts = [v for v in (claims.get("nbf"), claims.get("iat")) if isinstance(v, int | float)]
        self._verified[token] = (caller, float(max(starts, default=0)))


def tenant_claim(claims: dict[str, Any]) -> tuple[str, ...] | None:
    """The tenants a token limits its caller to: None (every tenant) only when it has no
    `tenants` claim at all. A string is one tenant (Keycloak sends a single-valued attribute so);
    a list must hold tenant names; anything else (empty, null, a number, an object, a list of
    anything but names) is a ValueError: a token that cannot be read is refused, never taken as
    "no restriction"."""
    if "tenants" not in claims:
        return None
    value = claims["tenants"]
    names = [value] if isinstance(value, str) else value
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(t, str) and TENANT_NAME.fullmatch(t) for t in names)
    ):
        raise ValueError("unreadable tenants claim")
    return tuple(names)


def bearer(request: Request) -> str:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("This endpoint needs an access token: Authorization: Bearer <token>.")
    return token.strip()


# For the OpenAPI document (and its "Authorize" button): how to get a token.
oauth2 = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(tokenUrl="/connect/token", scopes=SCOPES)
    ),
    auto_error=False,
)


async def authorize(
    request: Request, _documented: Annotated[str | None, Depends(oauth2)] = None
) -> Caller:
    """FastAPI dependency of every protected route: a valid token with the right scope."""
    authenticator: Authenticator = request.app.state.authenticator
    caller = await authenticator.verify(bearer(request))
    if not caller.may(request.method):
        raise ProblemError(
            403,
            "Forbidden",
            f"The token's scope does not allow {request.method} here; it needs {FULL_ACCESS}.",
        )
    request.state.caller = caller
    return caller


router = APIRouter(prefix="/connect", tags=["connect"])


async def list_clients(engine: AsyncEngine) -> list[dict[str, Any]]:
    return [
        {
            "clientId": r.client_id,
            "displayName": r.display_name,
            "tenants": r.tenants,
            "scopes": r.scopes or sorted(SCOPES),
        }
        for r in await client_rows.every(engine)
    ]


async def remove_client(engine: AsyncEngine, client_id: str) -> bool:
    return await client_rows.remove(engine, client_id)


@router.post(
    "/register",
    summary="Register a client (only when EDFI_IM_REGISTRATION_ENABLED is true)",
    responses={403: {}, 409: {}, 422: {}},
)
async def register(
    request: Request,
    client_id: Annotated[str, Form(alias="ClientId")],
    client_secret: Annotated[str, Form(alias="ClientSecret")],
    display_name: Annotated[str, Form(alias="DisplayName")],
    tenants: Annotated[str | None, Form(alias="Tenants")] = None,
    scopes: Annotated[
        str | None,
        Form(
            alias="Scopes",
            description="The scopes it may ask tokens for (space-separated; default: all)",
        ),
    ] = None,
) -> JSONResponse:
    gateway = request.app.state.gateway
    if not gateway.settings.registration_enabled:
        raise ProblemError(
            403,
            "Forbidden",
            "Client registration is disabled (EDFI_IM_REGISTRATION_ENABLED is not true).",
        )
    allowed = None if tenants is None else [t.strip() for t in tenants.split(",") if t.strip()]
    may = parse_scopes(scopes)
    problems = client_problems(
        client_id, client_secret, display_name, allowed, gateway.settings, may
    )
    if problems:
        field, problem = next(iter(problems.items()))  # the first, in form order
        raise validation_problem(field, problem)
    await register_client(gateway.engine, client_id, client_secret, display_name, allowed, may)
    log.info("client registered", client_id=client_id, tenants=allowed, scopes=may)
    return JSONResponse({"title": f"Registered client {client_id} successfully.", "status": 200})


def _token_error(status: int, error: str, detail: str) -> ProblemError:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="edfi-im"'
    return ProblemError(status, "Token request refused", detail, headers=headers, error=error)


@router.post(
    "/token",
    summary="Exchange client credentials for an access token (OAuth2 client_credentials)",
    responses={400: {}, 401: {}, 429: {}},
)
async def token(
    request: Request,
    grant_type: Annotated[str, Form()],
    client_id: Annotated[str | None, Form()] = None,
    client_secret: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    if grant_type != "client_credentials":
        raise _token_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic ") and not client_id:
        try:
            pair = base64.b64decode(basic[6:].strip(), validate=True).decode()
            user, _, password = pair.partition(":")
            client_id, client_secret = unquote(user), unquote(password)
        except (binascii.Error, UnicodeDecodeError):
            raise _token_error(401, "invalid_client", "unreadable Basic credentials") from None
    if not client_id or not client_secret:
        raise _token_error(401, "invalid_client", "client_id and client_secret are required")
    requested = (scope or "").split()
    if len(requested) != 1 or requested[0] not in SCOPES:
        raise _token_error(
            400, "invalid_scope", f"scope must be one of: {', '.join(sorted(SCOPES))}"
        )
    authenticator: Authenticator = request.app.state.authenticator
    address = request.client.host if request.client else "?"
    wait = authenticator.throttle.wait(client_id[:200], address)
    if wait > 0:
        log.warning("token refused: too many wrong secrets", client_id=client_id[:200])
        refused = _token_error(
            429,
            "slow_down",
            f"too many failed attempts for this client or from this address; try again in "
            f"{math.ceil(wait)} s",
        )
        refused.headers["Retry-After"] = str(math.ceil(wait))
        raise refused
    row = await authenticator.check_secret(client_id[:200], client_secret[:200])
    if row is None:
        authenticator.throttle.failed(client_id[:200], address)
        log.info("token refused: unknown client or wrong secret")
        raise _token_error(401, "invalid_client", "unknown client or wrong secret")
    authenticator.throttle.succeeded(row.client_id)
    if row.scopes is not None and requested[0] not in row.scopes:
        log.info("token refused: scope not allowed for the client", client_id=row.client_id)
        raise _token_error(
            400,
            "invalid_scope",
            f"this client may ask for: {', '.join(row.scopes)}",
        )
    access_token, lifetime = authenticator.issue(row.client_id, requested[0], row.tenants)
    log.info("token issued", client_id=row.client_id, scope=requested[0])
    return JSONResponse(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": requested[0],
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
