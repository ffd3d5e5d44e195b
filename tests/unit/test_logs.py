"""JSON log lines carry the task's id, type, queue and attempt."""

from __future__ import annotations

import json
import logging

from taskservice.logs import JsonFormatter


def test_task_fields_are_lifted_from_procrastinate_extra() -> None:
    record = logging.LogRecord(
        "procrastinate.worker", logging.INFO, __file__, 1, "Job done", (), None
    )
    record.job = {"id": 12, "task_name": "echo", "queue": "default", "attempts": 0}
    record.action = "job_success"
    record.duration = 0.25
    event = json.loads(JsonFormatter().format(record))
    assert event["message"] == "Job done"
    assert (event["task_id"], event["type"], event["queue"], event["attempt"]) == (
        12,
        "echo",
        "default",
        1,
    )
    assert (event["action"], event["duration"], event["level"]) == ("job_success", 0.25, "info")


def test_plain_records_are_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "a\nb", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_info_lines_of_internal_jobs_are_dropped() -> None:
    from taskservice.logs import QuietInternalJobs

    def record(task_name: str, level: int) -> logging.LogRecord:
        rec = logging.LogRecord("procrastinate.worker", level, __file__, 1, "m", (), None)
        rec.job = {"task_name": task_name}
        return rec

    quiet = QuietInternalJobs()
    assert not quiet.filter(record("taskservice.dispatch_schedules", logging.INFO))
    assert quiet.filter(record("taskservice.dispatch_schedules", logging.ERROR))
    assert quiet.filter(record("echo", logging.INFO))
