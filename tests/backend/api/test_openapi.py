"""The OpenAPI schema is complete: every JSON operation documents the body of its success."""

from __future__ import annotations

from typing import Any

DESCRIPTIVE_ONLY = {"title", "description", "examples"}


def _undocumented(schema: dict[str, Any]) -> list[str]:
    """``METHOD path status media-type`` of each JSON success response without a body schema (an
    empty one, or one with only a title, says nothing: that is what ``-> Any`` gives)."""
    missing = []
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            for status in ("200", "201"):
                for media, content in op.get("responses", {}).get(status, {}).get("content", {}).items():
                    if "json" not in media:
                        continue
                    body = content.get("schema") or {}
                    if not set(body) - DESCRIPTIVE_ONLY:
                        missing.append(f"{method.upper()} {path} {status} {media}")
    return missing


def test_every_json_operation_has_a_response_schema(settings: Any) -> None:
    from backend.app import create_app

    schema = create_app(settings).openapi()
    operations = [(m, p) for p, ops in schema["paths"].items() for m in ops]
    assert len(operations) >= 25
    assert _undocumented(schema) == []
    # Each operation has a success response at all (an operation answering only errors is a gap too).
    assert [
        f"{m} {p}"
        for p, ops in schema["paths"].items()
        for m, op in ops.items()
        if not {"200", "201", "204"} & set(op["responses"])
    ] == []
    worklist = schema["paths"]["/api/v1/worklist"]["get"]["responses"]["200"]["content"]["application/json"]
    assert worklist["schema"] == {"$ref": "#/components/schemas/WorklistOut"}
    fhir = schema["paths"]["/api/v1/patients/{patient_id}/fhir"]["get"]["responses"]["200"]["content"]
    assert set(fhir) == {"application/fhir+json"} and fhir["application/fhir+json"]["schema"]


def test_the_check_finds_an_operation_without_a_model() -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/typed", response_model=dict[str, int])
    def typed() -> dict[str, int]:
        return {}

    @app.get("/untyped")
    def untyped() -> Any:
        return {}

    assert _undocumented(app.openapi()) == ["GET /untyped 200 application/json"]
