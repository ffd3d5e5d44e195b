"""The `batch.map` task type: runs a task type over many items, as the tasks of one batch."""

from __future__ import annotations

import functools
import json
from typing import Any

import procrastinate
import pydantic
from procrastinate import JobContext
from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskservice.errors import ParamRefused
from taskservice.job_options import OPTIONS_KEY, job_options, options_for
from taskservice.models.tasks import QueueName
from taskservice.registry import RESERVED_PREFIX, RetryPolicy, TaskType, load_registry, task_type
from taskservice.settings import Settings
from taskservice.store import psycopg_driver as pg
from taskservice.worker.failures import DoNotRetry
from taskservice.worker.library.batch_source import (
    SourceFormat,
    check_source,
    read_source,
    records,
    source_format,
)
from taskservice.worker.progress import report_progress
from taskservice.worker.waiting import WaitForBatch

NAME = "batch.map"
# The longest `failures` list a result holds; `failures_omitted` counts the rest.
MAX_FAILURES_LISTED = 100


class BatchMapParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200, description="The task type of each item.")
    items: list[dict[str, Any]] | None = Field(
        default=None,
        min_length=1,
        description="Each item's params (checked against `type` at submission). "
        "At most TASKSERVICE_BATCH_MAP_MAX_ITEMS.",
    )
    source: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="Instead of `items`: an http(s):// URL (TASKSERVICE_HTTP_ALLOWED_HOSTS) "
        "or a `file:` path under TASKSERVICE_FILES_ROOT, holding JSON lines (one params "
        "object a line) or CSV (a header row of param names). Read when the task runs; "
        "a bad record becomes a failure with its index.",
    )
    format: SourceFormat | None = Field(
        default=None, description="jsonl or csv; by default from the source's name."
    )
    concurrency: int = Field(
        default=4, ge=1, le=1000, description="How many items run at once, at most."
    )
    queue: QueueName | None = Field(
        default=None, description="The items' queue; by default the batch.map's own."
    )

    @model_validator(mode="after")
    def _one_of_items_or_source(self) -> BatchMapParams:
        if (self.items is None) == (self.source is None):
            raise ValueError("give either `items` or `source`, not both")
        if self.format is not None and self.source is None:
            raise ValueError("`format` goes with `source`")
        return self


@functools.cache
def _registry(modules: tuple[str, ...]) -> dict[str, TaskType]:
    return dict(load_registry(modules))


def child_type(name: str, settings: Settings) -> TaskType:
    """The task type the items run as: one this deployment registers
    (TASKSERVICE_TASK_MODULES), not the service's own, not batch.map itself."""
    types = _registry(tuple(settings.task_modules))
    if name == NAME:
        raise ParamRefused(("type",), "batch.map cannot run batch.map items", "nested_batch_map")
    if name.startswith(RESERVED_PREFIX) or name not in types:
        known = ", ".join(sorted(n for n in types if not n.startswith(RESERVED_PREFIX)))
        raise ParamRefused(
            ("type",), f"unknown task type {name!r}; known types: {known}", "unknown_task_type"
        )
    return types[name]


async def _item_params(
    child: TaskType, item: dict[str, Any], settings: Settings, *, strict: bool
) -> dict[str, Any]:
    """The item's params as its task gets them, or ParamRefused at the item's
    field. Strict as JSON (what the type's schema says), except CSV cells, which
    are all text and are read as the field's type."""
    if OPTIONS_KEY in item:
        raise ParamRefused((OPTIONS_KEY,), f"{OPTIONS_KEY!r} is reserved", "reserved_param")
    try:
        if strict:
            model = child.params_model.model_validate_json(json.dumps(item), strict=True)
        else:
            model = child.params_model.model_validate(item)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise ParamRefused(tuple(first["loc"]), first["msg"], first["type"]) from exc
    if child.check is not None:
        await child.check(model, settings)
    return item if strict else model.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _at_item(index: int, exc: ParamRefused) -> ParamRefused:
    return ParamRefused(("items", index, *exc.loc), str(exc), exc.kind)


async def check_batch_map(params: BatchMapParams, settings: Settings) -> None:
    """At submission (and before each run): the type exists and may be mapped,
    each item is valid params for it and passes its own check, and the source
    is one the deployment allows."""
    child = child_type(params.type, settings)
    if params.items is not None:
        limit = settings.batch_map_max_items
        if len(params.items) > limit:
            raise ParamRefused(
                ("items",),
                f"at most {limit} items (TASKSERVICE_BATCH_MAP_MAX_ITEMS)",
                "too_long",
            )
        for index, item in enumerate(params.items):
            try:
                await _item_params(child, item, settings, strict=True)
            except ParamRefused as exc:
                raise _at_item(index, exc) from exc
    else:
        assert params.source is not None
        source_format(params.source, params.format)
        await check_source(params.source, settings)


