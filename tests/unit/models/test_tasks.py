"""Submission checks that PostgreSQL would otherwise make into server errors."""

from __future__ import annotations

import pydantic
import pytest

from taskservice.models.tasks import TaskCreate


@pytest.mark.parametrize(
    "params",
    [{"v": float("nan")}, {"v": [1, float("inf")]}, {"v": "a\x00"}, {"a\x00": 1}],
)
def test_unstorable_params_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError, match="params"):
        TaskCreate(type="echo", params=params)


def test_deeply_nested_params_are_refused() -> None:
    deep: list[object] = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(pydantic.ValidationError, match="nested more than 64 levels"):
        TaskCreate(type="echo", params={"v": deep})


def test_ordinary_params_pass() -> None:
    body = TaskCreate(type="echo", params={"v": [1, 2.5, "x", None, {"k": True}]})
    assert body.params["v"][1] == 2.5
