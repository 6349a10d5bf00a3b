"""Fuzz the HTTP API from its OpenAPI schema: whatever arrives, no 5xx, and it keeps serving."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings

AUTH = {"Authorization": "Bearer sekret"}


def test_api_never_errors_on_generated_input(sentiment_server):
    schema = schemathesis.openapi.from_url(sentiment_server.url + "/openapi.json")
    seen = []
    for result in schema.get_all_operations():
        op = result.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def run(case):
            response = case.call(headers=AUTH, timeout=60)
            assert response.status_code < 500, (case.path, case.body, response.text[:300])
            seen.append(response.status_code)

        run()
    assert len(seen) >= 8 and any(400 <= s < 500 for s in seen)
    assert httpx.get(sentiment_server.url + "/healthz", timeout=10).status_code == 200
