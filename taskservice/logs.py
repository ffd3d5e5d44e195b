"""Logging: one JSON object per line in production, readable lines in a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["auto", "json", "text"]

# What Procrastinate's worker puts in `extra` about a job, and what we keep of it.
_JOB_FIELDS = {"id": "task_id", "task_name": "type", "queue": "queue", "attempts": "attempt"}
# One encoder for every line: json.dumps(..., default=str) builds a new one per call.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line: time, level, logger, message, and the task's
    id, type, queue, attempt and duration when the record is about a task."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = getattr(record, "job", None)
        if isinstance(job, dict):
            for source, target in _JOB_FIELDS.items():
                if job.get(source) is not None:
                    event[target] = job[source]
            if "attempt" in event:
                event["attempt"] += 1  # Procrastinate counts finished runs
        for name in ("action", "duration", "status"):
            value = getattr(record, name, None)
            if value is not None:
                event[name] = value if isinstance(value, int | float | str) else str(value)
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(event)


class QuietInternalJobs(logging.Filter):
    """Drop the info lines of the service's own jobs (the dispatcher runs every
    second): they would drown everything else. Their warnings and errors stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = getattr(record, "job", None)
        internal = isinstance(job, dict) and str(job.get("task_name", "")).startswith(
            "taskservice."
        )
        return not internal or record.levelno >= logging.WARNING


def configure_logging(log_format: LogFormat = "auto", level: str = "INFO") -> None:
    """Send logs to stderr as JSON lines (`json`, or `auto` when stderr is not a
    terminal) or as text (`text`, or `auto` at a terminal)."""
    handler = logging.StreamHandler(sys.stderr)
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler.setFormatter(
        JsonFormatter()
        if use_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(QuietInternalJobs())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
