"""Every status the service can answer with is declared in its OpenAPI schema, so that clients
(and Schemathesis) know them all."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.core.errors import UnknownFunction
from app.transports.http.errors import STATUS_BY_ERROR

NOT_FROM_COMPUTE = {UnknownFunction}
"""UnknownFunction is the 404 of ``GET /functions/{name}`` (in a request body an unknown name is a 422)."""


def test_compute_routes_declare_every_error_status(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    statuses = {str(status) for error, status in STATUS_BY_ERROR.items() if error not in NOT_FROM_COMPUTE}
    for path in ("/activate", "/loss"):
        declared = set(paths[path]["post"]["responses"])
        assert {"200", "500"} | statuses <= declared, (path, statuses - declared)


def test_every_operation_declares_what_it_can_answer(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        ("/functions", "get"): {"200", "422"},
        ("/functions/{name}", "get"): {"200", "404", "422"},
        ("/healthz", "get"): {"200", "503"},
        ("/readyz", "get"): {"200", "503"},
    }
    for (path, method), statuses in expected.items():
        assert statuses <= set(paths[path][method]["responses"]), path
    for path, operations in paths.items():
        # The Open Inference Protocol's routes answer errors in the protocol's own format.
        error_model = "OipError" if path.startswith("/v2") else "ErrorResponse"
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status != "200":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": f"#/components/schemas/{error_model}"}, (path, method, status)
