"""Schemathesis against the service's own OpenAPI schema, in process: every operation the schema
lists (whatever routers the app mounts), examples, coverage and fuzzing phases, valid and invalid
data, every check. No server errors, no response that breaks the schema, no undeclared status.

``FUZZ_SEED`` and ``FUZZ_EXAMPLES`` change the seed and the cases per operation; ``make fuzz``
runs the long version against the real server over HTTP. Expected refusals of schema-valid
bodies are set in ``schemathesis.toml``.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, seed, settings

from app.core.config import Settings
from app.main import create_app

SEED = int(os.environ.get("FUZZ_SEED", "20261127"))
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "250"))

APP = create_app(Settings())
"""Built at collection, which does no work: its lifespan starts with the first case."""
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP


@schema.parametrize()
@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate()
