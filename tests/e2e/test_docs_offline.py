"""The API documentation works without internet: `/docs` (Swagger UI) and `/redoc` load every
script, style and icon from the gateway itself (a real browser that may reach nothing but this
machine renders them), and the OpenAPI document declares the answers every protected route may
give (401, 403, the tenant header's 400, and 413 where there is a body)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.support.browser import launched, opened, shot
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# What a page loads: <script src>, <link href>, and the URLs its inline script names.
REFERENCES = re.compile(
    r"""(?:src|href)\s*=\s*["']([^"']+)["']|(?:Url|url)\s*:\s*["']([^"']+)["']"""
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with opened(browser) as page:
        yield page


def referenced(html: str, base: str) -> list[str]:
    return [urljoin(base, a or b) for a, b in REFERENCES.findall(html)]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_documentation_pages_load_every_asset_from_the_gateway(stack: Stack, path: str) -> None:
    page = httpx.get(f"{stack.url}{path}", timeout=10)
    assert page.status_code == 200
    urls = referenced(page.text, page.url.__str__())
    assert any(u.endswith(".js") for u in urls), urls
    for url in urls:
        parts = urlsplit(url)
        assert parts.hostname in LOCAL_HOSTS, f"{path} loads {url} from outside the gateway"
        got = httpx.get(url, timeout=10)
        assert got.status_code == 200, (url, got.status_code)
        assert got.content, url
    assert "cdn" not in page.text.lower()


def _offline(page: Page) -> list[str]:
    """Refuse every request to a host other than this machine; the refused URLs."""
    refused: list[str] = []

    def only_local(route: Route) -> None:
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    return refused


def test_swagger_ui_renders_with_no_network_but_the_gateway(page: Page, stack: Stack) -> None:
    refused = _offline(page)
    page.goto(f"{stack.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Ed-Fi ODS instance manager")
    expect(page.locator(".opblock-summary-path", has_text="/v2/dbInstances").first).to_be_visible()
    shot(page, "docs-offline")
    assert refused == []


def test_redoc_renders_with_no_network_but_the_gateway(page: Page, stack: Stack) -> None:
    refused = _offline(page)
    page.goto(f"{stack.url}/redoc")
    expect(page.locator("h1", has_text="Ed-Fi ODS instance manager")).to_be_visible()
    expect(page.get_by_text("/v2/dbInstances").first).to_be_attached()
    assert refused == []


def test_the_openapi_document_declares_the_auth_tenant_and_body_limit_answers(
    stack: Stack,
) -> None:
    doc = httpx.get(f"{stack.url}/openapi.json", timeout=10).json()
    create = doc["paths"]["/v2/dbInstances"]["post"]["responses"]
    listing = doc["paths"]["/v2/dbInstances"]["get"]["responses"]
    for answers in (create, listing):
        assert {"400", "401", "403"} <= set(answers), sorted(answers)
        assert "tenant" in answers["400"]["description"]
        assert answers["401"]["content"]["application/problem+json"]
    assert "413" in create and "EDFI_IM_MAX_BODY_BYTES" in create["413"]["description"]
    assert "413" not in listing
    # Every protected route, whatever its router: dead letters, schedules, events.
    for path in ("/v2/deadLetters", "/v2/schedules", "/v2/events"):
        answers = doc["paths"][path]["get"]["responses"]
        assert {"400", "401", "403"} <= set(answers), (path, sorted(answers))
    # The token endpoint takes a form: its body is limited too.
    assert "413" in doc["paths"]["/connect/token"]["post"]["responses"]
    assert doc["components"]["schemas"]["Problem"]["properties"]["detail"]
