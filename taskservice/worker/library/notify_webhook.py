"""The `notify.webhook` task type: a JSON POST signed as completion webhooks are."""

from __future__ import annotations

import json
from typing import Any

from procrastinate import JobContext
from pydantic import BaseModel, ConfigDict, Field, field_validator

from taskservice.errors import ParamRefused
from taskservice.registry import RetryPolicy, task_type
from taskservice.services.callbacks import SIGNATURE_HEADER, sign
from taskservice.settings import Settings
from taskservice.worker.failures import RetryLater
from taskservice.worker.library import outbound
from taskservice.worker.library.http_request import check_headers, exchange

EVENT = "notify"


class NotifyWebhookParams(BaseModel):
    """A JSON POST of `payload` to `url`."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2000,
        examples=["https://hooks.example.com/orders"],
        description="http(s) URL; its host must be allowed by TASKSERVICE_HTTP_ALLOWED_HOSTS.",
    )
    payload: Any = Field(description="Any JSON value: the body, as compact JSON.")
    headers: dict[str, str] = Field(default_factory=dict, max_length=100)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)


async def _check(params: NotifyWebhookParams, settings: Settings) -> None:
    if settings.callback_secret is None:
        raise ParamRefused(
            ("url",),
            "webhooks are disabled on this deployment: TASKSERVICE_CALLBACK_SECRET, the key "
            "they are signed with, is not set",
            "webhooks_disabled",
        )
    await outbound.check_url(params.url, settings, ("url",))


@task_type(
    "notify.webhook",
    params=NotifyWebhookParams,
    # As completion webhooks: up to 8 attempts over about ten minutes.
    retry=RetryPolicy(max_attempts=8, backoff_seconds=5, backoff_factor=2, retry_on=(RetryLater,)),
    timeout_seconds=600,
    check=_check,
)
async def notify_webhook(
    params: NotifyWebhookParams, context: JobContext, *, settings: Settings
) -> dict[str, Any]:
    """POST `payload` as JSON to `url`, signed with TASKSERVICE_CALLBACK_SECRET in
    the Taskservice-Signature header (`t=<unix time>,v1=<HMAC-SHA256 of "t.body">`,
    as completion webhooks). Every attempt carries the same Taskservice-Delivery
    id, for receivers that deduplicate. Retried as http.request is; the result is
    the receiver's answer, `{"status", "headers", "body", "truncated"}`."""
    import httpx

    assert settings.callback_secret is not None  # checked before the run
    body = json.dumps(params.payload, separators=(",", ":")).encode()
    headers = {
        **params.headers,
        "Content-Type": "application/json",
        "User-Agent": "taskservice-webhook",
        "Taskservice-Event": EVENT,
        "Taskservice-Delivery": str(context.job.id),
        SIGNATURE_HEADER: sign(settings.callback_secret.get_secret_value(), body),
    }
    request = httpx.Request("POST", params.url, headers=headers, content=body)
    return await exchange(request, settings, limit_seconds=params.timeout_seconds)
