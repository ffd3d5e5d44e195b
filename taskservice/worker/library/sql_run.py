"""The `sql.run` task type: a statement the deployment configured by name, run
on the service's database (periodic clean-ups); never SQL from a request."""

from __future__ import annotations

import time
from typing import Any

from procrastinate import JobContext
from pydantic import BaseModel, ConfigDict, Field

from taskservice.errors import DatabaseError, ParamRefused
from taskservice.registry import RetryPolicy, task_type
from taskservice.settings import Settings
from taskservice.store import psycopg_driver as pg
from taskservice.worker.failures import DoNotRetry

# SQLSTATEs another attempt may get past: a statement timeout, a serialization
# failure, a deadlock, a lock not available.
_TRANSIENT = frozenset({"57014", "40001", "40P01", "55P03"})


class SqlRunParams(BaseModel):
    """Which configured statement to run."""

    model_config = ConfigDict(extra="forbid")

    statement: str = Field(
        pattern=r"^[A-Za-z0-9_]+$",
        max_length=200,
        examples=["purge_sessions"],
        description="A name: runs TASKSERVICE_SQL_<NAME> (case-insensitive).",
    )


async def _check(params: SqlRunParams, settings: Settings) -> None:
    if params.statement.lower() not in settings.sql_statements:
        raise ParamRefused(
            ("statement",),
            f"no statement named {params.statement.lower()!r} is configured "
            f"(TASKSERVICE_SQL_{params.statement.upper()})",
            "unknown_statement",
        )


@task_type(
    "sql.run",
    params=SqlRunParams,
    retry=RetryPolicy(max_attempts=3, backoff_seconds=10, backoff_factor=3),
    check=_check,
)
async def sql_run(
    params: SqlRunParams, context: JobContext, *, settings: Settings
) -> dict[str, Any]:
    """Run the statement configured as TASKSERVICE_SQL_<NAME> in one transaction
    on the service's database, with the workers' session limits (statement
    timeout); the result is `{"rows_affected", "duration_ms"}`. A statement the
    database refuses fails at once; a timeout, deadlock or lost connection is
    retried."""
    sql = settings.sql_statements[params.statement.lower()]
    started = time.perf_counter()
    try:
        rows = await pg.execute_configured(context.app.connector, sql)
    except DatabaseError as exc:
        if exc.sqlstate in _TRANSIENT:
            raise
        raise DoNotRetry(
            f"statement {params.statement.lower()!r} failed: {exc}",
            details={"sqlstate": exc.sqlstate},
        ) from None
    return {"rows_affected": rows, "duration_ms": round((time.perf_counter() - started) * 1000, 3)}
