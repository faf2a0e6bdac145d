"""The HTTP application: FastAPI, with the service's own middleware outermost."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp


class ServiceApp(FastAPI):
    """FastAPI runs its own layers (its server-error, telemetry and body-limit middleware) outside
    an app's middleware; here the app's middleware runs outermost, so that its compute routes'
    lane (``ComputeLane``) answers them before any of the framework's layers: ~10 µs of a small
    request, in process. The service's middleware answers every error itself (through the error
    pipeline), and every other request goes on through the framework's layers as usual;
    ``add_middleware`` adds to the outer list."""

    def build_middleware_stack(self) -> ASGIApp:
        outer, self.user_middleware = self.user_middleware, []
        try:
            app = super().build_middleware_stack()
        finally:
            self.user_middleware = outer
        for cls, args, kwargs in reversed(outer):
            app = cls(app, *args, **kwargs)
        return app
