"""The framework's own ceiling: the service's compute routes with no work behind them.

``uvicorn bench.bare_app:app`` answers POST /activate, POST /loss and the Open Inference
Protocol's inference by reading the whole body and returning a constant small JSON reply, so
``bench.throughput`` can compare the service with FastAPI + uvicorn alone under the same server
settings and load.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

REPLY = b'{"ok":true}'

app = FastAPI()


@app.post("/activate")
async def activate(request: Request) -> Response:
    await request.body()
    return Response(REPLY, media_type="application/json")


@app.post("/v2/models/{name}/infer")
async def infer(request: Request, name: str) -> Response:
    await request.body()
    return Response(REPLY, media_type="application/json")


@app.post("/loss")
async def loss(request: Request) -> Response:
    await request.body()
    return Response(REPLY, media_type="application/json")
