"""The Open Inference Protocol over HTTP (KServe V2 REST, Triton's HTTP API, with the binary tensor
data extension): server and model metadata, health from the one health model, and inference as
compute routes on the road."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from app.protocols.oip.codec import INFER
from app.protocols.oip.configuration import CONFIGURATION_EXTENSION, ModelConfig, model_config
from app.protocols.oip.errors import PREFIX
from app.protocols.oip.metadata import MODEL_VERSION, find_model, model_metadata
from app.protocols.oip.models import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    OipError,
    ServerLive,
    ServerMetadata,
    ServerReady,
)
from app.protocols.oip.statistics import STATISTICS_EXTENSION, ModelStatsResponse, statistics_response
from app.serving.health import Verdict
from app.transports.http.compute_routes import ComputeRoute
from app.transports.http.deps import CatalogueDep, ComputeDep, HealthDep
from app.transports.http.oip_docs import (
    HEADER_LENGTH_PARAMETER,
    INFER_REPLY,
    MODEL_NAME,
    MODEL_VERSION_PARAMETER,
    TAG,
    infer_request_body,
    oip_responses,
)
from app.transports.http.openapi import compute_operation

router = APIRouter(prefix=PREFIX, tags=[TAG])

EXTENSIONS = ["binary_tensor_data", STATISTICS_EXTENSION, CONFIGURATION_EXTENSION]
MODELS = (InferenceRequest, InferenceResponse, OipError)
"""Every model the inference routes' documentation references."""
ModelName = Annotated[str, Path(description="A function of the catalogue (name or alias).", examples=["relu"])]
ModelVersion = Annotated[str, Path(description=f"The only version is {MODEL_VERSION!r}.", examples=[MODEL_VERSION])]


@router.get("", summary="Server metadata", responses=oip_responses(500))
async def server_metadata(request: Request) -> ServerMetadata:
    return ServerMetadata(name=request.app.title, version=request.app.version, extensions=EXTENSIONS)


def _answer(body: ServerLive | ServerReady | ModelReady, verdict: Verdict) -> JSONResponse:
    headers = None if verdict.ok else {"Retry-After": "1"}
    return JSONResponse(body.model_dump(), status_code=200 if verdict.ok else 503, headers=headers)


@router.get(
    "/health/live",
    summary="The server is live (503 once the device has failed or a computation is stuck)",
    response_model=ServerLive,
    responses=oip_responses(503),
)
async def server_live(health: HealthDep) -> JSONResponse:
    verdict = health.liveness()
    return _answer(ServerLive(live=verdict.ok), verdict)


@router.get(
    "/health/ready",
    summary="The server is ready for inference (503 while starting or draining)",
    response_model=ServerReady,
    responses=oip_responses(503),
)
async def server_ready(health: HealthDep) -> JSONResponse:
    verdict = health.readiness()
    return _answer(ServerReady(ready=verdict.ok), verdict)


# Before ``/models/{name}``, which would take ``stats`` for a model's name.
@router.get("/models/stats", summary="Every model's statistics (Triton's statistics extension)")
async def all_statistics(catalogue: CatalogueDep, compute: ComputeDep) -> ModelStatsResponse:
    return statistics_response(list(catalogue), compute.statistics)


@router.get("/models/{name}", summary="Model metadata", responses=oip_responses(404), response_model_exclude_none=True)
async def model_metadata_route(name: ModelName, catalogue: CatalogueDep) -> ModelMetadata:
    return model_metadata(find_model(catalogue, name))


@router.get(
    "/models/{name}/versions/{version}",
    summary="Model metadata of a version",
    responses=oip_responses(404),
    response_model_exclude_none=True,
)
async def model_version_metadata(name: ModelName, version: ModelVersion, catalogue: CatalogueDep) -> ModelMetadata:
    return model_metadata(find_model(catalogue, name, version))


@router.get("/models/{name}/stats", summary="A model's statistics", responses=oip_responses(404))
async def model_statistics(name: ModelName, catalogue: CatalogueDep, compute: ComputeDep) -> ModelStatsResponse:
    return statistics_response([find_model(catalogue, name)], compute.statistics)


@router.get(
    "/models/{name}/versions/{version}/stats", summary="A model version's statistics", responses=oip_responses(404)
)
async def model_version_statistics(
    name: ModelName, version: ModelVersion, catalogue: CatalogueDep, compute: ComputeDep
) -> ModelStatsResponse:
    return statistics_response([find_model(catalogue, name, version)], compute.statistics)


@router.get(
    "/models/{name}/config",
    summary="Model configuration (Triton's model configuration extension)",
    responses=oip_responses(404),
)
async def model_configuration(name: ModelName, catalogue: CatalogueDep) -> ModelConfig:
    return model_config(find_model(catalogue, name))


@router.get(
    "/models/{name}/versions/{version}/config",
    summary="Model configuration of a version",
    responses=oip_responses(404),
)
async def model_version_configuration(name: ModelName, version: ModelVersion, catalogue: CatalogueDep) -> ModelConfig:
    return model_config(find_model(catalogue, name, version))


@router.get(
    "/models/{name}/ready",
    summary="The model is ready for inference (503 while the server is not)",
    response_model=ModelReady,
    responses=oip_responses(404, 503),
)
async def model_ready(name: ModelName, catalogue: CatalogueDep, health: HealthDep) -> JSONResponse:
    verdict = health.readiness()
    return _answer(ModelReady(name=find_model(catalogue, name).name, ready=verdict.ok), verdict)


@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="The model version is ready for inference (503 while the server is not)",
    response_model=ModelReady,
    responses=oip_responses(404, 503),
)
async def model_version_ready(
    name: ModelName, version: ModelVersion, catalogue: CatalogueDep, health: HealthDep
) -> JSONResponse:
    verdict = health.readiness()
    return _answer(ModelReady(name=find_model(catalogue, name, version).name, ready=verdict.ok), verdict)


def _infer_operation(operation_id: str, summary: str, *path: dict[str, object]) -> dict[str, object]:
    return compute_operation(
        operation_id,
        summary,
        TAG,
        infer_request_body(),
        {200: INFER_REPLY, **oip_responses(400, 404, 408, 413, 415, 500, 503)},
        [*path, HEADER_LENGTH_PARAMETER],
    )


infer_routes = [
    ComputeRoute(
        f"{PREFIX}/models/{{name}}/infer",
        INFER,
        binary_extension=True,
        operation=_infer_operation("infer_v2_models__name__infer_post", "Compute a function (inference)", MODEL_NAME),
    ),
    ComputeRoute(
        f"{PREFIX}/models/{{name}}/versions/{{version}}/infer",
        INFER,
        binary_extension=True,
        operation=_infer_operation(
            "infer_version_v2_models__name__versions__version__infer_post",
            "Compute a function (inference) with a version",
            MODEL_NAME,
            MODEL_VERSION_PARAMETER,
        ),
    ),
]
