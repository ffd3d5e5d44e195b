"""How the operator commands print tasks and schedules: tables and `key: value` lines."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from taskservice.models.tasks import TaskStatus

FINAL_STATUSES = frozenset(
    {TaskStatus.COMPLETED.value, TaskStatus.FAILED.value, TaskStatus.CANCELLED.value}
)
TASK_COLUMNS = ("id", "type", "status", "queue", "attempts", "created_at")
SCHEDULE_COLUMNS = (
    "id",
    "name",
    "source",
    "type",
    "cron/interval",
    "enabled",
    "next_run_at",
    "last_status",
)


def when(value: Any) -> str:
    """An API timestamp as `YYYY-MM-DD HH:MM:SSZ` (UTC); `-` when unset."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + ("Z" if moment.tzinfo is not None else "")


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart, under an upper-case header."""
    cells = [[h.upper() for h in headers], *([cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def attempts(task: Mapping[str, Any]) -> str:
    done, limit = task.get("attempts", 0), task.get("max_attempts")
    return f"{done}/{limit}" if limit is not None else str(done)


def task_row(task: Mapping[str, Any], when_key: str = "created_at") -> list[Any]:
    return [
        task["id"],
        task["type"],
        task["status"],
        task.get("queue"),
        task.get("attempts"),
        when(task.get(when_key)),
    ]


def headline(task: Mapping[str, Any]) -> str:
    line = f"task {task['id']} ({task['type']}): {task['status']}"
    if task["status"] == TaskStatus.FAILED.value:
        count = task.get("attempts", 0)
        line += f" after {count} attempt{'s' if count != 1 else ''}"
    elif task.get("abort_requested") and task["status"] not in FINAL_STATUSES:
        line += " (cancel requested)"
    return line


def progress(task: Mapping[str, Any]) -> str:
    """The headline of an unfinished task, with where it stands in its attempts."""
    done, limit = task.get("attempts") or 0, task.get("max_attempts")
    of = f"/{limit}" if limit is not None else ""
    if task["status"] == TaskStatus.IN_PROGRESS.value:
        return f"{headline(task)}, attempt {done + 1}{of}"
    if done:
        line = f"{headline(task)}, {done}{of} attempts failed"
        if task.get("next_attempt_at"):
            line += f", next at {when(task['next_attempt_at'])}"
        return line
    return headline(task)


def error_text(error: Mapping[str, Any]) -> str:
    return f"{error.get('type', 'Error')}: {error.get('message', '')}"


def outcome_lines(task: Mapping[str, Any]) -> list[str]:
    lines = [headline(task)]
    if task["status"] == TaskStatus.COMPLETED.value:
        lines.append(f"result: {json_text(task.get('result'))}")
    if task.get("error"):
        lines.append(f"error: {error_text(task['error'])}")
    return lines


def detail_lines(task: Mapping[str, Any]) -> list[str]:
    """Everything an operator asks about one task, as `key: value` lines."""
    fields: list[tuple[str, str]] = [
        ("queue", cell(task.get("queue"))),
        ("priority", cell(task.get("priority"))),
        ("attempts", attempts(task)),
        ("created", when(task.get("created_at"))),
        ("scheduled", when(task.get("scheduled_at"))),
    ]
    if task.get("next_attempt_at"):
        fields.append(("next attempt", when(task["next_attempt_at"])))
    fields += [
        ("started", when(task.get("started_at"))),
        ("finished", when(task.get("finished_at"))),
    ]
    if task.get("unique_key"):
        fields.append(("unique key", str(task["unique_key"])))
    fields.append(("params", json_text(task.get("params", {}))))
    if task["status"] == TaskStatus.COMPLETED.value:
        fields.append(("result", json_text(task.get("result"))))
    if task.get("error"):
        fields.append(("error", error_text(task["error"])))
    width = max(len(key) for key, _ in fields) + 1
    lines = [headline(task), *(f"  {(key + ':').ljust(width)} {value}" for key, value in fields)]
    history = task.get("attempt_history") or []
    if history:
        lines.append("  history:")
        for run in history:
            outcome = run.get("outcome") or "running"
            line = f"    #{run.get('attempt')} {when(run.get('started_at'))}  {outcome}"
            if run.get("error"):
                line += f": {error_text(run['error'])}"
            lines.append(line)
    return lines


def timing(schedule: Mapping[str, Any]) -> str:
    if schedule.get("cron"):
        zone = schedule.get("timezone") or "UTC"
        return str(schedule["cron"]) + ("" if zone == "UTC" else f" ({zone})")
    interval = schedule.get("interval_seconds")
    return f"every {duration(float(interval))}" if interval is not None else "-"
