"""The framework's floor one layer down: ``uvicorn bench.starlette_app:app`` answers the service's
compute routes with bare Starlette endpoints that read the whole body and return a constant small
JSON reply, so ``bench.throughput`` can place the service between a raw ASGI app
(``bench.echo_app``), Starlette alone, and FastAPI alone (``bench.bare_app``)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

REPLY = b'{"ok":true}'


async def answer(request: Request) -> Response:
    await request.body()
    return Response(REPLY, media_type="application/json")


app = Starlette(
    routes=[
        Route("/activate", answer, methods=["POST"]),
        Route("/loss", answer, methods=["POST"]),
        Route("/v2/models/{name}/infer", answer, methods=["POST"]),
    ]
)
