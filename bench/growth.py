"""Growth: GET /tasks first page with each filter, and the worker's claim, as the table grows.

One database grows to each size in turn (default 10k, 100k, 1M tasks; written
through Procrastinate's defer function so every trigger runs; a tenth `sleep`,
the rest `echo`). At each size all but the newest 10 % have ended (0.1 % failed,
the rest completed), so the claim has many todo rows. Timed, median of REPEAT:
- the listing through the service layer (the API's pool, SQL and filters), first
  page of 50, for each filter, and a page from a cursor in mid-table;
- `procrastinate_fetch_job_v2` (the worker's claim), rolled back each time.
The peer is the table itself: the largest size against the smallest.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import Databases, Report, Target, connect, fetch, fetchval, median
from taskservice.models.tasks import TaskFilters
from taskservice.services import tasks as service
from taskservice.store import asyncpg_driver as database

REPEAT = 20
TODO_SHARE = 0.10
CHUNK = 100_000


def _cases(size: int) -> dict[str, dict[str, Any]]:
    recent = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    return {
        "GET /tasks, no filter": {},
        "status=completed": {"status": "completed"},
        "status=failed (0.1 %)": {"status": "failed"},
        "status=pending (10 %)": {"status": "pending"},
        "type=sleep (10 %)": {"type": "sleep"},
        "queue=default": {"queue": "default"},
        "created_after=1 h ago": {"created_after": recent},
        "cursor mid-table": {"cursor": str(size // 2)},
    }


async def _grow(url: str, size: int) -> None:
    async with connect(url) as conn:
        have = int(await fetchval(conn, "max_job_id"))
        while have < size:
            count = min(CHUNK, size - have)
            await fetch(conn, "growth_fill", count=count)
            have += count
        await fetch(conn, "growth_finish", upto=int(size * (1 - TODO_SHARE)))
        await fetch(conn, "analyze")


async def _timed(call: Any) -> float:
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return median(times) * 1000


async def _measure(url: str, size: int) -> dict[str, float]:
    found: dict[str, float] = {}
    pool = await database.create_pool(url, max_size=2)
    try:
        for label, params in _cases(size).items():
            filters = TaskFilters.model_validate(params)

            async def listing(filters: TaskFilters = filters) -> None:
                await service.list_tasks(pool=pool, filters=filters)

            found[label] = await _timed(listing)
    finally:
        await pool.close()
    async with connect(url) as conn:

        async def claim() -> None:
            transaction = conn.transaction()
            await transaction.start()
            try:
                if await fetchval(conn, "claim_one", queue="default") is None:
                    raise RuntimeError("claim found no todo job")
            finally:
                await transaction.rollback()

        found["worker claim (fetch_job_v2)"] = await _timed(claim)
    return found


def run(dbs: Databases, *, sizes: list[int]) -> Report:
    sizes = sorted(sizes)
    by_size: dict[int, dict[str, float]] = {}
    fill_seconds: dict[int, float] = {}
    with dbs.fresh("service") as url:
        for size in sizes:
            start = time.monotonic()
            asyncio.run(_grow(url, size))
            fill_seconds[size] = round(time.monotonic() - start, 1)
            by_size[size] = asyncio.run(_measure(url, size))
    small, large = sizes[0], sizes[-1]
    report = Report(
        "growth",
        {"sizes": sizes, "repeat": REPEAT, "todo share": TODO_SHARE, "fill seconds": fill_seconds},
        samples={f"{size} rows, ms": list(found.values()) for size, found in by_size.items()},
    )
    worst, worst_label = 0.0, ""
    for label in by_size[small]:
        for size in sizes[1:-1]:
            report.row(f"{label} @{size:,}", by_size[size][label], "ms")
        ratio = report.row(
            f"{label} @{large:,}", by_size[large][label], "ms", f"@{small:,}", by_size[small][label]
        )
        if ratio is not None and ratio > worst:
            worst = ratio
            worst_label = label
    report.targets.append(
        Target(
            f"{large:,}-row time within 1.5x the {small:,}-row time (worst: {worst_label})",
            worst,
            1.5,
            at_least=False,
        )
    )
    return report
