"""Schemathesis fuzzes the live HTTP service on 127.0.0.1 over every operation of its own
OpenAPI schema, with data that fits the schema and data that does not: no 500s, every
response as the schema documents it (status, headers, body), writes refused without the
token. Bounded: a few dozen examples per operation and mode, a few seconds in all."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode

from workbench.serving.adapters import servable
from workbench.serving.app import ServerThread, create_app
from workbench.serving.service import RecommendationService, ServingConfig

TOKEN = "fuzz-token"
#: examples per operation, schema-conforming and not
EXAMPLES = 40


@pytest.fixture(scope="module")
def live_schema(ease):
    """The schema of a live service (a real model, a write token) as served at /openapi.json."""
    service = RecommendationService(servable(ease), ServingConfig(max_wait_ms=0.5))
    with ServerThread(create_app(service, token=TOKEN), grace_s=5) as server:
        yield schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=10)


def test_every_operation_of_the_schema_survives_fuzzing(live_schema):
    operations = [result.ok() for result in live_schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert labels == {
        "GET /recommend/{user_id}",
        "POST /interactions",
        "POST /items",
        "GET /health",
        "HEAD /health",
        "GET /metrics",
    }, labels
    for operation in operations:
        cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

        @given(case=cases)
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

        fuzz()
