"""The operator commands (submit, status, ls, cancel, retry, schedules) against a real service."""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskservice.cli.operator import add_client_commands, run_client_command
from tests.processes import free_port, service_env, service_process

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`taskservice up` on this test's database."""
    env = service_env(database_url, data_dir=tmp_path / "data")
    with service_process("up", env, tmp_path, stop=signal.SIGINT) as up:
        yield up.base


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="taskservice")
    add_client_commands(parser.add_subparsers(dest="command", required=True))
    return run_client_command(parser.parse_args(list(argv)))


def _json_of(capsys: Capsys, *argv: str) -> Any:
    capsys.readouterr()
    assert _run(*argv, "--json") == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_full_cycle(service: str, capsys: Capsys) -> None:
    url = ("--url", service)

    # submit --wait: completed, result shown, exit 0
    assert _run("submit", "echo", "--param", "value=42", "--wait", "--timeout", "30", *url) == 0
    out = capsys.readouterr().out
    assert "completed" in out
    assert "result: 42" in out
    echo_id = int(out.split("submitted task ", 1)[1].split()[0])

    # status --json parses, and is the same task
    task = _json_of(capsys, "status", str(echo_id), *url)
    assert task["id"] == echo_id
    assert task["status"] == "completed"
    assert task["result"] == 42

    # status without --json: a summary
    assert _run("status", str(echo_id), *url) == 0
    out = capsys.readouterr().out
    assert f"task {echo_id} (echo): completed" in out
    assert "result:" in out

    # a failing task with one attempt: exit 1, error shown
    code = _run(
        "submit", "fail", "--param", "message=x", "--max-attempts", "1", "--wait", "--timeout",
        "30", *url,
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1, captured
    assert "failed" in captured.out
    assert "IntentionalFailure: x" in captured.out

    # ls --status completed: a table with the echo task, not the failed one
    assert _run("ls", "--status", "completed", *url) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "STATUS", "QUEUE", "ATTEMPTS", "CREATED_AT"]
    rows = [line.split() for line in lines[1:]]
    assert [row[:4] for row in rows] == [[str(echo_id), "echo", "completed", "default"]]
    assert _json_of(capsys, "ls", "--status", "failed", *url)["items"][0]["type"] == "fail"

    # cancel a delayed task, then retry it: it runs now
    delayed = _json_of(capsys, "submit", "echo", "--param", "value=later", "--delay", "3600", *url)
    assert delayed["status"] == "pending"
    assert _run("cancel", str(delayed["id"]), *url) == 0
    assert f"task {delayed['id']} (echo): cancelled" in capsys.readouterr().out
    assert _json_of(capsys, "status", str(delayed["id"]), *url)["status"] == "cancelled"
    assert _run("ls", "--status", "cancelled", *url) == 0
    assert str(delayed["id"]) in capsys.readouterr().out

    assert _run("retry", str(delayed["id"]), *url) == 0
    assert f"task {delayed['id']} (echo) queued again" in capsys.readouterr().out
    assert _run("status", str(delayed["id"]), "--wait", "--timeout", "30", *url) == 0
    out = capsys.readouterr().out
    assert "completed" in out
    assert 'result: "later"' in out

    # cancelling it again: the server says no; exit 2 with its message
    assert _run("cancel", str(delayed["id"]), *url) == 2
    captured = capsys.readouterr()
    assert "HTTP 409" in captured.err
    assert "path.task_id: " in captured.err
    assert "Traceback" not in captured.err


def test_server_errors_are_reported_not_raised(service: str, capsys: Capsys) -> None:
    assert _run("submit", "no_such_type", "--url", service) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "HTTP 422" in captured.err
    assert "body.type: unknown task type 'no_such_type'" in captured.err
    assert "Traceback" not in captured.err

    assert _run("submit", "echo", "--param", "nope=1", "--url", service) == 2
    assert "body.params.value" in capsys.readouterr().err

    assert _run("status", "999999", "--url", service) == 2
    captured = capsys.readouterr()
    assert "HTTP 404" in captured.err
    assert "path.task_id:" in captured.err


def test_param_values_are_json_when_they_parse(
    service: str, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKSERVICE_URL", service)  # no --url: the variable is used
    for raw, expected in [
        ("2", 2),
        ("true", True),
        ("bob", "bob"),
        ("", ""),
        ("NaN", "NaN"),
        ('{"a": [1, null]}', {"a": [1, None]}),
    ]:
        task = _json_of(capsys, "submit", "echo", "--param", f"value={raw}", "--wait")
        assert task["status"] == "completed"
        assert task["result"] == expected

    task = _json_of(capsys, "submit", "echo", "--params-json", '{"value": 1}', "--priority", "5")
    assert task["params"] == {"value": 1}
    assert task["priority"] == 5


def test_wait_times_out_with_exit_3(service: str, capsys: Capsys) -> None:
    code = _run(
        "submit", "sleep", "--param", "seconds=30", "--wait", "--timeout", "0.5",
        "--url", service,
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 3, captured
    assert "timed out after 0.5s" in captured.err
    task_id = captured.out.split("submitted task ", 1)[1].split()[0]

    # cancelling a running task asks it to stop; --wait then sees it cancelled
    assert _run("cancel", task_id, "--url", service) == 0
    capsys.readouterr()
    assert _run("status", task_id, "--wait", "--timeout", "30", "--url", service) == 1
    assert "cancelled" in capsys.readouterr().out


def test_schedules_lists_the_built_in_ones(service: str, capsys: Capsys) -> None:
    assert _run("schedules", "--url", service) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["ID", "NAME", "SOURCE", "TYPE"]
    assert len(lines) >= 2

    assert _json_of(capsys, "schedules", "--include-one-off", "--url", service)["one_off"] == []
    later = _json_of(
        capsys, "submit", "echo", "--param", "value=1", "--delay", "600", "--url", service
    )
    assert _run("schedules", "--include-one-off", "--url", service) == 0
    out = capsys.readouterr().out
    assert "one-off tasks waiting for a later time:" in out
    assert out.splitlines()[-1].split()[:3] == [str(later["id"]), "echo", "pending"]


def test_unreachable_service(capsys: Capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert _run("ls", "--url", url) == 2
    captured = capsys.readouterr()
    assert f"cannot reach taskservice at {url}" in captured.err
    assert "Traceback" not in captured.err
