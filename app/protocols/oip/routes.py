"""The Open Inference Protocol (KServe V2 REST, Triton's HTTP API) with the binary tensor data
extension: HTTP only. Models are the catalogue's functions; work goes to the same compute service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response

from app.api.body import Body
from app.api.deps import CatalogueDep, ComputeDep, hot_path_resources
from app.api.headers import ComputeHeaders, header_number
from app.api.hot_routes import RequestHandlerRoute
from app.api.raw_body import read_raw_body
from app.api.serving import Codec, serve
from app.compute.catalogue import Catalogue, FunctionSpec
from app.core.errors import UnknownFunction
from app.protocols.oip.binary import EncodedReply, infer_reply
from app.protocols.oip.codec import InferDecoded, decode_infer, encode_infer, json_reply_bytes
from app.protocols.oip.configuration import CONFIGURATION_EXTENSION, ModelConfig, model_config
from app.protocols.oip.docs import INFER_BODY, TAG, oip_responses
from app.protocols.oip.errors import PREFIX
from app.protocols.oip.metadata import MODEL_VERSION, model_metadata
from app.protocols.oip.models import (
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
)
from app.protocols.oip.statistics import STATISTICS_EXTENSION, ModelStatsResponse, statistics_response

router = APIRouter(prefix=PREFIX, tags=[TAG])
infer_router = APIRouter(prefix=PREFIX, tags=[TAG], route_class=RequestHandlerRoute)
"""The inference routes: request handlers on the compute routes' own lane (``HotRoutes``)."""

EXTENSIONS = ["binary_tensor_data", STATISTICS_EXTENSION, CONFIGURATION_EXTENSION]
ModelName = Annotated[str, Path(description="A function of the catalogue (name or alias).", examples=["relu"])]
ModelVersion = Annotated[str, Path(description=f"The only version is {MODEL_VERSION!r}.", examples=[MODEL_VERSION])]


def _model(catalogue: Catalogue, name: str, version: str | None = None) -> FunctionSpec:
    spec = catalogue.find(name)
    if spec is None:
        close = catalogue.suggest(name)
        hint = f"; closest: {', '.join(close)}" if close else "; see GET /functions"
        raise UnknownFunction.at(("model",), f"unknown model {name[:100]!r}{hint}", "unknown_model")
    if version is not None and version != MODEL_VERSION:
        raise UnknownFunction.at(
            ("model", "version"),
            f"{spec.name} has no version {version[:20]!r} (only {MODEL_VERSION!r})",
            "unknown_model",
        )
    return spec


@router.get("", summary="Server metadata", responses=oip_responses(500))
async def server_metadata(request: Request) -> ServerMetadata:
    return ServerMetadata(name=request.app.title, version=request.app.version, extensions=EXTENSIONS)


@router.get(
    "/health/live",
    summary="The server is live (503 once the device has failed or a computation is stuck)",
    response_model=ServerLive,
    responses=oip_responses(503),
)
async def server_live(request: Request) -> JSONResponse:
    compute, _, _ = hot_path_resources(request)
    live = compute.device_failure is None and not compute.stuck
    return JSONResponse(ServerLive(live=live).model_dump(), status_code=200 if live else 503)


def _ready_or_503(body: ServerReady | ModelReady) -> JSONResponse:
    status = 200 if body.ready else 503
    headers = None if body.ready else {"Retry-After": "1"}
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


@router.get(
    "/health/ready",
    summary="The server is ready for inference (503 while starting or stopping)",
    response_model=ServerReady,
    responses=oip_responses(503),
)
async def server_ready(request: Request) -> JSONResponse:
    compute, _, _ = hot_path_resources(request)
    return _ready_or_503(ServerReady(ready=compute.ready))


# Before ``/models/{name}``, which would take ``stats`` for a model's name.
@router.get("/models/stats", summary="Every model's statistics (Triton's statistics extension)")
async def all_statistics(catalogue: CatalogueDep, compute: ComputeDep) -> ModelStatsResponse:
    return statistics_response(list(catalogue), compute.statistics)


