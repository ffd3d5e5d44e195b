"""GroupSubmitter: submissions arriving together share one statement, and each
keeps its own answer (a taken unique_key fails only its own)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from taskservice.errors import UniqueKeyTaken
from taskservice.models.tasks import TaskCreate, TaskPublic
from taskservice.registry import TaskRegistry
from taskservice.services.submissions import GroupSubmitter
from taskservice.services.tasks import get_task, submit_task
from taskservice.store import asyncpg_driver as db


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    pool = await db.create_pool(database_url, max_size=4)
    yield pool
    await pool.close()


async def _submit(
    pool: db.Pool, registry: TaskRegistry, submitter: GroupSubmitter, **body: object
) -> TaskPublic:
    task, created = await submit_task(
        pool=pool,
        registry=registry,
        request=TaskCreate.model_validate(body),
        submitter=submitter,
    )
    assert created
    return task


async def test_concurrent_submissions_share_statements_and_read_as_stored(
    pool: db.Pool, registry: TaskRegistry
) -> None:
    submitter = GroupSubmitter(pool)
    tasks = await asyncio.gather(
        *(
            _submit(pool, registry, submitter, type="echo", params={"value": n}, priority=n)
            for n in range(40)
        )
    )
    await submitter.close()
    assert [t.params for t in tasks] == [{"value": n} for n in range(40)]
    assert [t.priority for t in tasks] == list(range(40))
    assert len({t.id for t in tasks}) == 40
    # One statement, one transaction: the same now() for all its tasks.
    assert len({t.created_at for t in tasks}) < 40
    for task in tasks[:5]:
        assert await get_task(pool=pool, task_id=task.id) == task


async def test_a_taken_unique_key_fails_only_its_own_submission(
    pool: db.Pool, registry: TaskRegistry
) -> None:
    submitter = GroupSubmitter(pool)
    holder = await _submit(
        pool, registry, submitter, type="echo", params={"value": 0}, unique_key="only-one"
    )
    results = await asyncio.gather(
        *(
            _submit(
                pool,
                registry,
                submitter,
                type="echo",
                params={"value": n},
                unique_key="only-one" if n == 5 else None,
            )
            for n in range(1, 11)
        ),
        return_exceptions=True,
    )
    await submitter.close()
    refused = results.pop(4)
    assert isinstance(refused, UniqueKeyTaken)
    assert refused.task_id == holder.id
    assert all(isinstance(r, TaskPublic) for r in results)
