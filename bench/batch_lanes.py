"""What batch.map's lanes cost Procrastinate's fetch: one fetch while N items wait.

batch.map gives item n the lock `batch.map:<task>:<n % concurrency>`. While every
lane's head runs, a fetch on that queue walks all N waiting items (each tested
against its lock) before it finds nothing, or a job queued after them
(procrastinate#1242). Peer, in the same run: the same N jobs without locks.

    python -m bench.batch_lanes 1000 10000   # item counts; 4 lanes
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import asyncpg

from bench.harness import Databases, median, server_url
from taskservice.store.queries import query

LANES = 4
FETCHES = 20
_NEW_WORKER = "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
_FETCH = "SELECT id FROM procrastinate_fetch_job_v2(ARRAY['default'], $1)"


async def _fetch_ms(url: str, items: int, locked: bool) -> float:
    conn = await asyncpg.connect(url)
    try:
        tasks = [
            {
                "queue": "default",
                "type": "item",
                "priority": 0,
                "unique_key": None,
                "lock": f"batch.map:1:{n % LANES}" if locked else None,
                "args": {"value": n},
                "run_at": None,
                "delay_seconds": None,
            }
            for n in range(items)
        ]
        await conn.execute(query("defer_tasks").asyncpg_text, json.dumps(tasks))
        await conn.execute("ANALYZE procrastinate_jobs")
        worker = await conn.fetchval(
            "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"
        )
        for _ in range(LANES):  # each lane's head runs
            await conn.fetchval(_FETCH, worker)
        times = []
        for _ in range(FETCHES):
            tr = conn.transaction()
            await tr.start()
            started = time.perf_counter()
            await conn.fetchval(_FETCH, worker)
            times.append((time.perf_counter() - started) * 1000)
            await tr.rollback()  # what the unlocked fetch took goes back
        return median(times)
    finally:
        await conn.close()


def main(counts: list[int]) -> None:
    databases = Databases(server_url())
    try:
        for items in counts:
            with databases.fresh("service") as url:
                locked = asyncio.run(_fetch_ms(url, items, locked=True))
            with databases.fresh("service") as url:
                free = asyncio.run(_fetch_ms(url, items, locked=False))
            print(
                f"{items} items waiting, {LANES} lanes running: one fetch {locked:.2f} ms "
                f"(peer, no locks: {free:.2f} ms)"
            )
    finally:
        databases.close()


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [1000, 10000])
