"""The catalogue: every function, its arguments, parameters and a worked example."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path

from app.compute.catalogue.registry import NOT_SERVED
from app.core.errors import UnknownFunction
from app.protocols.oip.examples import catalogue_entry
from app.transports.http.deps import CatalogueDep
from app.transports.http.responses import error_responses

router = APIRouter(tags=["catalogue"])


@router.get("/functions", summary="List every activation and loss function", responses=error_responses(422))
async def list_functions(catalogue: CatalogueDep, kind: Literal["activation", "loss"] | None = None) -> dict[str, Any]:
    specs = catalogue.of_kind(kind) if kind else tuple(catalogue)
    not_served = [{"name": name, "reason": reason} for name, reason in NOT_SERVED.items()]
    return {"count": len(specs), "functions": [catalogue_entry(spec) for spec in specs], "not_served": not_served}


@router.get(
    "/functions/{name}",
    summary="Describe one function (canonical name or alias, any case)",
    responses=error_responses(404, 422),
)
async def get_function(
    name: Annotated[str, Path(examples=["relu", "CrossEntropyLoss", "mse_loss"])],
    catalogue: CatalogueDep,
) -> dict[str, object]:
    spec = catalogue.find(name)
    if spec is None:
        close = catalogue.suggest(name)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UnknownFunction.at(("path", "name"), f"unknown function {name[:100]!r}{hint}", "unknown_function")
    return catalogue_entry(spec)
