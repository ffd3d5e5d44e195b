"""API: POST /tasks and GET /tasks/{id} under load, beside the bare FastAPI + asyncpg ceiling.

`taskservice api` (no worker, default settings) and `bench.bare_api` run side by
side; a load generator in its own process (wrk, 2 threads and 16 connections, a
Lua script for POST; `bench.loadgen` where wrk is missing) drives one endpoint at
a time for S seconds: service POST, bare POST, service GET, bare GET, and again
for each round. Requests/s and p99 are the medians over the rounds.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    Databases,
    Processes,
    Report,
    Target,
    free_port,
    median,
    python_module,
    service_env,
    taskservice,
)

CONNECTIONS = 16
BODY = json.dumps({"type": "echo", "params": {"value": 1}})
JSON = {"content-type": "application/json"}
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(url: str, body: str | None, seconds: float) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if body is not None:
            script.write(
                'wrk.method = "POST"\n'
                f"wrk.body = {json.dumps(body)}\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
            )
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{CONNECTIONS}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        Path(script.name).unlink()
    return parse_wrk(out, url)


def parse_wrk(out: str, url: str = "") -> dict[str, float]:
    """Requests/s and p99 (ms) from `wrk --latency` output; errors under load fail."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if rps is None or p99 is None:
        raise RuntimeError(f"wrk {url}: unexpected output:\n{out}")
    if re.search(r"Non-2xx or 3xx responses:|Socket errors:", out):
        raise RuntimeError(f"wrk {url}: errors under load:\n{out}")
    return {"rps": float(rps.group(1)), "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)]}


def _python_load(url: str, body: str | None, seconds: float) -> dict[str, float]:
    command = python_module(
        "bench.loadgen", url, "--connections", str(CONNECTIONS), "--seconds", str(seconds)
    )
    if body is not None:
        command += ["--method", "POST", "--body", body]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out)
    if result["errors"]:
        raise RuntimeError(f"loadgen {url}: {result['errors']} errors under load")
    return result


def load(url: str, body: str | None, seconds: float, wrk: bool) -> dict[str, float]:
    """Requests/s and p99 (ms) of `url` (POST `body` if given, else GET)."""
    if wrk:
        return _wrk(url, body, seconds)
    return _python_load(url, body, seconds)


def run(
    dbs: Databases, procs: Processes, *, seconds: float, rounds: int, python_load: bool = False
) -> Report:
    wrk = not python_load and shutil.which("wrk") is not None
    samples: dict[str, list[dict[str, float]]] = {
        k: [] for k in ("service POST", "bare POST", "service GET", "bare GET")
    }
    with dbs.fresh("service") as service_url, dbs.fresh("service") as bare_url:
        port, bare_port = free_port(), free_port()
        api = procs.start_http(
            "api-service",
            taskservice("api", "--port", str(port)),
            service_env(service_url),
            port,
            "/health/ready",
        )
        bare = procs.start_http(
            "api-bare",
            python_module("bench.bare_api", "--port", str(bare_port)),
            service_env(bare_url),
            bare_port,
            "/health",
        )
        task_id = httpx.post(f"{api.url}/tasks", content=BODY, headers=JSON, timeout=30).json()[
            "id"
        ]
        item_id = httpx.post(f"{bare.url}/items", content=BODY, headers=JSON, timeout=30).json()[
            "id"
        ]
        targets = {
            "service POST": (f"{api.url}/tasks", BODY),
            "bare POST": (f"{bare.url}/items", BODY),
            "service GET": (f"{api.url}/tasks/{task_id}", None),
            "bare GET": (f"{bare.url}/items/{item_id}", None),
        }
        for _ in range(rounds):
            for name, (url, body) in targets.items():
                samples[name].append(load(url, body, seconds, wrk))
                (api if name.startswith("service") else bare).check_alive()
        procs.close()
    report = Report(
        "api",
        {
            "load seconds": seconds,
            "rounds": rounds,
            "connections": CONNECTIONS,
            "load": "wrk -t2" if wrk else "bench.loadgen (python, own process)",
            "taskservice": "taskservice api, no worker, default settings",
        },
        samples={f"{k} rps": [s["rps"] for s in v] for k, v in samples.items()},
    )

    def figure(name: str, key: str) -> Any:
        return median([s[key] for s in samples[name]])

    bounds = {"POST": 0.5, "GET": 0.7}
    for method, path in (("POST", "/tasks"), ("GET", "/tasks/{id}")):
        ratio = report.row(
            f"{method} {path}",
            figure(f"service {method}", "rps"),
            "req/s",
            "bare FastAPI + asyncpg",
            figure(f"bare {method}", "rps"),
        )
        report.row(
            f"{method} {path} p99",
            figure(f"service {method}", "p99_ms"),
            "ms",
            "bare FastAPI + asyncpg",
            figure(f"bare {method}", "p99_ms"),
        )
        report.targets.append(
            Target(
                f"{method} {path} >= {bounds[method]}x the bare endpoint",
                ratio or 0.0,
                bounds[method],
                at_least=True,
            )
        )
    if not wrk:
        report.notes.append("Python load generator instead of wrk: it saturates sooner")
    if sys.platform != "linux":
        report.notes.append(f"platform {sys.platform}")
    return report
