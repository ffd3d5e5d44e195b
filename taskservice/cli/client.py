"""Operator commands over the REST API: submit, status, ls, cancel, retry and schedules."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from taskservice.models.tasks import PG_BIGINT_MAX, TaskStatus

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
POLL_SECONDS = 0.2
HTTP_TIMEOUT_SECONDS = 10.0
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


class ClientError(Exception):
    """A failure to report on stderr (exit 2): a message and, optionally, detail lines."""

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)


class _Api:
    """The service's REST API over one httpx client; errors become ClientError."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self.client = client
        self.url = url

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str | int] | None = None,
    ) -> Any:
        content: bytes | None = None
        headers: dict[str, str] = {}
        if body is not None:
            try:
                content = json.dumps(body, allow_nan=False, ensure_ascii=False).encode()
            except ValueError as exc:
                raise ClientError(f"cannot send the request as JSON: {exc}") from exc
            headers["Content-Type"] = "application/json"
        response = self.client.request(
            method, path, content=content, params=params, headers=headers
        )
        if response.is_error:
            raise ClientError(
                f"{method} {path} failed: HTTP {response.status_code} {response.reason_phrase}",
                _error_details(response),
            )
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(
                f"unexpected response from {self.url}{path} "
                f"(HTTP {response.status_code}, not JSON); is --url right?"
            ) from exc


CommandFn: TypeAlias = Callable[[_Api, argparse.Namespace], int]


