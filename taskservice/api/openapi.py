"""The OpenAPI document, completed: each task type's params schema on the bodies that
name a type, and the error answers every operation can give besides its own."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from taskservice.registry import TaskRegistry

# Bodies whose `params` are checked against the task type named in `type`.
_TYPED_BODIES = ("TaskCreate", "ScheduleCreate")
_PROBLEM = "Problem"
_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": _PROBLEM,
    "description": "Every error, in FastAPI's validation shape.",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                    "ctx": {"type": "object"},
                },
            },
        }
    },
}
# Answers that middleware gives, so no route declares them: (status, when, applies to).
_COMMON = {
    "408": "The body did not arrive within TASKSERVICE_BODY_TIMEOUT_SECONDS.",
    "413": "The body is larger than TASKSERVICE_MAX_BODY_BYTES.",
    "503": "Too many requests in progress (see Retry-After), or the database is unavailable.",
}
_BODY_NOT_UTF8 = "The body is not UTF-8."
# Answers of every operation that takes an API key (api/auth.py).
_SECURED = {
    "401": "No API key, or a malformed, unknown or revoked one (WWW-Authenticate: Bearer).",
    "403": "The API key lacks the scope this operation needs.",
}
# Paths the in-flight limit does not apply to and that use no database.
_NEVER_UNAVAILABLE = ("/health/live",)


def _component_name(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", ".".join(parts))


def _params_branches(registry: TaskRegistry, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """One branch per task type: `type` is its name and `params` follow its model."""
    branches = []
    for name in registry.names:
        params_name = _component_name("Params", name)
        model = registry[name].params_model
        params = model.model_json_schema(
            ref_template=f"#/components/schemas/{params_name}.{{model}}"
        )
        for def_name, definition in params.pop("$defs", {}).items():
            schemas[f"{params_name}.{def_name}"] = definition
        schemas[params_name] = params
        branch: dict[str, Any] = {
            "properties": {
                "type": {"const": name},
                "params": {"$ref": f"#/components/schemas/{params_name}"},
            },
            "required": ["type", "params"] if params.get("required") else ["type"],
        }
        branches.append(branch)
    return branches


def _complete(schema: dict[str, Any], registry: TaskRegistry) -> None:
    schemas: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    branches = _params_branches(registry, schemas)
    for body in _TYPED_BODIES:
        if body in schemas and branches:
            schemas[body]["oneOf"] = branches
            schemas[body]["description"] = (
                schemas[body].get("description", "")
                + " `params` must match the params schema of the task type named in `type`."
            ).strip()
    schemas[_PROBLEM] = _PROBLEM_SCHEMA
    problem = {"application/json": {"schema": {"$ref": f"#/components/schemas/{_PROBLEM}"}}}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            for status, description in _COMMON.items():
                if status == "503" and path in _NEVER_UNAVAILABLE:
                    continue
                responses.setdefault(status, {"description": description})
            if "requestBody" in operation:
                responses.setdefault("400", {"description": _BODY_NOT_UTF8})
            if operation.get("security"):
                for status, description in _SECURED.items():
                    responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status[0] in "45" and not response.get("content"):
                    response["content"] = problem
                    response.setdefault("description", "Error")


def template_pattern(template: str) -> re.Pattern[str]:
    """ "/tasks/{task_id}" -> a pattern that matches "/tasks/5"."""
    parts = ("[^/]+" if part.startswith("{") else re.escape(part) for part in template.split("/"))
    return re.compile("/".join(parts) + "$")


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the document gives for `path`: its own if it is a path of the
    document (/tasks/batch), else those of the templates it matches."""
    paths: dict[str, Any] = app.openapi().get("paths", {})
    if path in paths:
        return sorted(method.upper() for method in paths[path])
    methods: set[str] = set()
    for template, operations in paths.items():
        if template_pattern(template).match(path):
            methods.update(method.upper() for method in operations)
    return sorted(methods)


def document_task_types(app: FastAPI, registry: TaskRegistry) -> None:
    """Make `app.openapi()` describe each task type's params and the common errors."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _complete(build(), registry)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way
