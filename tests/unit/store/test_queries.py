"""Named SQL statements and their rendering for each driver."""

from __future__ import annotations

import re

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


def test_custom_plan_marker() -> None:
    queries = parse("-- name: a\n-- plan: custom\nSELECT :x;\n\n-- name: b\nSELECT :x;\n")
    assert queries["a"].custom_plan
    assert not queries["b"].custom_plan
    assert all_queries()["list_tasks"].custom_plan


# Statements that leave state in a session, which the API's pool does not reset
# (store/asyncpg_driver.py, _keep_session): allowed only in those that run on a
# connection of their own (migrate's).
_SESSION_STATE = re.compile(
    r"\bSET\s+(?!LOCAL\b)\w+\s*(=|TO)\b|set_config\s*\([^)]*,\s*false\s*\)|\bLISTEN\b"
    r"|pg_advisory_lock\b|\bCREATE\s+TEMP|\bDECLARE\b[^;]*\bWITH\s+HOLD\b|\bPREPARE\b",
    re.IGNORECASE,
)
_OWN_CONNECTION = {"set_lock_timeout", "take_migration_lock"}


def test_no_pooled_statement_leaves_session_state() -> None:
    offenders = {
        name
        for name, q in all_queries().items()
        if _SESSION_STATE.search(re.sub(r"--[^\n]*", "", q.text))
    }
    assert offenders == _OWN_CONNECTION
