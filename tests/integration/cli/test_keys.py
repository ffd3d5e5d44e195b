"""`taskservice keys` and API keys across processes: created and revoked from the
CLI, seen by running APIs on their next request, never written to a log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.processes import free_port, service_env, service_process


def _keys(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskservice", "keys", *args],
        env=service_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _operator_ls(base: str, key: str | None) -> subprocess.CompletedProcess[str]:
    """`taskservice ls`, which sends TASKSERVICE_API_KEY."""
    env = {k: v for k, v in os.environ.items() if k != "TASKSERVICE_API_KEY"}
    if key:
        env["TASKSERVICE_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "taskservice", "ls", "--url", base],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _get(base: str, path: str, key: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{base}{path}", headers=headers, timeout=10).status_code


def test_create_list_revoke_seen_by_every_api_process(database_url: str, tmp_path: Path) -> None:
    created = _keys(database_url, "create", "billing", "--scopes", "read,submit")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("tsk_")
    as_json = _keys(database_url, "create", "ops", "--scopes", "admin", "--json")
    assert as_json.returncode == 0, as_json.stderr
    admin: dict[str, Any] = json.loads(as_json.stdout)
    assert admin["name"] == "ops"
    assert admin["scopes"] == ["admin"]

    listed = _keys(database_url, "list")
    assert listed.returncode == 0, listed.stderr
    assert "billing" in listed.stdout
    assert "read,submit" in listed.stdout
    assert key not in listed.stdout
    assert admin["key"] not in _keys(database_url, "list", "--json").stdout

    with (
        service_process("api", service_env(database_url), tmp_path) as first,
        service_process("api", service_env(database_url), tmp_path) as second,
    ):
        for base in (first.base, second.base):
            assert _get(base, "/tasks", key) == 200
            assert _get(base, "/tasks") == 401
        assert _operator_ls(first.base, key).returncode == 0
        refused = _operator_ls(first.base, None)
        assert refused.returncode == 2
        assert "401" in refused.stderr
        revoked = _keys(database_url, "revoke", "billing")
        assert revoked.returncode == 0, revoked.stderr
        for base in (first.base, second.base):
            assert _get(base, "/tasks", key) == 401
            assert _get(base, "/tasks", admin["key"]) == 200
    logs = "".join(path.read_text() for path in tmp_path.glob("api-*.log"))
    assert "GET /tasks" in logs or "/tasks" in logs
    assert key not in logs
    assert admin["key"] not in logs


def test_duplicate_or_unknown_names_fail_with_a_message(database_url: str) -> None:
    assert _keys(database_url, "create", "a", "--scopes", "read").returncode == 0
    again = _keys(database_url, "create", "a", "--scopes", "read")
    assert again.returncode == 2
    assert "exists already" in again.stderr
    missing = _keys(database_url, "revoke", "nobody")
    assert missing.returncode == 2
    assert "no API key named 'nobody'" in missing.stderr
    bad_scope = _keys(database_url, "create", "b", "--scopes", "read,root")
    assert bad_scope.returncode == 2
    assert "unknown scope" in bad_scope.stderr


def test_refuses_to_listen_beyond_loopback_without_a_key(database_url: str) -> None:
    port = str(free_port())
    refused = subprocess.run(
        [sys.executable, "-m", "taskservice", "api", "--host", "0.0.0.0", "--port", port],
        env=service_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "taskservice keys create" in refused.stderr


def test_a_bootstrap_key_from_the_environment_opens_the_network(
    database_url: str, tmp_path: Path
) -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "taskservice", "keys", "generate"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    key = generated.stdout.strip()
    env = service_env(database_url, bootstrap_api_key=key)
    with service_process("api", env, tmp_path, "--host", "0.0.0.0") as api:
        assert _get(api.base, "/tasks", key) == 200
        assert _get(api.base, "/tasks") == 401
    listed = _keys(database_url, "list")
    assert "bootstrap-admin" in listed.stdout
    assert "admin" in listed.stdout
    assert key not in "".join(path.read_text() for path in tmp_path.glob("*.log"))
