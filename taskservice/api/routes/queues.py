"""Routes for /queues and /task-types: what a deployment runs and what waits in it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from taskservice.api.auth import ReadAccess
from taskservice.api.deps import PoolDep, RegistryDep
from taskservice.models.tasks import QueuePublic
from taskservice.services import queues as queue_service

router = APIRouter()


@router.get("/queues", response_model=list[QueuePublic])
async def queues(pool: PoolDep, _: ReadAccess) -> list[QueuePublic]:
    """Every queue with its tasks per status and the wait of its oldest due task."""
    return await queue_service.list_queues(pool=pool)


@router.get("/task-types")
async def task_types(reg: RegistryDep, _: ReadAccess) -> dict[str, Any]:
    """The task types this deployment runs, with the JSON schema of their params."""
    return {
        name: {
            "description": reg[name].description,
            "params": reg[name].params_model.model_json_schema(),
            "max_attempts": reg[name].retry.max_attempts,
            "max_attempts_limit": reg[name].retry.max_attempts_limit,
            "timeout_seconds": reg[name].timeout_seconds,
        }
        for name in reg.names
    }
