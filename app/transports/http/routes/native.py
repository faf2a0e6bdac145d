"""POST /activate and POST /loss: the service's own JSON protocol (``app.protocols.native``) on the
road, as compute routes."""

from __future__ import annotations

from app.compute.catalogue import CATALOGUE
from app.protocols.native.codec import ACTIVATE, LOSS
from app.protocols.native.models import ActivateRequest, ActivateResponse, ErrorResponse, LossRequest, LossResponse
from app.transports.http.compute_routes import ComputeRoute
from app.transports.http.openapi import compute_operation, request_body
from app.transports.http.responses import COMPUTE_ERRORS

TAG = "compute"
MODELS = (ActivateRequest, LossRequest, ActivateResponse, LossResponse, ErrorResponse)
"""Every model the routes' documentation references."""

routes = [
    ComputeRoute(
        "/activate",
        ACTIVATE,
        operation=compute_operation(
            "activate_activate_post",
            "Apply an activation function (and its vector-Jacobian product)",
            TAG,
            request_body(ActivateRequest, CATALOGUE.of_kind("activation"), "leaky_relu"),
            {
                200: {"model": ActivateResponse, "description": "The output, and its gradient when asked."},
                **COMPUTE_ERRORS,
            },
        ),
    ),
    ComputeRoute(
        "/loss",
        LOSS,
        operation=compute_operation(
            "loss_loss_post",
            "Compute a loss function (and its gradients)",
            TAG,
            request_body(LossRequest, CATALOGUE.of_kind("loss"), "cross_entropy"),
            {200: {"model": LossResponse, "description": "The loss, and its gradients when asked."}, **COMPUTE_ERRORS},
        ),
    ),
]
