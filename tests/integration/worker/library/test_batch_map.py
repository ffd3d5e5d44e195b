"""batch.map through the real path: submitted over the API, run by a real worker,
its items as the tasks of one batch, summed up in its result."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from taskservice.registry import TaskRegistry, load_registry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status
from tests.live_api import serving

pytestmark = pytest.mark.anyio  # at collection: parametrized async tests need it then

MODULES = ["tests.task_types", "tests.batch_task_types"]
# Procrastinate's own announcement of a job to fetch.
WAKE = """SELECT pg_notify('procrastinate_any_queue_v1',
    json_build_object('type', 'job_inserted', 'job_id', $1::bigint)::text)"""
RESCUE_NOW = """SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(
    'taskservice', 'taskservice.rescue_stalled_jobs', 0, NULL, NULL, '{"timestamp": 0}', NULL
)::procrastinate_job_to_defer_v1]))[1]"""
ITEM_JOBS = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'item'"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    (tmp_path / "files").mkdir()
    return Settings(
        database_url=database_url,
        data_dir=tmp_path,
        migrate_on_start=False,
        poll_interval=0.2,
        concurrency=6,
        api_pool_size=4,
        shutdown_grace_seconds=5,
        metrics_port=None,
        task_modules=MODULES,
        files_root=tmp_path / "files",
        http_allowed_hosts=["127.0.0.1"],
        batch_map_max_items=50,
    )


@pytest.fixture
def registry() -> TaskRegistry:
    return load_registry(MODULES)


def _items(*values: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"value": v, **extra} for v in values]


async def _children(client: httpx.AsyncClient, batch_id: int) -> list[dict[str, Any]]:
    page = (await client.get("/tasks", params={"batch_id": batch_id, "limit": 100})).json()
    children: list[dict[str, Any]] = page["items"]
    return sorted(children, key=lambda task: task["id"])


async def test_items_run_as_the_tasks_of_one_batch_and_are_summed_up(
    client: httpx.AsyncClient, worker: None
) -> None:
    items = _items(0, 1, 2, 3, 4, 5)
    items[1]["fail"] = items[4]["fail"] = True
    parent = await submit(
        client, type="batch.map", params={"type": "item", "items": items, "concurrency": 2}
    )
    done = await wait_for_status(client, parent["id"], "completed", "failed", within=20)
    assert done["status"] == "completed", done
    result = done["result"]
    batch_id = result["batch_id"]
    assert (result["total"], result["completed"], result["failed"]) == (6, 4, 2)
    assert [f["index"] for f in result["failures"]] == [1, 4]
    assert result["failures"][0]["error"]["type"] == "ItemFailed"
    assert result["failures"][0]["error"]["message"] == "item 1 failed on purpose"
    assert result["failures_omitted"] == 0
    assert done["progress"]["fraction"] == 1.0

    children = await _children(client, batch_id)
    assert [c["params"] for c in children] == items
    statuses = ["completed", "failed", "completed", "completed", "failed", "completed"]
    assert [c["status"] for c in children] == statuses
    assert children[0]["result"] == {"doubled": 0}
    batch = (await client.get(f"/batches/{batch_id}")).json()
    assert (batch["total"], batch["completed"], batch["failed"], batch["done"]) == (6, 4, 2, True)
    assert batch["parent_id"] == parent["id"]
    # The parent's waiting run is not charged to its attempts.
    assert done["attempts"] == 1


async def test_no_more_than_concurrency_items_run_at_once(
    client: httpx.AsyncClient, worker: None, db: asyncpg.Connection
) -> None:
    parent = await submit(
        client,
        type="batch.map",
        params={"type": "item", "items": _items(*range(9), seconds=0.2), "concurrency": 3},
    )
    done = await wait_for_status(client, parent["id"], "completed", within=30)
    assert done["result"]["completed"] == 9
    # From the database's own start and end of each run: the most running at once.
    most = await db.fetchval(
        """
        WITH runs AS (
            SELECT r.started_at AS at, 1 AS delta FROM taskservice.task_records AS r
            WHERE r.batch_id = $1
            UNION ALL
            SELECT r.finished_at, -1 FROM taskservice.task_records AS r WHERE r.batch_id = $1
        )
        SELECT max(running) FROM (
            SELECT sum(delta) OVER (ORDER BY at, delta) AS running FROM runs
        ) AS s
        """,
        done["result"]["batch_id"],
    )
    # At most 3 (the worker has 6 slots); more than 1, or the lanes did not run side by side.
    assert 2 <= most <= 3


async def test_a_worker_of_concurrency_1_finishes_a_batch_map(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry
) -> None:
    """The parent waits on no worker: the one slot is free for its items."""
    one = settings.model_copy(update={"concurrency": 1})
    async with running_worker(one, registry):
        parent = await submit(
            client,
            type="batch.map",
            params={"type": "item", "items": _items(1, 2, 3), "concurrency": 2},
        )
        done = await wait_for_status(client, parent["id"], "completed", "failed", within=20)
    assert done["status"] == "completed", done
    assert done["result"]["completed"] == 3


async def test_a_second_run_of_the_parent_defers_nothing_again(
    client: httpx.AsyncClient, worker: None, db: asyncpg.Connection
) -> None:
    parent = await submit(
        client, type="batch.map", params={"type": "item", "items": _items(1, 2, 3, 4)}
    )
    first = await wait_for_status(client, parent["id"], "completed", within=20)
    # What a rescue does to a task whose worker died: back to the queue.
    await db.execute(
        "UPDATE procrastinate_jobs SET status = 'todo', scheduled_at = now() WHERE id = $1",
        parent["id"],
    )
    await db.execute(WAKE, parent["id"])
    again = await wait_for_status(client, parent["id"], "completed", within=20)
    assert again["result"] == first["result"]
    assert await db.fetchval("SELECT count(*) FROM taskservice.batches") == 1
    assert await db.fetchval(ITEM_JOBS) == 4


async def test_a_parent_rerun_while_waiting_finds_its_batch(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry, db: asyncpg.Connection
) -> None:
    """Its worker lost while the items wait (no worker serves their queue):
    the next run finds the batch, defers nothing, and waits again."""
    parent = await submit(
        client,
        type="batch.map",
        queue="maps",
        params={"type": "item", "items": _items(1, 2, 3), "queue": "items"},
    )
    only_maps = settings.model_copy(update={"queues": ["maps"]})
    async with running_worker(only_maps, registry):
        await _until(db, "SELECT count(*) = 3 FROM procrastinate_jobs WHERE task_name = 'item'")
        await _until(
            db,
            "SELECT worker_id IS NULL FROM procrastinate_jobs WHERE id = $1",
            parent["id"],
        )
        waiting = (await client.get(f"/tasks/{parent['id']}")).json()
        assert waiting["status"] == "in_progress"
        # `doing` on no worker looks stalled to Procrastinate; the rescue knows better.
        rescue = await db.fetchval(RESCUE_NOW)
        await _until(
            db, "SELECT status = 'succeeded' FROM procrastinate_jobs WHERE id = $1", rescue
        )
        assert await db.fetchval(
            "SELECT status = 'doing' AND worker_id IS NULL AND attempts = 0"
            " FROM procrastinate_jobs WHERE id = $1",
            parent["id"],
        )
        await db.execute(
            "UPDATE procrastinate_jobs SET status = 'todo', scheduled_at = now() WHERE id = $1",
            parent["id"],
        )
        await db.execute(WAKE, parent["id"])
        await _until(
            db,
            "SELECT status = 'doing' AND worker_id IS NULL FROM procrastinate_jobs WHERE id = $1",
            parent["id"],
        )
    assert await db.fetchval(ITEM_JOBS) == 3
    # The items' queue gets a worker: the last item wakes the parent.
    async with running_worker(settings, registry):
        done = await wait_for_status(client, parent["id"], "completed", within=20)
    assert done["result"]["completed"] == 3


async def _until(db: asyncpg.Connection, query: str, *args: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await db.fetchval(query, *args):
        assert time.monotonic() < deadline, f"never true: {query}"
        await asyncio.sleep(0.05)


async def test_cancelling_the_parent_cancels_its_items(
    client: httpx.AsyncClient, worker: None, db: asyncpg.Connection
) -> None:
    parent = await submit(
        client,
        type="batch.map",
        params={"type": "item", "items": _items(1, 2, 3, 4, seconds=30), "concurrency": 1},
    )
    await _until(
        db,
        "SELECT count(*) = 1 FROM procrastinate_jobs WHERE task_name = 'item' AND status = 'doing'",
    )
    await _until(db, "SELECT worker_id IS NULL FROM procrastinate_jobs WHERE id = $1", parent["id"])
    response = await client.delete(f"/tasks/{parent['id']}")
    assert response.status_code == 202, response.text
    done = await wait_for_status(client, parent["id"], "cancelled", within=15)
    assert done["error"]["type"] == "aborted"
    statuses = await db.fetch(
        "SELECT status::text FROM procrastinate_jobs WHERE task_name = 'item' ORDER BY id"
    )
    assert [row["status"] for row in statuses] == ["aborted", "cancelled", "cancelled", "cancelled"]


async def test_a_file_source_of_json_lines(
    client: httpx.AsyncClient, worker: None, settings: Settings
) -> None:
    assert settings.files_root is not None
    lines = [
        json.dumps({"value": 1}),
        "{not json",
        "",  # blank lines are skipped, not counted
        json.dumps({"value": "2"}),  # strict as JSON: a string is not an integer
        json.dumps({"value": -3}),  # the item type's own check refuses it
        json.dumps({"value": 4, "fail": True}),
        json.dumps({"value": 5}),
    ]
    (settings.files_root / "items.jsonl").write_text("\n".join(lines) + "\n")
    parent = await submit(
        client, type="batch.map", params={"type": "item", "source": "file:items.jsonl"}
    )
    done = await wait_for_status(client, parent["id"], "completed", "failed", within=20)
    assert done["status"] == "completed", done
    result = done["result"]
    assert (result["total"], result["completed"], result["failed"]) == (6, 2, 4)
    failures = {f["index"]: f["error"] for f in result["failures"]}
    assert sorted(failures) == [1, 2, 3, 4]
    assert failures[1]["type"] == "invalid_record"
    assert failures[2]["message"].startswith("value: ")
    assert failures[3] == {"type": "value_refused", "message": "value: must not be negative"}
    assert failures[4]["type"] == "ItemFailed"


async def test_a_file_source_of_csv(
    client: httpx.AsyncClient, worker: None, settings: Settings
) -> None:
    assert settings.files_root is not None
    (settings.files_root / "in").mkdir()
    (settings.files_root / "in" / "items.csv").write_text(
        "value,fail\n1,\n2,true\nthree,\n4,,extra\n5,false\n"
    )
    parent = await submit(
        client, type="batch.map", params={"type": "item", "source": "file:in/items.csv"}
    )
    done = await wait_for_status(client, parent["id"], "completed", "failed", within=20)
    assert done["status"] == "completed", done
    result = done["result"]
    assert (result["total"], result["completed"], result["failed"]) == (5, 2, 3)
    assert [f["index"] for f in result["failures"]] == [1, 2, 3]
    children = await _children(client, result["batch_id"])
    # Cells are read as the params' types.
    assert [c["params"] for c in children] == [
        {"value": 1},
        {"value": 2, "fail": True},
        {"value": 5, "fail": False},
    ]


async def test_an_http_source(client: httpx.AsyncClient, worker: None) -> None:
    app = FastAPI()

    @app.get("/items.jsonl")
    async def items() -> PlainTextResponse:
        return PlainTextResponse("\n".join(json.dumps({"value": v}) for v in range(3)))

    async with serving(app) as base:
        parent = await submit(
            client, type="batch.map", params={"type": "item", "source": f"{base}/items.jsonl"}
        )
        done = await wait_for_status(client, parent["id"], "completed", "failed", within=20)
    assert done["status"] == "completed", done
    assert done["result"]["completed"] == 3


async def test_a_source_that_cannot_be_read_fails_without_retry(
    client: httpx.AsyncClient, worker: None
) -> None:
    parent = await submit(
        client, type="batch.map", params={"type": "item", "source": "file:missing.jsonl"}
    )
    done = await wait_for_status(client, parent["id"], "failed", within=20)
    assert done["error"]["type"] == "DoNotRetry"
    assert done["attempts"] == 1


async def test_too_many_source_records_fail_before_any_item_runs(
    client: httpx.AsyncClient, worker: None, settings: Settings, db: asyncpg.Connection
) -> None:
    assert settings.files_root is not None
    lines = [json.dumps({"value": v}) for v in range(settings.batch_map_max_items + 1)]
    (settings.files_root / "big.jsonl").write_text("\n".join(lines))
    parent = await submit(
        client, type="batch.map", params={"type": "item", "source": "file:big.jsonl"}
    )
    done = await wait_for_status(client, parent["id"], "failed", within=20)
    assert "TASKSERVICE_BATCH_MAP_MAX_ITEMS" in done["error"]["message"]
    assert await db.fetchval(ITEM_JOBS) == 0


@pytest.mark.parametrize(
    ("params", "loc", "kind"),
    [
        (
            {"type": "item", "items": [{"value": 1}, {"value": "x"}]},
            ["items", 1, "value"],
            "int_type",
        ),
        ({"type": "item", "items": [{"value": 1}, {"valu": 2}]}, ["items", 1, "value"], "missing"),
        ({"type": "item", "items": [{"value": 1}, {"value": -1}]}, ["items", 1, "value"], None),
        ({"type": "nope", "items": [{"value": 1}]}, ["type"], "unknown_task_type"),
        ({"type": "batch.map", "items": [{"type": "item"}]}, ["type"], "nested_batch_map"),
        (
            {"type": "taskservice.rescue_stalled_jobs", "items": [{}]},
            ["type"],
            "unknown_task_type",
        ),
        ({"type": "item", "items": [{"value": 1}] * 51}, ["items"], "too_long"),
        ({"type": "item", "source": "file:../outside.jsonl"}, ["source"], "path_refused"),
        ({"type": "item", "source": "http://10.1.2.3/a.jsonl"}, ["source"], None),
        ({"type": "item", "source": "file:items.txt"}, ["format"], "format_unknown"),
    ],
)
async def test_refused_at_submission(
    client: httpx.AsyncClient, params: dict[str, Any], loc: list[Any], kind: str | None
) -> None:
    response = await client.post("/tasks", json={"type": "batch.map", "params": params})
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "params", *loc], error
    if kind is not None:
        assert error["type"] == kind


async def test_items_and_source_together_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/tasks",
        json={
            "type": "batch.map",
            "params": {"type": "item", "items": [{"value": 1}], "source": "file:a.jsonl"},
        },
    )
    assert response.status_code == 422
    assert "either `items` or `source`" in response.text


async def test_a_symlink_out_of_the_root_is_refused(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    assert settings.files_root is not None
    (tmp_path / "secret.jsonl").write_text("{}")
    (settings.files_root / "link.jsonl").symlink_to(tmp_path / "secret.jsonl")
    response = await client.post(
        "/tasks",
        json={"type": "batch.map", "params": {"type": "item", "source": "file:link.jsonl"}},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "params", "source"]


async def test_a_source_over_the_size_limit_fails_before_any_item_runs(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry, db: asyncpg.Connection
) -> None:
    assert settings.files_root is not None
    (settings.files_root / "items.jsonl").write_text('{"value": 1}\n{"value": 2}\n')
    small = settings.model_copy(update={"batch_map_max_source_bytes": 20})
    async with running_worker(small, registry):
        parent = await submit(
            client, type="batch.map", params={"type": "item", "source": "file:items.jsonl"}
        )
        done = await wait_for_status(client, parent["id"], "failed", within=20)
    assert "larger than 20 bytes" in done["error"]["message"]
    assert done["attempts"] == 1
    assert await db.fetchval(ITEM_JOBS) == 0