@router.get("/models/{name}", summary="Model metadata", responses=oip_responses(404), response_model_exclude_none=True)
async def model_metadata_route(name: ModelName, catalogue: CatalogueDep) -> ModelMetadata:
    return model_metadata(_model(catalogue, name))


@router.get(
    "/models/{name}/versions/{version}",
    summary="Model metadata of a version",
    responses=oip_responses(404),
    response_model_exclude_none=True,
)
async def model_version_metadata(name: ModelName, version: ModelVersion, catalogue: CatalogueDep) -> ModelMetadata:
    return model_metadata(_model(catalogue, name, version))


@router.get("/models/{name}/stats", summary="A model's statistics", responses=oip_responses(404))
async def model_statistics(name: ModelName, catalogue: CatalogueDep, compute: ComputeDep) -> ModelStatsResponse:
    return statistics_response([_model(catalogue, name)], compute.statistics)


@router.get(
    "/models/{name}/versions/{version}/stats", summary="A model version's statistics", responses=oip_responses(404)
)
async def model_version_statistics(
    name: ModelName, version: ModelVersion, catalogue: CatalogueDep, compute: ComputeDep
) -> ModelStatsResponse:
    return statistics_response([_model(catalogue, name, version)], compute.statistics)


@router.get(
    "/models/{name}/config",
    summary="Model configuration (Triton's model configuration extension)",
    responses=oip_responses(404),
)
async def model_configuration(name: ModelName, catalogue: CatalogueDep) -> ModelConfig:
    return model_config(_model(catalogue, name))


@router.get(
    "/models/{name}/versions/{version}/config",
    summary="Model configuration of a version",
    responses=oip_responses(404),
)
async def model_version_configuration(name: ModelName, version: ModelVersion, catalogue: CatalogueDep) -> ModelConfig:
    return model_config(_model(catalogue, name, version))


@router.get(
    "/models/{name}/ready",
    summary="The model is ready for inference",
    response_model=ModelReady,
    responses=oip_responses(404, 503),
)
async def model_ready(request: Request, name: ModelName) -> JSONResponse:
    compute, options, _ = hot_path_resources(request)
    return _ready_or_503(ModelReady(name=_model(options.catalogue, name).name, ready=compute.ready))


@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="The model version is ready for inference",
    response_model=ModelReady,
    responses=oip_responses(404, 503),
)
async def model_version_ready(request: Request, name: ModelName, version: ModelVersion) -> JSONResponse:
    compute, options, _ = hot_path_resources(request)
    return _ready_or_503(ModelReady(name=_model(options.catalogue, name, version).name, ready=compute.ready))


def _json_part(body: Body, headers: ComputeHeaders) -> int:
    """Binary tensors are only viewed: what is parsed is the JSON header."""
    if headers.inference_header_length is None:
        return len(body)
    declared = header_number(headers.inference_header_length)
    return len(body) if declared is None else min(declared, len(body))


INFER: Codec[InferDecoded, EncodedReply] = Codec(
    read=read_raw_body,
    parsed_bytes=_json_part,
    decode=decode_infer,
    reply_bytes=json_reply_bytes,
    encode=encode_infer,
    respond=infer_reply,
    subject=lambda options, path: _model(options.catalogue, *path),
)
"""The protocol's part of the one road (``app.api.serving``)."""


_INFER_DOC = {
    "response_model": None,
    "responses": {
        200: {"model": InferenceResponse, **INFER_BODY.response},
        **oip_responses(400, 404, 408, 413, 415, 500, 503),
    },
    "openapi_extra": INFER_BODY.request,
}


@infer_router.post("/models/{name}/infer", summary="Compute a function (inference)", **_INFER_DOC)  # type: ignore[arg-type]
async def infer(request: Request, name: ModelName) -> Response:
    return await serve(request, INFER, name)


@infer_router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Compute a function (inference) with a version",
    **_INFER_DOC,  # type: ignore[arg-type]
)
async def infer_version(request: Request, name: ModelName, version: ModelVersion) -> Response:
    return await serve(request, INFER, name, version)
