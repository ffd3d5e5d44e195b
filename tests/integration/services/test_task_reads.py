"""get_task with its history reads one JSON document built by the database: the
answer is the one the view's columns give, to the byte, whatever the row holds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from pydantic import TypeAdapter

from taskservice.errors import TaskNotFound
from taskservice.models.tasks import TaskPublic
from taskservice.services.tasks import get_task
from taskservice.store import asyncpg_driver as db

pytestmark = pytest.mark.anyio  # at collection: parametrized async tests need it then

_AS_JSON = TypeAdapter(TaskPublic)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    # Not UTC: the document's times must not depend on the session's TimeZone.
    pool = await db.create_pool(
        database_url, max_size=2, session_settings={"TimeZone": "Asia/Kolkata"}
    )
    yield pool
    await pool.close()


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


async def _job(
    conn: asyncpg.Connection,
    *,
    args: dict[str, Any],
    status: str,
    attempts: int = 0,
    scheduled_at: str | None = None,
    record: dict[str, Any] | None = None,
    runs: Sequence[tuple[str | None, dict[str, Any] | None]] = (),
) -> int:
    """A job with its record and runs written as given (no trigger rewrites them)."""
    await conn.execute("SET session_replication_role = replica")
    job_id: int = await conn.fetchval(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts,"
        " scheduled_at) VALUES ('q', 'echo', $1::jsonb, $2, $3, $4::text::timestamptz)"
        " RETURNING id",
        json.dumps(args),
        status,
        attempts,
        scheduled_at,
    )
    if record is not None:
        await conn.execute(
            "INSERT INTO taskservice.task_records (job_id, created_at, started_at, finished_at,"
            " result, error, progress, callback) VALUES ($1, '2026-05-05 05:05:05+00', now(),"
            " $2::text::timestamptz, $3::jsonb, $4::jsonb, $5::jsonb, $6::jsonb)",
            job_id,
            record.get("finished_at"),
            _json(record.get("result")),
            _json(record.get("error")),
            _json(record.get("progress")),
            _json(record.get("callback")),
        )
    for attempt, (outcome, error) in enumerate(runs, 1):
        await conn.execute(
            "INSERT INTO taskservice.task_attempts (job_id, attempt, started_at, finished_at,"
            " outcome, error) VALUES ($1, $2, '2026-05-05 05:05:05.000001+00',"
            " CASE WHEN $3::text IS NOT NULL THEN now() END, $3, $4::jsonb)",
            job_id,
            attempt,
            outcome,
            _json(error),
        )
    await conn.execute("RESET session_replication_role")
    return job_id


async def _from_columns(pool: db.Pool, task_id: int) -> bytes:
    """The answer as the view's columns and the attempts' rows give it."""
    row = await db.fetchrow(pool, "get_task", task_id=task_id, owner=None)
    assert row is not None
    attempts = await db.fetch(pool, "get_task_attempts", task_id=task_id)
    fields = {**dict(row), "attempt_history": [dict(a) for a in attempts]}
    return _AS_JSON.dump_json(TaskPublic.model_validate(fields))


EDGE_JOBS: list[dict[str, Any]] = [
    {"args": {"value": 1}, "status": "todo", "record": {}},
    {
        "args": {
            "v": 1e5,
            "s": 'é\u2028\u0001 "q"',
            "n": None,
            "l": [1, 2.5, True],
            "big": 12345678901234567890,
            "_options": {"max_attempts": 5, "timeout_seconds": 30},
        },
        "status": "succeeded",
        "attempts": 2,
        "scheduled_at": "2026-01-01 00:00:00+00",
        "record": {
            "finished_at": "2026-01-01 00:00:02.5+00",
            "result": {"x": [1.0, 1e20, -0.0, 3.14159]},
            "progress": {"fraction": 0.5, "message": "half", "updated_at": "2026-01-01T00:00:01Z"},
            "callback": {"status": "delivered", "attempts": 1, "last_error": None},
        },
        "runs": [
            ("todo", {"type": "E", "message": "m", "traceback": "tb", "details": {"a": 1}}),
            ("succeeded", None),
        ],
    },
    {
        "args": {"_options": {"timeout_seconds": 0.1, "uncharged_runs": 1}},
        "status": "failed",
        "attempts": 3,
        "scheduled_at": "1999-12-31 23:59:59.999999+05",
        "record": {"error": {"type": "ValueError", "message": "bad ünïcode", "traceback": None}},
        "runs": [
            ("todo", {"type": "E", "message": "m"}),
            ("failed", {"type": "E", "message": "n"}),
        ],
    },
    # No task record (a job deferred by the procrastinate CLI with the trigger off).
    {"args": {"_options": {"timeout_seconds": 1e-7}}, "status": "doing", "runs": [(None, None)]},
    {"args": {}, "status": "todo", "attempts": 1, "scheduled_at": "2030-01-01 12:00:00+00"},
]


@pytest.mark.parametrize("job", EDGE_JOBS)
async def test_the_document_reads_as_the_columns_do(
    pool: db.Pool, db: asyncpg.Connection, job: dict[str, Any]
) -> None:
    task_id = await _job(db, **job)
    task = await get_task(pool=pool, task_id=task_id, with_history=True)
    assert _AS_JSON.dump_json(task) == await _from_columns(pool, task_id)


async def test_another_owners_or_a_missing_task_is_not_found(
    pool: db.Pool, db: asyncpg.Connection
) -> None:
    task_id = await _job(db, args={}, status="todo", record={})
    with pytest.raises(TaskNotFound):
        await get_task(pool=pool, task_id=task_id, with_history=True, owner=7)
    with pytest.raises(TaskNotFound):
        await get_task(pool=pool, task_id=task_id + 1, with_history=True)
