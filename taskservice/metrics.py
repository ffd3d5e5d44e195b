"""Prometheus metrics: one registry per process, passed to the app and the worker."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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


class Metrics:
    """The service's metrics. The API process counts submissions, cancellations of
    pending tasks and HTTP requests, and reads queue depth from PostgreSQL on each
    scrape; a worker process counts runs and times them."""

    def __init__(self) -> None:
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

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
