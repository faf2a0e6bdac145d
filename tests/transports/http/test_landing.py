"""``GET /``: a page that leads to what the settings serve, offline, every link answering. What a
browser does with it (its style allowed by its policy): ``test_pages_browser.py``."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.transports.http.routes.landing import PAGE

EVERY_LINK = ["/docs", "/redoc", "/explore", "/functions", "/metrics", "/v2"]


def links(page: str) -> list[str]:
    return re.findall(r'<a href="([^"]+)"', page)


def test_the_landing_page_links_to_everything_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert links(page.text) == EVERY_LINK
    for path in EVERY_LINK:
        assert client.get(path).status_code == 200, path
    assert client.head("/").status_code == 200


@pytest.mark.parametrize(
    ("settings", "left_out"),
    [
        (Settings(docs=False), ["/docs", "/redoc"]),
        (Settings(explorer=False), ["/explore"]),
        (Settings(metrics=False), ["/metrics"]),
        (Settings(docs=False, explorer=False, metrics=False), ["/docs", "/redoc", "/explore", "/metrics"]),
    ],
)
def test_the_landing_page_shows_only_what_the_settings_serve(settings: Settings, left_out: list[str]) -> None:
    with TestClient(create_app(settings)) as client:
        shown = links(client.get("/").text)
        assert shown == [path for path in EVERY_LINK if path not in left_out]
        for path in left_out:
            assert client.get(path).status_code == 404, path


def test_the_landing_page_follows_a_path_prefix() -> None:
    with TestClient(create_app(Settings()), root_path="/fn") as client:
        page = client.get("/fn/")
        assert links(page.text) == [f"/fn{path}" for path in EVERY_LINK]


def test_the_landing_page_loads_nothing_and_its_policy_allows_its_own_style_only(client: TestClient) -> None:
    page = client.get("/")
    assert not re.search(r"(src|href)=\"(?!/|data:)", page.text)
    assert "<script" not in page.text
    assert not re.search(r"//[a-z0-9.-]+\.[a-z]{2,}", PAGE.read_text(), re.IGNORECASE)
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    (style,) = re.findall(r"<style>(.*?)</style>", page.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{digest}'"


def test_the_landing_page_is_closed_by_auth() -> None:
    with TestClient(create_app(Settings(api_keys=["k"]))) as client:
        assert client.get("/").status_code == 401
        assert client.get("/", headers={"x-api-key": "k"}).status_code == 200
