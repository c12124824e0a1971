"""The OpenAPI document against the running server: schemathesis generates requests from
``/openapi.json`` and checks that every answer has a declared status code, content type and
schema (every error ``{"error": ...}``), and that none is a server error. Bounded: a few
examples per operation, no URL fetches (they would leave this machine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from live_server import serve

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def base_url(built_index: tuple[Path, Path]) -> Iterator[str]:
    with serve(built_index[0]) as url:
        yield url


def test_server_answers_as_documented(base_url: str) -> None:
    """Each operation with a few generated requests (schemathesis' pytest plugin is driven
    directly: its lazy fixture loader does not run under this pytest)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema = schema.exclude(path="/api/search/url")  # would fetch from the internet
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def answers_as_documented(case) -> None:
            case.call_and_validate(checks=CHECKS)

        answers_as_documented()
        tested.append(operation.label)
    assert len(tested) >= 9, tested


def test_document_is_openapi_3_0_with_the_error_schema(base_url: str) -> None:
    """Swagger UI 4 reads OpenAPI 3.0 only; errors are documented as they are sent."""
    import httpx

    document = httpx.get(f"{base_url}/openapi.json").json()
    assert document["openapi"].startswith("3.0.")
    assert document["components"]["schemas"]["ErrorOut"]["required"] == ["error"]
    similar = document["paths"]["/api/images/{image_id}/similar"]["get"]["responses"]
    assert {"200", "400", "404", "422"} <= set(similar)
    assert similar["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorOut"
    }
    upload = document["paths"]["/api/search"]["post"]["responses"]
    assert "413" in upload
    write = document["paths"]["/api/index"]["post"]["responses"]
    assert {"401", "403", "409"} <= set(write)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_error_messages_use_no_internal_words(base_url: str) -> None:
    """What the page shows as is: no library names, no parser positions."""
    import httpx

    bad_json = httpx.post(
        f"{base_url}/api/search/url", content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert bad_json.status_code == 422
    assert bad_json.json() == {"error": "the request body is not valid JSON"}
    text = httpx.post(f"{base_url}/api/search", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert text.status_code == 400
    message = text.json()["error"]
    assert "notes.txt" in message and "not an image" in message and "Pillow" not in message
    typo = httpx.get(f"{base_url}/api/images", params={"label": "dalmation"})
    assert typo.status_code == 422
    assert "dalmatian" in typo.json()["error"] and "GET /api/tags" in typo.json()["error"]
    assert "lookalike tags" not in typo.json()["error"]  # no command line hint
