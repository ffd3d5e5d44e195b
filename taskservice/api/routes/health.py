"""Routes for probes and metrics: /health, /health/live, /health/ready and /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from taskservice.api.auth import MetricsAccess
from taskservice.api.deps import MetricsDep, PoolDep, SettingsDep, WorkerDep
from taskservice.api.errors import RETRY_AFTER_SECONDS
from taskservice.models.tasks import Health
from taskservice.services import health as health_service
from taskservice.services import queues as queue_service

router = APIRouter()


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
@router.get("/health/ready", response_model=Health, responses={503: {"model": Health}})
async def health(
    response: Response, pool: PoolDep, settings: SettingsDep, worker: WorkerDep
) -> Health:
    """Ready: database reachable, schema at the expected version and, under
    `taskservice up`, its worker connected (else 503, with the reason); also
    counts workers with a recent heartbeat."""
    result = await health_service.check_health(
        pool=pool,
        database_url=settings.database_url or "",
        live_within_seconds=settings.stalled_after_seconds,
        worker=worker,
    )
    if result.status != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return result


@router.get("/health/live")
async def live() -> dict[str, str]:
    """Alive: the process answers. No database call, so a database outage does
    not get every API replica restarted."""
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics_endpoint(
    pool: PoolDep, metrics: MetricsDep, _: MetricsAccess
) -> PlainTextResponse:
    """Prometheus metrics; queue depth is read from PostgreSQL on each scrape."""
    await queue_service.read_queue_depth(pool=pool, metrics=metrics)
    return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE_LATEST)
