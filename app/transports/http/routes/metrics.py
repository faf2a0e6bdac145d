"""GET /metrics: Prometheus exposition text."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.telemetry.metrics import CONTENT_TYPE, Metrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Metrics in Prometheus text format."}},
)
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE)
