"""The docs pages and the explorer are served from this service alone: their assets are package
files (fastapi-offline's Swagger UI and ReDoc, the vendored uPlot), switched by settings and
closed by auth like every other path. What a browser does with them: ``test_pages_browser.py``."""

from __future__ import annotations

import hashlib
import re
from importlib.resources import files
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.transports.http.routes.explore import PAGE

EXPLORE = PAGE.parent
UPLOT = EXPLORE / "vendor" / "uplot"
OWN_FILES = [path for path in EXPLORE.rglob("*") if path.is_file() and "vendor" not in path.parts]


def referenced(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


def test_explorer_page_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/explore")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assets = [url for url in referenced(page.text) if url.startswith("static/")]
    assert len(assets) == 4
    for url in assets:
        reply = client.get(f"/{url}")
        assert reply.status_code == 200, url
    scripts = [path.relative_to(EXPLORE) for path in EXPLORE.glob("js/*.js")]
    assert {str(s) for s in scripts} >= {"js/main.js", "js/api.js", "js/chart.js", "js/controls.js", "js/sweeps.js"}
    for script in scripts:
        reply = client.get(f"/static/explore/{script}")
        assert reply.status_code == 200
        assert "javascript" in reply.headers["content-type"]
    assert client.get("/static/explore/../../main.py").status_code == 404


@pytest.mark.parametrize("path", OWN_FILES, ids=lambda p: str(p.relative_to(EXPLORE)))
def test_explorer_files_name_no_other_host(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path
    for module in re.findall(r"""from\s+["']([^"']+)["']""", text):
        assert module.startswith("./"), module


def test_docs_pages_load_their_scripts_from_this_service(client: TestClient) -> None:
    for path, expected in (("/docs", 3), ("/redoc", 2)):
        page = client.get(path)
        assert page.status_code == 200
        urls = referenced(page.text)
        assert len(urls) == expected, urls
        for url in urls:
            assert url.startswith("/static/docs/"), url
            assert client.get(url).status_code == 200, url
        assert "fonts.googleapis" not in page.text
    assert '"validatorUrl": null' in client.get("/docs").text


def test_redoc_script_is_the_package_file_without_its_outside_logo(client: TestClient) -> None:
    shipped = (files("fastapi_offline") / "static" / "redoc.standalone.js").read_bytes()
    served = client.get("/static/docs/redoc.js")
    assert served.headers["content-type"].startswith("text/javascript")
    assert b"cdn.redoc.ly" in shipped
    assert b"cdn.redoc.ly" not in served.content
    assert len(served.content) == pytest.approx(len(shipped), abs=100)


def test_docs_pages_follow_a_path_prefix() -> None:
    with TestClient(create_app(), root_path="/fn") as client:
        for url in referenced(client.get("/docs").text):
            assert url.startswith("/fn/static/docs/"), url


def test_explorer_and_docs_can_be_switched_off_separately() -> None:
    with TestClient(create_app(Settings(explorer=False))) as client:
        assert client.get("/explore").status_code == 404
        assert client.get("/static/explore/js/main.js").status_code == 404
        assert client.get("/docs").status_code == 200
    with TestClient(create_app(Settings(docs=False))) as client:
        assert client.get("/static/docs/swagger-ui-bundle.js").status_code == 404
        assert client.get("/static/docs/redoc.js").status_code == 404
        assert client.get("/explore").status_code == 200


def test_pages_and_assets_are_closed_by_auth() -> None:
    paths = ["/explore", "/static/explore/js/main.js", "/docs", "/redoc", "/static/docs/swagger-ui.css"]
    with TestClient(create_app(Settings(api_keys=["k"]))) as client:
        assert [client.get(path).status_code for path in paths] == [401] * len(paths)
        assert [client.get(path, headers={"x-api-key": "k"}).status_code for path in paths] == [200] * len(paths)


def test_vendored_chart_library_is_the_recorded_release() -> None:
    record = (UPLOT / "VERSION").read_text()
    assert re.search(r"^version: \d+\.\d+\.\d+$", record, re.MULTILINE)
    recorded = {
        name: digest
        for _, digest, name in (line.split() for line in record.splitlines() if line.startswith("sha256: "))
    }
    assert set(recorded) == {"LICENSE", "uPlot.iife.min.js", "uPlot.min.css"}
    for name, digest in recorded.items():
        assert hashlib.sha256((UPLOT / name).read_bytes()).hexdigest() == digest, name
    assert "MIT License" in (UPLOT / "LICENSE").read_text()