@task_type(
    NAME,
    params=BatchMapParams,
    retry=RetryPolicy(max_attempts=3, backoff_seconds=5.0),
    check=check_batch_map,
)
async def batch_map(
    params: BatchMapParams, context: JobContext, *, settings: Settings
) -> dict[str, Any] | WaitForBatch:
    """Run task type `type` once per item of `items` (or record of `source`), as
    the tasks of one batch, at most `concurrency` at a time; wait for them
    without holding a worker, and end with `{"batch_id", "total", "completed",
    "failed", "failures": [{"index", "error"}], "failures_omitted"}`.
    Cancelling it cancels the batch's pending tasks and stops its running ones."""
    connector = context.app.connector
    assert isinstance(connector, procrastinate.PsycopgConnector)
    job = context.job
    assert job.id is not None
    batch = await _batch_of(connector, job.id)
    if batch is None:
        child = child_type(params.type, settings)
        items, refused = await _items(params, child, settings)
        if not items:
            return _summary(None, len(refused), refused, {"completed": 0, "failed": 0})
        batch = await _defer_children(connector, context, params, child, items, refused)
        report_progress(context, 0.0, f"0 of {batch['total']} items ended")
    if batch["done_at"] is None:
        return WaitForBatch(batch["id"])
    (outcome,) = await pg.fetch_all(
        connector, "map_batch_outcome", batch_id=batch["id"], limit=MAX_FAILURES_LISTED
    )
    return _summary(batch["id"], batch["refused_count"], batch["refused"] or [], outcome)


async def _items(
    params: BatchMapParams, child: TaskType, settings: Settings
) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]]]:
    """The items to run, with their indexes, and the records refused (all of
    them: the caller keeps the first MAX_FAILURES_LISTED)."""
    if params.items is not None:  # checked before the run
        return list(enumerate(params.items)), []
    assert params.source is not None
    fmt = source_format(params.source, params.format)
    data = await read_source(params.source, settings)
    items: list[tuple[int, dict[str, Any]]] = []
    refused: list[dict[str, Any]] = []
    limit = settings.batch_map_max_items
    for record in records(data, fmt):
        if record.index >= limit:
            raise DoNotRetry(
                f"the source holds more than {limit} records (TASKSERVICE_BATCH_MAP_MAX_ITEMS)"
            )
        if record.fields is None:
            refused.append(_refusal(record.index, "invalid_record", record.error or ""))
            continue
        try:
            fields = await _item_params(child, record.fields, settings, strict=fmt == "jsonl")
        except ParamRefused as exc:
            where = ".".join(str(part) for part in exc.loc)
            message = f"{where}: {exc}" if where else str(exc)
            refused.append(_refusal(record.index, exc.kind, message))
            continue
        items.append((record.index, fields))
    return items, refused


def _refusal(index: int, kind: str, message: str) -> dict[str, Any]:
    return {"index": index, "error": {"type": kind, "message": message}}


async def _defer_children(
    connector: procrastinate.PsycopgConnector,
    context: JobContext,
    params: BatchMapParams,
    child: TaskType,
    items: list[tuple[int, dict[str, Any]]],
    refused: list[dict[str, Any]],
) -> dict[str, Any]:
    """The batch and all its tasks, in one transaction; or, if another run of
    this task made them first, that batch (nothing is deferred twice).

    Item n (in order) gets the Procrastinate lock `batch.map:<task>:<n %
    concurrency>`: Procrastinate runs the tasks of one lock one at a time, in
    order, so at most `concurrency` run at once, and waiting ones hold no worker."""
    job = context.job
    assert job.id is not None
    job_id = job.id
    owner = job_options(job).get("owner")
    owner = owner if isinstance(owner, int) else None
    async with connector.pool.connection() as conn, conn.transaction():
        claimed = await pg.fetch(
            conn,
            "claim_map_batch",
            job_id=job.id,
            total=len(items),
            owner=owner,
            refused_count=len(refused),
            refused=refused[:MAX_FAILURES_LISTED],
        )
        if claimed:
            batch_id = claimed[0]["id"]
            tasks = [
                {
                    "queue": params.queue or job.queue,
                    "type": child.name,
                    "priority": job.priority,
                    "unique_key": None,
                    "lock": f"{NAME}:{job.id}:{n % params.concurrency}",
                    "args": {
                        **fields,
                        OPTIONS_KEY: {
                            **options_for(child, owner=owner),
                            "batch_id": batch_id,
                            "batch_index": index,
                        },
                    },
                    "run_at": None,
                    "delay_seconds": None,
                }
                for n, (index, fields) in enumerate(items)
            ]
            await pg.fetch(conn, "defer_tasks", tasks=tasks)
    batch = await _batch_of(connector, job_id)
    assert batch is not None
    return batch


async def _batch_of(
    connector: procrastinate.PsycopgConnector, job_id: int
) -> dict[str, Any] | None:
    rows = await pg.fetch_all(connector, "get_map_batch", job_id=job_id)
    return rows[0] if rows else None


def _summary(
    batch_id: int | None,
    refused_count: int,
    refused: list[dict[str, Any]],
    outcome: dict[str, Any],
) -> dict[str, Any]:
    failures = sorted([*refused, *outcome.get("failures", [])], key=lambda f: int(f["index"]))
    listed = failures[:MAX_FAILURES_LISTED]
    failed = int(outcome["failed"]) + refused_count
    return {
        "batch_id": batch_id,
        "total": int(outcome["completed"]) + failed,
        "completed": int(outcome["completed"]),
        "failed": failed,
        "failures": listed,
        "failures_omitted": failed - len(listed),
    }
