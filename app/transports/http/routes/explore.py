"""The explorer page: every function and its gradient, plotted from this service's own answers.

The page and its scripts are package data (``app/static/explore``); it computes nothing itself,
it asks ``/functions``, ``/activate`` and ``/loss``. Its Content-Security-Policy lets it reach this
origin only, so no request can leave it."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/static/explore"
PAGE = Path(str(files("app"))) / "static" / "explore" / "index.html"

# uPlot sets inline styles on the elements it creates, hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'self'; form-action 'none'; frame-ancestors 'self'"
)

router = APIRouter(include_in_schema=False)


@router.get("/explore")
async def explorer_page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html", headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


def install(app: FastAPI) -> None:
    """The page at ``/explore``, its scripts, styles and vendored chart library under ``ASSETS``."""
    app.include_router(router)
    app.mount(ASSETS, StaticFiles(packages=[("app", "static/explore")]), name="explore-assets")
