"""Prometheus metrics: one registry per process, passed to the app and the worker."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from taskservice.registry import DEFAULT_QUEUE, INTERNAL_QUEUE
from taskservice.settings import Settings

# The label value shared by every queue name past the bound, and by HTTP methods
# the service does not serve.
OTHER = "other"
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_TASK = ["type", "queue"]
# Seconds: from a few milliseconds (echo) to an hour (batch work).
_DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
)


class BoundedLabel:
    """Label values chosen by clients (queue names), bounded: the known values and
    the first `limit` others seen keep their own label, the rest share `other`.

    Every label value is a time series that a Prometheus client keeps for the
    life of the process, so an unbounded set of them is a memory leak."""

    def __init__(self, known: Iterable[str], limit: int) -> None:
        self._known = frozenset(known)
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()  # the worker's sync tasks count from threads

    def __call__(self, value: str) -> str:
        if value in self._known or value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER


def method_label(method: str) -> str:
    """The HTTP method as a label: any token is a valid method, so only known ones count."""
    return method if method in _HTTP_METHODS else OTHER


class Metrics:
    """The service's metrics. The API process counts submissions, cancellations of
    pending tasks and HTTP requests, and reads queue depth from PostgreSQL on each
    scrape; a worker process counts runs and times them.

    Queue names come from clients, so `queue_label` bounds them: `queues` (and
    the default and internal queues) always get their own label, then the first
    `max_queues` other names seen, then `other`. Task types need no bound: only
    registered types can be submitted or run."""

    def __init__(self, *, queues: Iterable[str] = (), max_queues: int = 50) -> None:
        self.queue_label = BoundedLabel([DEFAULT_QUEUE, INTERNAL_QUEUE, *queues], max_queues)
        self.registry = CollectorRegistry()
        r = self.registry
        self.submitted = Counter(
            "taskservice_tasks_submitted", "Tasks accepted by the API.", _TASK, registry=r
        )
        self.started = Counter(
            "taskservice_tasks_started", "Runs started by a worker.", _TASK, registry=r
        )
        self.completed = Counter(
            "taskservice_tasks_completed", "Runs that succeeded.", _TASK, registry=r
        )
        self.failed = Counter(
            "taskservice_tasks_failed", "Runs that failed with no attempt left.", _TASK, registry=r
        )
        self.retried = Counter(
            "taskservice_tasks_retried", "Runs that failed and will be retried.", _TASK, registry=r
        )
        self.cancelled = Counter(
            "taskservice_tasks_cancelled", "Tasks cancelled, pending or running.", _TASK, registry=r
        )
        self.duration = Histogram(
            "taskservice_task_duration_seconds",
            "Run time of a task.",
            _TASK,
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.start_latency = Histogram(
            "taskservice_task_start_latency_seconds",
            "From when a run was due (submitted, scheduled or retried) to its start.",
            _TASK,
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.queue_tasks = Gauge(
            "taskservice_queue_tasks",
            "Tasks pending or in progress, read on scrape.",
            ["queue", "status"],
            registry=r,
        )
        self.queue_oldest_pending = Gauge(
            "taskservice_queue_oldest_pending_seconds",
            "Wait of the oldest due pending task, read on scrape.",
            ["queue"],
            registry=r,
        )
        self.http_requests = Counter(
            "taskservice_http_requests",
            "HTTP requests served.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "taskservice_http_request_duration_seconds",
            "HTTP request handling time.",
            ["method", "route"],
            registry=r,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Metrics:
        """Metrics bounded as configured: TASKSERVICE_METRICS_QUEUES, TASKSERVICE_QUEUES
        and TASKSERVICE_METRICS_MAX_QUEUES."""
        return cls(
            queues=[*settings.metrics_queues, *settings.queues],
            max_queues=settings.metrics_max_queues,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
