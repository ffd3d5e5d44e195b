"""Operator commands over the REST API: submit, status, ls, cancel, retry and schedules."""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from taskservice.cli.client import DEFAULT_URL, HTTP_TIMEOUT_SECONDS, ApiClient, ClientError
from taskservice.cli.tables import (
    SCHEDULE_COLUMNS,
    TASK_COLUMNS,
    detail_lines,
    outcome_lines,
    progress,
    table,
    task_row,
    timing,
    when,
)
from taskservice.models.tasks import PG_BIGINT_MAX, TaskStatus

POLL_SECONDS = 0.2
EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_ERROR = 2
EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130
# Final statuses and the exit code `--wait` gives for each.
FINAL_EXIT_CODES: Mapping[str, int] = {
    TaskStatus.COMPLETED.value: EXIT_OK,
    TaskStatus.FAILED.value: EXIT_TASK_FAILED,
    TaskStatus.CANCELLED.value: EXIT_TASK_FAILED,
}

CommandFn: TypeAlias = Callable[[ApiClient, argparse.Namespace], int]


# --- argument types ---------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _param(text: str) -> tuple[str, Any]:
    """`key=value`; the value is JSON when it parses as JSON, else the string itself."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        value = raw
    return key, value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, like '{\"value\": 42}'")
    return value


def _task_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a task id: {text!r}") from None
    if not 1 <= value <= PG_BIGINT_MAX:
        raise argparse.ArgumentTypeError(f"not a task id: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more seconds: {text!r}")
    return value


# --- formatting -------------------------------------------------------------------------


def _out(text: str = "") -> None:
    print(text, file=sys.stdout)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _print_json(data: Any) -> None:
    _out(json.dumps(data, indent=2, ensure_ascii=False))


# --- waiting ----------------------------------------------------------------------------


def _wait(api: ApiClient, task: dict[str, Any], timeout: float, as_json: bool) -> int:
    """Follow the task's event stream until it ends or `timeout` passes; print
    it; its exit code. Without a stream (an older server), poll instead."""
    started = time.monotonic()
    deadline = started + timeout
    live = sys.stderr.isatty()
    shown: tuple[Any, ...] | None = None
    events = _follow(api, task["id"])
    complete = True
    try:
        while task["status"] not in FINAL_EXIT_CODES:
            state = (
                task["status"],
                task.get("attempts"),
                bool(task.get("abort_requested")),
                None if live else _progress_text(task),
            )
            if live:
                elapsed = time.monotonic() - started
                line = f"{progress(task)}{_progress_text(task)} ({elapsed:.1f}s)"
                sys.stderr.write(f"\r\x1b[2K{line}")
                sys.stderr.flush()
            elif state != shown:
                _err(progress(task) + _progress_text(task))
            shown = state
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            kind, data = _next_event(events, min(remaining, 1.0) if live else remaining)
            if kind == "task":
                task, complete = data, True
            elif kind == "status":
                task, complete = {**task, "status": data["status"]}, False
            elif kind == "progress":
                task = {**task, "progress": data["progress"]}
            elif kind == "closed":  # no stream (or it broke): poll
                time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0)))
                task, complete = api.call("GET", f"/tasks/{task['id']}"), True
    finally:
        if live and shown is not None:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
    if not complete:  # a status event only: the result or error comes with the task
        task = api.call("GET", f"/tasks/{task['id']}")
    code = FINAL_EXIT_CODES.get(task["status"])
    if code is None:
        _err(
            f"taskservice: timed out after {timeout:g}s; "
            f"task {task['id']} is still {task['status']}"
        )
        code = EXIT_TIMEOUT
    if as_json:
        _print_json(task)
    else:
        for line in outcome_lines(task):
            _out(line)
    return code


def _progress_text(task: Mapping[str, Any]) -> str:
    reported = task.get("progress")
    if not reported or task["status"] != TaskStatus.IN_PROGRESS.value:
        return ""
    parts = []
    if reported.get("fraction") is not None:
        parts.append(f"{reported['fraction']:.0%}")
    if reported.get("message"):
        parts.append(str(reported["message"]))
    return f" [{' '.join(parts)}]" if parts else ""


Event: TypeAlias = tuple[str, Any]


def _follow(api: ApiClient, task_id: int) -> queue.Queue[Event]:
    """GET /tasks/{id}/events read by a daemon thread into a queue; it ends
    with ("closed", None) when the stream ends or fails."""
    events: queue.Queue[Event] = queue.Queue()

    def read() -> None:
        try:
            for kind, data in api.stream_events(f"/tasks/{task_id}/events"):
                events.put((kind, data))
        except Exception:  # any failure of the stream means: poll instead
            pass
        finally:
            events.put(("closed", None))

    threading.Thread(target=read, name="taskservice-wait", daemon=True).start()
    return events


def _next_event(events: queue.Queue[Event], within: float) -> Event:
    try:
        event = events.get(timeout=within)
    except queue.Empty:
        return ("none", None)
    if event[0] == "closed":
        events.put(event)  # every later call polls too
    return event


# --- commands ---------------------------------------------------------------------------


def _submit(api: ApiClient, args: argparse.Namespace) -> int:
    params: dict[str, Any] = dict(args.params_json or {})
    params.update(args.params or [])
    body: dict[str, Any] = {"type": args.type, "params": params}
    for key, value in (
        ("priority", args.priority),
        ("queue", args.queue),
        ("delay_seconds", args.delay),
        ("max_attempts", args.max_attempts),
    ):
        if value is not None:
            body[key] = value
    task = api.call("POST", "/tasks", body=body)
    if args.wait:
        if not args.json:
            _out(f"submitted task {task['id']} ({task['type']}) to queue {task['queue']}")
        return _wait(api, task, args.timeout, args.json)
    if args.json:
        _print_json(task)
    else:
        line = f"submitted task {task['id']} ({task['type']}) to queue {task['queue']}"
        if args.delay:
            line += f", due {when(task.get('scheduled_at'))}"
        _out(f"{line}: {task['status']}")
    return EXIT_OK


def _status(api: ApiClient, args: argparse.Namespace) -> int:
    task = api.call("GET", f"/tasks/{args.id}")
    if args.wait:
        return _wait(api, task, args.timeout, args.json)
    if args.json:
        _print_json(task)
    else:
        for line in detail_lines(task):
            _out(line)
    return EXIT_OK


def _ls(api: ApiClient, args: argparse.Namespace) -> int:
    query: dict[str, str | int] = {
        key: value
        for key, value in (
            ("status", args.status),
            ("type", args.type),
            ("queue", args.queue),
            ("limit", args.limit),
        )
        if value is not None
    }
    page = api.call("GET", "/tasks", params=query)
    if args.json:
        _print_json(page)
        return EXIT_OK
    tasks = page["items"]
    if not tasks:
        _out("no tasks")
    else:
        _out(table(TASK_COLUMNS, [task_row(task) for task in tasks]))
    if page.get("next_cursor"):
        _err(f"(the newest {len(tasks)} shown; more match: raise --limit, up to 500)")
    return EXIT_OK


def _cancel(api: ApiClient, args: argparse.Namespace) -> int:
    task = api.call("DELETE", f"/tasks/{args.id}")
    if args.json:
        _print_json(task)
    elif task["status"] == TaskStatus.CANCELLED.value:
        _out(f"task {task['id']} ({task['type']}): cancelled")
    else:
        _out(
            f"task {task['id']} ({task['type']}) is {task['status']}: asked it to stop; "
            f"`taskservice status {task['id']} --wait` shows when it does"
        )
    return EXIT_OK


def _retry(api: ApiClient, args: argparse.Namespace) -> int:
    task = api.call("POST", f"/tasks/{args.id}/retry")
    if args.json:
        _print_json(task)
    else:
        _out(f"task {task['id']} ({task['type']}) queued again: {task['status']}")
    return EXIT_OK


def _schedules(api: ApiClient, args: argparse.Namespace) -> int:
    query: dict[str, str | int] = {"include": "one_off"} if args.include_one_off else {}
    jobs = api.call("GET", "/scheduler/jobs", params=query)
    if args.json:
        _print_json(jobs)
        return EXIT_OK
    schedules = jobs["schedules"]
    if not schedules:
        _out("no schedules")
    else:
        rows = [
            [
                s["id"],
                s["name"],
                s.get("source"),
                s["type"],
                timing(s),
                bool(s.get("enabled")),
                when(s.get("next_run_at")),
                s.get("last_task_status"),
            ]
            for s in schedules
        ]
        _out(table(SCHEDULE_COLUMNS, rows))
    one_off = jobs.get("one_off")
    if one_off is not None:
        _out()
        if not one_off:
            _out("no one-off tasks waiting for a later time")
        else:
            _out("one-off tasks waiting for a later time:")
            headers = (*TASK_COLUMNS[:-1], "scheduled_at")
            _out(table(headers, [task_row(task, "scheduled_at") for task in one_off]))
    return EXIT_OK


# --- wiring -----------------------------------------------------------------------------


def _common_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        help=f"the service's base URL (default: TASKSERVICE_URL, else {DEFAULT_URL})",
    )
    common.add_argument(
        "--api-key",
        help="sent as `Authorization: Bearer KEY` (default: TASKSERVICE_API_KEY)",
    )
    common.add_argument(
        "--json", action="store_true", help="print the raw JSON response instead of a summary"
    )
    return common


def _add_wait_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--wait",
        action="store_true",
        help="wait until the task ends; exit 0 completed, 1 failed or cancelled, 3 timed out",
    )
    command.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long --wait waits (default: 60)",
    )


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add submit, status, ls, cancel, retry and schedules: clients of the REST API."""
    common = _common_flags()

    def add(name: str, help_text: str, command: CommandFn) -> argparse.ArgumentParser:
        parser = commands.add_parser(
            name,
            help=help_text,
            description=help_text[:1].upper() + help_text[1:] + ".",
            parents=[common],
        )
        parser.set_defaults(client_command=command)
        return parser

    submit = add("submit", "submit a task through the API", _submit)
    submit.add_argument("type", metavar="TYPE", help="the task type, like echo")
    submit.add_argument(
        "--param",
        type=_param,
        action="append",
        dest="params",
        metavar="KEY=VALUE",
        help="a param; VALUE is read as JSON when it parses (2, true, [1]), else as text; "
        "repeat for several",
    )
    submit.add_argument(
        "--params-json",
        type=_json_object,
        metavar="JSON",
        help="all params as one JSON object; --param values override its keys",
    )
    submit.add_argument("--priority", type=int, help="higher runs first (default: 0)")
    submit.add_argument("--queue", help="the queue (default: default)")
    submit.add_argument(
        "--delay", type=_seconds, metavar="SECONDS", help="run no sooner than this from now"
    )
    submit.add_argument(
        "--max-attempts", type=_positive_int, metavar="N", help="runs in all, the first included"
    )
    _add_wait_flags(submit)

    status = add("status", "show one task", _status)
    status.add_argument("id", type=_task_id, metavar="ID", help="the task's id")
    _add_wait_flags(status)

    ls = add("ls", "list tasks, newest first", _ls)
    ls.add_argument("--status", choices=[s.value for s in TaskStatus])
    ls.add_argument("--type", help="only tasks of this type")
    ls.add_argument("--queue", help="only tasks in this queue")
    ls.add_argument(
        "--limit", type=_positive_int, metavar="N", help="at most N tasks (default: 50)"
    )

    cancel = add("cancel", "cancel a pending task, or ask a running one to stop", _cancel)
    cancel.add_argument("id", type=_task_id, metavar="ID", help="the task's id")

    retry = add("retry", "run a failed or cancelled task again", _retry)
    retry.add_argument("id", type=_task_id, metavar="ID", help="the task's id")

    schedules = add("schedules", "list periodic schedules", _schedules)
    schedules.add_argument(
        "--include-one-off",
        action="store_true",
        help="also list single tasks waiting for a later time",
    )


