"""Task types the batch.map tests run as items."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict

from taskservice.errors import ParamRefused
from taskservice.registry import RetryPolicy, task_type
from taskservice.settings import Settings


class ItemParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: int
    fail: bool = False
    seconds: float = 0.0


class ItemFailed(Exception):
    """Raised by `item` when asked to fail."""


async def check_item(params: ItemParams, settings: Settings) -> None:
    if params.value < 0:
        raise ParamRefused(("value",), "must not be negative", "value_refused")


@task_type("item", params=ItemParams, retry=RetryPolicy(max_attempts=1), check=check_item)
async def item(params: ItemParams) -> dict[str, int]:
    """Sleeps `seconds`, then fails if asked to, else returns its value doubled."""
    await asyncio.sleep(params.seconds)
    if params.fail:
        raise ItemFailed(f"item {params.value} failed on purpose")
    return {"doubled": params.value * 2}
