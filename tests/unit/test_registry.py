"""Loading task types from modules named in configuration."""

from __future__ import annotations

import sys
import types

import pytest
from pydantic import BaseModel

from taskservice.errors import ConfigurationError
from taskservice.registry import load_registry, task_type


class P(BaseModel):
    x: int


def _module(name: str, **attrs: object) -> str:
    module = types.ModuleType(name)
    vars(module).update(attrs)
    sys.modules[name] = module
    return name


# The task library (worker/library) adds its types too: these tests name only
# the ones they are about, so a new library type does not break them.
def test_builtins_are_always_there() -> None:
    names = load_registry().names
    library = {
        "http.request",
        "notify.webhook",
        "sql.run",
        "files.transfer",
        "notify.email",
        "batch.map",
    }
    assert {"echo", "fail", "sleep", *library} <= set(names)
    assert names == sorted(names)


def test_a_module_adds_its_task_types() -> None:
    @task_type("resize", params=P)
    def resize(params: P) -> int:
        """Resize an image."""
        return params.x

    registry = load_registry([_module("org_tasks_ok", resize=resize)])
    assert set(registry.names) - set(load_registry().names) == {"resize"}
    assert registry["resize"].description == "Resize an image."
    assert not registry["resize"].is_async
    assert not registry["resize"].wants_context


def test_two_types_with_one_name_are_refused() -> None:
    @task_type("echo", params=P)
    async def shadow(params: P) -> None: ...

    with pytest.raises(ConfigurationError, match="'echo' is defined in both"):
        load_registry([_module("org_tasks_clash", shadow=shadow)])


def test_missing_module_names_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="TASKSERVICE_TASK_MODULES"):
        load_registry(["org_tasks_missing_for_sure"])
