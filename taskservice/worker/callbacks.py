"""Delivers completion webhooks: the job the status trigger defers when a task (or batch) ends."""

from __future__ import annotations

import logging
from typing import Any

import procrastinate
from procrastinate import JobContext

from taskservice.models.batches import BatchPublic
from taskservice.models.tasks import TaskPublic
from taskservice.registry import INTERNAL_QUEUE, RetryPolicy
from taskservice.services.callbacks import (
    SIGNATURE_HEADER,
    CallbackRefused,
    check_callback_url,
    sign,
)
from taskservice.settings import Settings
from taskservice.store import psycopg_driver as pg
from taskservice.worker.retry import ServiceRetryStrategy

logger = logging.getLogger(__name__)

# The name the status trigger defers (sql/schema.sql).
DELIVER_TASK = "taskservice.deliver_callback"
DELIVERY_HEADER = "Taskservice-Delivery"


class CallbackFailed(Exception):
    """A delivery worth another try: connection error, timeout, 5xx or 429."""


class CallbackRejected(Exception):
    """A delivery not worth retrying: the receiver answered 4xx, or the URL is refused."""


def delivery_policy(settings: Settings) -> RetryPolicy:
    """Retries with backoff on CallbackFailed only; by default 8 attempts over ~10 minutes."""
    return RetryPolicy(
        max_attempts=settings.callback_max_attempts,
        max_attempts_limit=max(settings.callback_max_attempts, 10),
        backoff_seconds=settings.callback_backoff_seconds,
        backoff_factor=2.0,
        max_backoff_seconds=300.0,
        retry_on=(CallbackFailed,),
    )


async def _payload(
    connector: procrastinate.BaseConnector, task_id: int | None, batch_id: int | None
) -> tuple[str | None, bytes, str]:
    """The URL, the JSON body and the event name of a delivery."""
    if task_id is not None:
        row = await pg.fetchrow(connector, "get_task_callback", task_id=task_id)
        if row is None:
            return None, b"", ""
        body = TaskPublic.model_validate(row).model_dump_json().encode()
        return row["callback_url"], body, "task.finished"
    url = await pg.fetchrow(connector, "get_batch_callback", batch_id=batch_id)
    row = await pg.fetchrow(connector, "get_batch", batch_id=batch_id, owner=None)
    if url is None or row is None:
        return None, b"", ""
    batch = BatchPublic.model_validate({**row, "done": row["done_at"] is not None})
    return url["callback_url"], batch.model_dump_json().encode(), "batch.finished"


def register_callbacks(app: procrastinate.App, settings: Settings) -> None:
    """Add the delivery job to `app`. Each attempt's outcome is written to the
    task's (or batch's) `callback`: delivered, retrying (another attempt will
    follow) or failed."""
    policy = delivery_policy(settings)
    secret = settings.callback_secret.get_secret_value() if settings.callback_secret else None
    allowed = list(settings.callback_allowed_hosts)

    @app.task(
        name=DELIVER_TASK,
        queue=INTERNAL_QUEUE,
        pass_context=True,
        retry=ServiceRetryStrategy(policy),
    )
    async def deliver_callback(
        context: JobContext, task_id: int | None = None, batch_id: int | None = None
    ) -> dict[str, Any]:
        # Imported here: importing httpx pulls in rich and pygments when they are
        # installed (its CLI), which the image does not ship (tests/unit/test_deploy.py).
        import httpx

        connector = context.app.connector
        attempt = context.job.attempts + 1
        url, body, event = await _payload(connector, task_id, batch_id)
        if url is None:
            return {"delivered": False, "reason": "gone"}
        error: Exception | None = None
        try:
            await check_callback_url(url, allowed, signed=secret is not None)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "taskservice-webhook",
                "Taskservice-Event": event,
                DELIVERY_HEADER: str(context.job.id),
            }
            if secret is not None:
                headers[SIGNATURE_HEADER] = sign(secret, body)
            async with httpx.AsyncClient(
                timeout=settings.callback_timeout_seconds, follow_redirects=False
            ) as http:
                response = await http.post(url, content=body, headers=headers)
            if response.status_code >= 500 or response.status_code == 429:
                error = CallbackFailed(f"HTTP {response.status_code} from {url}")
            elif response.status_code >= 300:
                error = CallbackRejected(f"HTTP {response.status_code} from {url}")
        except CallbackRefused as exc:
            error = CallbackRejected(str(exc))
        except httpx.HTTPError as exc:
            error = CallbackFailed(f"{type(exc).__name__}: {exc or 'no detail'} ({url})")
        retrying = isinstance(error, CallbackFailed) and attempt < policy.max_attempts
        status = "delivered" if error is None else "retrying" if retrying else "failed"
        await _record(connector, task_id, batch_id, status, str(error) if error else None)
        if error is not None:
            logger.warning("webhook attempt %d: %s (%s)", attempt, error, status)
            raise error
        return {"delivered": True, "attempt": attempt}


async def _record(
    connector: procrastinate.BaseConnector,
    task_id: int | None,
    batch_id: int | None,
    status: str,
    last_error: str | None,
) -> None:
    if task_id is not None:
        await pg.execute(
            connector,
            "set_task_callback_state",
            task_id=task_id,
            status=status,
            last_error=last_error,
        )
    else:
        await pg.execute(
            connector,
            "set_batch_callback_state",
            batch_id=batch_id,
            status=status,
            last_error=last_error,
        )