def run_client_command(args: argparse.Namespace) -> int:
    """Run the client command `args` names; its exit code (2 for any error, on stderr)."""
    command: CommandFn = args.client_command
    url: str = args.url or os.environ.get("TASKSERVICE_URL") or DEFAULT_URL
    api_key: str | None = args.api_key or os.environ.get("TASKSERVICE_API_KEY") or None
    try:
        import httpx
    except ImportError:
        _err("taskservice: the client commands need httpx: pip install httpx")
        return EXIT_ERROR
    headers = {"User-Agent": "taskservice-cli", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS) as client:
            return command(ApiClient(client, url), args)
    except ClientError as exc:
        _err(f"taskservice: {exc.message}")
        for line in exc.details:
            _err(f"  {line}")
    except httpx.TransportError as exc:
        _err(f"taskservice: cannot reach taskservice at {url}: {str(exc) or type(exc).__name__}")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        _err(f"taskservice: cannot talk to taskservice at {url}: {str(exc) or type(exc).__name__}")
    except (KeyError, TypeError, AttributeError) as exc:
        _err(f"taskservice: unexpected response from {url} ({exc!r}); is --url right?")
    except KeyboardInterrupt:
        _err("\ntaskservice: interrupted (tasks already submitted keep running)")
        return EXIT_INTERRUPTED
    return EXIT_ERROR
