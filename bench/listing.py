"""GET /tasks at depth: time the listing query on a table of many finished tasks.

Fills a fresh database with N tasks (default 200,000: 99.4 % completed, 0.1 %
failed, the newest 0.5 % pending; a tenth of them `sleep`, the rest `echo`),
then times the first page and a deep page for each common filter through the
service layer (the same asyncpg pool and SQL as the API).

Usage: python -m bench.listing [--tasks 200000] [--repeat 20]
(DATABASE_URL: a server to create the bench database on; default
postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from bench.latency import _fresh_database
from taskservice.models.tasks import TaskFilters
from taskservice.services import tasks as service
from taskservice.settings import Settings
from taskservice.store import asyncpg_driver as database
from taskservice.store.migrate import migrate

FILL = """
SELECT count(*) FROM unnest(procrastinate_defer_jobs_v1(ARRAY(
    SELECT ROW('default', CASE WHEN g % 10 = 0 THEN 'sleep' ELSE 'echo' END, 0, NULL, NULL,
               jsonb_build_object('value', g), NULL)::procrastinate_job_to_defer_v1
    FROM generate_series(1, $1) AS g
)));
"""
FINISH = """
UPDATE procrastinate_jobs SET status = CASE
    WHEN id % 1000 = 0 THEN 'failed'::procrastinate_job_status
    WHEN id > $1 * 0.995 THEN 'todo'
    ELSE 'succeeded' END;
"""


async def _measure(url: str, tasks: int, repeat: int) -> None:
    pool = await database.create_pool(url, max_size=2, acquire_timeout=30, command_timeout=300)
    try:
        async with pool.acquire() as conn:
            await conn.fetchval(FILL, tasks)
            await conn.execute(FINISH, tasks)
            await conn.execute("ANALYZE")
        deep = str(tasks // 2)
        cases = {
            "no filter": {},
            "status=completed": {"status": "completed"},
            "status=failed (0.1 %)": {"status": "failed"},
            "status=pending": {"status": "pending"},
            "type=sleep": {"type": "sleep"},
            "no filter, cursor mid-table": {"cursor": deep},
            "status=failed, cursor mid-table": {"status": "failed", "cursor": deep},
        }
        page_bytes: int = Settings.model_fields["list_page_bytes"].default
        print(f"GET /tasks (limit 50) on {tasks:,} tasks, median of {repeat}:")
        for label, params in cases.items():
            filters = TaskFilters.model_validate(params)
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                await service.list_tasks(pool=pool, filters=filters, page_bytes=page_bytes)
                times.append(time.perf_counter() - start)
            print(f"  {label:34} {statistics.median(times) * 1000:7.2f} ms")
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with _fresh_database(server) as url:
        asyncio.run(migrate(url))
        asyncio.run(_measure(url, args.tasks, args.repeat))


if __name__ == "__main__":
    main()
