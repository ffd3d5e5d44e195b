"""Named SQL statements and their rendering for each driver."""

from __future__ import annotations

import pytest

from taskservice.store.queries import all_queries, parse


def test_parse_splits_named_sections() -> None:
    queries = parse("-- name: a\nSELECT 1;\n\n-- name: b\nSELECT :x::int, :y, :x;\n")
    assert set(queries) == {"a", "b"}
    assert queries["b"].param_names == ("x", "y")


def test_asyncpg_rendering_numbers_params_and_keeps_casts() -> None:
    q = parse("-- name: q\nSELECT :x::int, CAST(:y AS text), :x\n")["q"]
    assert q.asyncpg_text == "SELECT $1::int, CAST($2 AS text), $1"
    assert q.asyncpg_args({"y": "b", "x": 1}) == [1, "b"]


def test_psycopg_rendering_names_params_and_escapes_percent() -> None:
    q = parse("-- name: q\nSELECT :x WHERE a LIKE 'x%'\n")["q"]
    assert q.psycopg_text == "SELECT %(x)s WHERE a LIKE 'x%%'"


def test_missing_or_extra_arguments_are_refused() -> None:
    q = parse("-- name: q\nSELECT :x\n")["q"]
    with pytest.raises(TypeError, match=r"missing \['x'\], unexpected \['z'\]"):
        q.asyncpg_args({"z": 1})


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_shipped_queries_parse() -> None:
    assert {"get_task", "list_tasks", "cancel_task", "end_run"} <= set(all_queries())
