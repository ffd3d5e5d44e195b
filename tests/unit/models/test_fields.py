"""Field types for untrusted input: what each refuses, and that the message names the place."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pydantic
import pytest

from taskservice.models.fields import (
    MAX_PARAMS_KEY_LENGTH,
    MAX_PARAMS_STRING_LENGTH,
    CanonicalInt,
    Moment,
    check_storable,
)
from taskservice.models.schedules import ScheduleCreate
from taskservice.models.tasks import TaskCreate

ints = pydantic.TypeAdapter(CanonicalInt)
moments = pydantic.TypeAdapter(Moment)


@pytest.mark.parametrize("text", ["1.0", "+5", "0646", " 7", "7 ", "1e3", "0x10", "1_000", ""])
def test_integers_have_one_spelling(text: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        ints.validate_python(text)


@pytest.mark.parametrize(("text", "value"), [("5", 5), ("0", 0), ("-3", -3), ("646", 646)])
def test_canonical_integers_pass(text: str, value: int) -> None:
    assert ints.validate_python(text) == value


@pytest.mark.parametrize(
    "text",
    ["0.5", "1700000000", "0001-01-01T00:00+01:00", "9999-12-31T23:59:59-23:59", "2030-01-01"],
)
def test_moments_are_rfc3339_and_exist_in_utc(text: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        moments.validate_python(text)


def test_moments_come_back_in_utc() -> None:
    moment = moments.validate_python("2030-01-01T12:00+02:00")
    assert moment == dt.datetime(2030, 1, 1, 10, 0, tzinfo=dt.UTC)
    assert moment.tzinfo is dt.UTC


@pytest.mark.parametrize(
    ("params", "place"),
    [
        ({"a": {"b": ["x" * (MAX_PARAMS_STRING_LENGTH + 1)]}}, "params.a.b[0]"),
        ({"a": "\ud800"}, "params.a"),
        ({"a": [1, "\x00"]}, "params.a[1]"),
        ({"k" * (MAX_PARAMS_KEY_LENGTH + 1): 1}, "params: keys"),
        ({"a": {"\udfff": 1}}, "params.a key"),
    ],
)
def test_params_problems_name_the_place(params: dict[str, Any], place: str) -> None:
    with pytest.raises(ValueError, match=place.replace("[", r"\[").replace(".", r"\.")):
        check_storable(params)


def test_long_strings_within_the_limit_pass() -> None:
    check_storable({"a": "x" * MAX_PARAMS_STRING_LENGTH})


@pytest.mark.parametrize(
    "fields",
    [
        {"timeout_seconds": float("inf")},
        {"timeout_seconds": True},
        {"delay_seconds": "5"},
        {"priority": True},
        {"priority": 2**31},
        {"max_attempts": 1001},
        {"max_attempts": 2.0},
        {"backoff_seconds": 10**9},
        {"type": "ec\x00ho"},
        {"unique_key": "\ud800"},
    ],
)
def test_task_fields_are_strict_and_bounded(fields: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        TaskCreate.model_validate({"type": "echo", "params": {"value": 1}, **fields})


@pytest.mark.parametrize("name", [" ", "\t", "a\nb", "a\x00", "x" * 201])
def test_schedule_names_are_readable(name: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        ScheduleCreate(name=name, type="echo", cron="* * * * *")
