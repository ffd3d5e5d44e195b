"""The OpenAPI document tells each task type's params and every answer middleware gives."""

from __future__ import annotations

from typing import Any

import pytest

from taskservice.api.app import create_app
from taskservice.registry import load_registry
from taskservice.settings import Settings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # Writing the document needs no database.
    settings = Settings(database_url="postgresql://unused/unused", metrics_port=None)
    return create_app(settings, registry=load_registry(["tests.task_types"])).openapi()


def _branch(document: dict[str, Any], body: str, task_type: str) -> dict[str, Any]:
    schema = document["components"]["schemas"][body]
    branches: list[dict[str, Any]] = schema["oneOf"]
    [branch] = [b for b in branches if b["properties"]["type"] == {"const": task_type}]
    return branch


@pytest.mark.parametrize("body", ["TaskCreate", "ScheduleCreate"])
def test_each_task_type_says_what_params_it_requires(document: dict[str, Any], body: str) -> None:
    schemas = document["components"]["schemas"]
    echo = _branch(document, body, "echo")
    assert echo["required"] == ["type", "params"]
    params = schemas[echo["properties"]["params"]["$ref"].rsplit("/", 1)[1]]
    assert params["required"] == ["value"]
    assert params["additionalProperties"] is False
    fail = _branch(document, body, "fail")  # `message` has a default: params may be left out
    assert fail["required"] == ["type"]
    branches = [b["properties"]["type"]["const"] for b in schemas[body]["oneOf"]]
    assert branches == load_registry(["tests.task_types"]).names  # the service's own: none


def test_every_operation_declares_the_answers_of_the_limits(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            declared = set(operation["responses"])
            assert {"408", "413"} <= declared, (method, path)
            if path != "/health/live":
                assert "503" in declared, (method, path)
            if "requestBody" in operation:
                assert "400" in declared, (method, path)


def test_error_answers_have_the_error_shape(document: dict[str, Any]) -> None:
    responses = document["paths"]["/tasks/{task_id}"]["get"]["responses"]
    for status in ("404", "408", "413", "503"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Problem"}


def test_ids_are_documented_as_bounded_integers(document: dict[str, Any]) -> None:
    parameters = document["paths"]["/tasks/{task_id}"]["get"]["parameters"]
    [task_id] = [p for p in parameters if p["name"] == "task_id"]
    assert task_id["schema"]["type"] == "integer"
    assert task_id["schema"]["minimum"] == 1
    assert task_id["schema"]["maximum"] == 2**63 - 1
