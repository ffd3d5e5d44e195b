"""Growth: GET /tasks first page with each filter, and the worker's claim, as the table grows.

Each size (default 10k, 100k, 1M tasks) gets its own database, a copy of the
one before grown to it (written through Procrastinate's defer function so every
trigger runs; a tenth `sleep`, the rest `echo`); then the sizes are measured in
turn, round after round, so that load from others on the machine hits them
alike. At each size all but the newest 10 % have ended (0.1 % failed, and at
least a page of them at 10k; the rest completed), so the claim has many todo
rows. Timed (median over the rounds of the median of REPEAT calls):
- the listing through the service layer (the API's pool, SQL and filters), first
  page of 50, for each filter, and a page from a cursor in mid-table;
- `taskservice.claim_jobs_v1` (the worker's claim, 4 jobs), rolled back each time.
The peer is the table itself: the largest size against the smallest.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import Databases, Report, Target, connect, fetch, fetchval, median
from taskservice.models.tasks import TaskFilters
from taskservice.services import tasks as service
from taskservice.settings import Settings
from taskservice.store import asyncpg_driver as database

REPEAT = 5  # per round; a figure is the median over rounds of the median of REPEAT
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
        await fetch(conn, "vacuum_analyze")


async def _timed(call: Any) -> float:
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return median(times) * 1000


# The API's default page budget (TASKSERVICE_LIST_PAGE_BYTES).
PAGE_BYTES: int = Settings.model_fields["list_page_bytes"].default


async def _measure(url: str, size: int) -> dict[str, float]:
    found: dict[str, float] = {}
    pool = await database.create_pool(url, max_size=2)
    try:
        for label, params in _cases(size).items():
            filters = TaskFilters.model_validate(params)

            async def listing(filters: TaskFilters = filters) -> None:
                await service.list_tasks(pool=pool, filters=filters, page_bytes=PAGE_BYTES)

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

        found["worker claim (claim_jobs_v1, 4 jobs)"] = await _timed(claim)
    return found


def run(dbs: Databases, *, sizes: list[int], rounds: int = 5) -> Report:
    sizes = sorted(sizes)
    fill_seconds: dict[int, float] = {}
    samples: dict[int, dict[str, list[float]]] = {size: {} for size in sizes}
    with contextlib.ExitStack() as stack:
        urls: dict[int, str] = {}
        previous: str | None = None
        for size in sizes:  # each size a copy of the one before, grown
            urls[size] = previous = stack.enter_context(dbs.fresh("service", copy_of=previous))
            start = time.monotonic()
            asyncio.run(_grow(previous, size))
            fill_seconds[size] = round(time.monotonic() - start, 1)
        for _ in range(rounds):  # sizes in turn, so that load from others hits all alike
            for size in sizes:
                for label, value in asyncio.run(_measure(urls[size], size)).items():
                    samples[size].setdefault(label, []).append(value)
    by_size = {size: {k: median(v) for k, v in found.items()} for size, found in samples.items()}
    small, large = sizes[0], sizes[-1]
    report = Report(
        "growth",
        {
            "sizes": sizes,
            "rounds": rounds,
            "repeat": REPEAT,
            "todo share": TODO_SHARE,
            "fill seconds": fill_seconds,
        },
        samples={f"{size} {label} ms": v for size, f in samples.items() for label, v in f.items()},
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