def _error_details(response: httpx.Response) -> list[str]:
    """The server's `detail` messages: `loc.joined.by.dots: msg`, one per error."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return [text[:500]] if text else []
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, str):
        return [detail]
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(part) for part in item.get("loc") or [])
                msg = str(item.get("msg", ""))
                lines.append(f"{loc}: {msg}" if loc else msg)
            else:
                lines.append(str(item))
        return lines
    return [json.dumps(body)]


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


def _when(value: Any) -> str:
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


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart, under an upper-case header."""
    cells = [[h.upper() for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _attempts(task: Mapping[str, Any]) -> str:
    done, limit = task.get("attempts", 0), task.get("max_attempts")
    return f"{done}/{limit}" if limit is not None else str(done)


def _task_row(task: Mapping[str, Any], when_key: str = "created_at") -> list[Any]:
    return [
        task["id"],
        task["type"],
        task["status"],
        task.get("queue"),
        task.get("attempts"),
        _when(task.get(when_key)),
    ]


def _headline(task: Mapping[str, Any]) -> str:
    line = f"task {task['id']} ({task['type']}): {task['status']}"
    if task["status"] == TaskStatus.FAILED.value:
        count = task.get("attempts", 0)
        line += f" after {count} attempt{'s' if count != 1 else ''}"
    elif task.get("abort_requested") and task["status"] not in FINAL_EXIT_CODES:
        line += " (cancel requested)"
    return line


def _progress(task: Mapping[str, Any]) -> str:
    """The headline of an unfinished task, with where it stands in its attempts."""
    done, limit = task.get("attempts") or 0, task.get("max_attempts")
    of = f"/{limit}" if limit is not None else ""
    if task["status"] == TaskStatus.IN_PROGRESS.value:
        return f"{_headline(task)}, attempt {done + 1}{of}"
    if done:
        line = f"{_headline(task)}, {done}{of} attempts failed"
        if task.get("next_attempt_at"):
            line += f", next at {_when(task['next_attempt_at'])}"
        return line
    return _headline(task)


def _error_text(error: Mapping[str, Any]) -> str:
    return f"{error.get('type', 'Error')}: {error.get('message', '')}"


def _outcome_lines(task: Mapping[str, Any]) -> list[str]:
    lines = [_headline(task)]
    if task["status"] == TaskStatus.COMPLETED.value:
        lines.append(f"result: {_json_text(task.get('result'))}")
    if task.get("error"):
        lines.append(f"error: {_error_text(task['error'])}")
    return lines


def _detail_lines(task: Mapping[str, Any]) -> list[str]:
    """Everything an operator asks about one task, as `key: value` lines."""
    fields: list[tuple[str, str]] = [
        ("queue", _cell(task.get("queue"))),
        ("priority", _cell(task.get("priority"))),
        ("attempts", _attempts(task)),
        ("created", _when(task.get("created_at"))),
        ("scheduled", _when(task.get("scheduled_at"))),
    ]
    if task.get("next_attempt_at"):
        fields.append(("next attempt", _when(task["next_attempt_at"])))
    fields += [
        ("started", _when(task.get("started_at"))),
        ("finished", _when(task.get("finished_at"))),
    ]
    if task.get("unique_key"):
        fields.append(("unique key", str(task["unique_key"])))
    fields.append(("params", _json_text(task.get("params", {}))))
    if task["status"] == TaskStatus.COMPLETED.value:
        fields.append(("result", _json_text(task.get("result"))))
    if task.get("error"):
        fields.append(("error", _error_text(task["error"])))
    width = max(len(key) for key, _ in fields) + 1
    lines = [_headline(task), *(f"  {(key + ':').ljust(width)} {value}" for key, value in fields)]
    history = task.get("attempt_history") or []
    if history:
        lines.append("  history:")
        for run in history:
            outcome = run.get("outcome") or "running"
            line = f"    #{run.get('attempt')} {_when(run.get('started_at'))}  {outcome}"
            if run.get("error"):
                line += f": {_error_text(run['error'])}"
            lines.append(line)
    return lines


# --- waiting ----------------------------------------------------------------------------


def _wait(api: _Api, task: dict[str, Any], timeout: float, as_json: bool) -> int:
    """Poll the task until it ends or `timeout` passes; print it; its exit code."""
    started = time.monotonic()
    deadline = started + timeout
    live = sys.stderr.isatty()
    shown: tuple[Any, ...] | None = None
    try:
        while task["status"] not in FINAL_EXIT_CODES:
            state = (task["status"], task.get("attempts"), bool(task.get("abort_requested")))
            if live:
                elapsed = time.monotonic() - started
                sys.stderr.write(f"\r\x1b[2K{_progress(task)} ({elapsed:.1f}s)")
                sys.stderr.flush()
            elif state != shown:
                _err(_progress(task))
            shown = state
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(POLL_SECONDS, remaining))
            task = api.call("GET", f"/tasks/{task['id']}")
    finally:
        if live and shown is not None:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
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
        for line in _outcome_lines(task):
            _out(line)
    return code


# --- commands ---------------------------------------------------------------------------


def _submit(api: _Api, args: argparse.Namespace) -> int:
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
            line += f", due {_when(task.get('scheduled_at'))}"
        _out(f"{line}: {task['status']}")
    return EXIT_OK


def _status(api: _Api, args: argparse.Namespace) -> int:
    task = api.call("GET", f"/tasks/{args.id}")
    if args.wait:
        return _wait(api, task, args.timeout, args.json)
    if args.json:
        _print_json(task)
    else:
        for line in _detail_lines(task):
            _out(line)
    return EXIT_OK


def _ls(api: _Api, args: argparse.Namespace) -> int:
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
        _out(_table(TASK_COLUMNS, [_task_row(task) for task in tasks]))
    if page.get("next_cursor"):
        _err(f"(the newest {len(tasks)} shown; more match: raise --limit, up to 500)")
    return EXIT_OK


def _cancel(api: _Api, args: argparse.Namespace) -> int:
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


def _retry(api: _Api, args: argparse.Namespace) -> int:
    task = api.call("POST", f"/tasks/{args.id}/retry")
    if args.json:
        _print_json(task)
    else:
        _out(f"task {task['id']} ({task['type']}) queued again: {task['status']}")
    return EXIT_OK


def _timing(schedule: Mapping[str, Any]) -> str:
    if schedule.get("cron"):
        zone = schedule.get("timezone") or "UTC"
        return str(schedule["cron"]) + ("" if zone == "UTC" else f" ({zone})")
    interval = schedule.get("interval_seconds")
    return f"every {_duration(float(interval))}" if interval is not None else "-"


def _schedules(api: _Api, args: argparse.Namespace) -> int:
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
                _timing(s),
                bool(s.get("enabled")),
                _when(s.get("next_run_at")),
                s.get("last_task_status"),
            ]
            for s in schedules
        ]
        _out(_table(SCHEDULE_COLUMNS, rows))
    one_off = jobs.get("one_off")
    if one_off is not None:
        _out()
        if not one_off:
            _out("no one-off tasks waiting for a later time")
        else:
            _out("one-off tasks waiting for a later time:")
            headers = (*TASK_COLUMNS[:-1], "scheduled_at")
            _out(_table(headers, [_task_row(task, "scheduled_at") for task in one_off]))
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
            return command(_Api(client, url), args)
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
