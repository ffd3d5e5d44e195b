"""What every scenario shares: fresh databases, peer processes, named SQL, reports."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import procrastinate
import psycopg

from taskservice.store.migrate import migrate
from taskservice.store.queries import Query, parse

HERE = Path(__file__).resolve().parent
_names = itertools.count()
# What the named statements run on: a connection, or one borrowed from a pool.
Executor = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


def server_url() -> str:
    """The PostgreSQL server the bench creates its databases on."""
    return os.environ.get(
        "BENCH_DATABASE_URL",
        os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )


def redis_url() -> str:
    """The Redis of the Celery peer (broker and results); db 15 to keep clear of others."""
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


def with_db(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


# ---------------------------------------------------------------- named SQL


@functools.cache
def _queries() -> dict[str, Query]:
    return parse((HERE / "queries.sql").read_text(encoding="utf-8"))


async def fetch(conn: Executor, name: str, /, **params: Any) -> list[asyncpg.Record]:
    """Run the statement `name` of bench/queries.sql."""
    query = _queries()[name]
    rows: list[asyncpg.Record] = await conn.fetch(query.asyncpg_text, *query.asyncpg_args(params))
    return rows


async def fetchval(conn: Executor, name: str, /, **params: Any) -> Any:
    rows = await fetch(conn, name, **params)
    return rows[0][0] if rows else None


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


# ---------------------------------------------------------------- databases


class Databases:
    """Fresh databases on the shared server, cloned from templates made once per run:
    `service` (taskservice migrate) and `bare` (Procrastinate's schema only).
    Everything this run created is dropped by `close`, its own backends with it."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.prefix = f"bench_{os.getpid()}"
        self._templates: dict[str, str] = {}
        self._created: list[str] = []

    def _admin(self, *statements: str) -> None:
        with psycopg.connect(self.server, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)  # bench-made names only

    def _template(self, kind: str) -> str:
        if kind not in self._templates:
            name = f"{self.prefix}_template_{kind}"
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}")
            self._created.append(name)
            url = with_db(self.server, name)
            if kind == "service":
                asyncio.run(migrate(url))
            else:
                asyncio.run(_apply_procrastinate_schema(url))
            self._templates[kind] = name
        return self._templates[kind]

    @contextlib.contextmanager
    def fresh(self, kind: str, copy_of: str | None = None) -> Iterator[str]:
        """A new database of `kind` ('service' or 'bare'), dropped on exit; a copy
        of the bench's database at `copy_of` if given (nothing may be connected to it)."""
        template = self._template(kind) if copy_of is None else copy_of.rpartition("/")[2]
        name = f"{self.prefix}_{kind}_{next(_names)}"
        self._admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        try:
            yield with_db(self.server, name)
        finally:
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        for name in reversed(self._created):
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._created.clear()
        self._templates.clear()


async def _apply_procrastinate_schema(url: str) -> None:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a `taskservice` process on `database_url`, default settings
    otherwise (its own metrics port, so that several can run)."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "TASKSERVICE_MIGRATE_ON_START": "false",
        "TASKSERVICE_METRICS_PORT": str(free_port()),
        **extra,
    }


@dataclass
class Process:
    """A child process with its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{tail}")


class Processes:
    """Starts peers; stops every one still running on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[Process] = []

    def start(
        self, name: str, args: Sequence[str], env: dict[str, str], port: int | None = None
    ) -> Process:
        log = self.log_dir / f"{name}-{next(_names)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                list(args), env=env, stdout=out, stderr=subprocess.STDOUT, cwd=HERE.parent
            )
        process = Process(name, popen, log, port)
        self.running.append(process)
        return process

    def start_http(
        self, name: str, args: Sequence[str], env: dict[str, str], port: int, health: str
    ) -> Process:
        """Start a server and wait (90 s at most) until `health` answers 200."""
        process = self.start(name, args, env, port)
        deadline = time.monotonic() + 90
        while not _healthy(f"{process.url}{health}"):
            process.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not healthy after 90 s (log: {process.log})")
            time.sleep(0.1)
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        self.running.remove(process)

    def close(self) -> None:
        for process in reversed(self.running):
            process.stop()
        self.running.clear()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def taskservice(*args: str) -> list[str]:
    return [sys.executable, "-m", "taskservice", *args]


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


async def wait_until(
    conn: asyncpg.Connection,
    query: str,
    target: int,
    *,
    within: float,
    watch: Sequence[Process] = (),
    interval: float = 0.1,
    **params: Any,
) -> None:
    """Poll the count `query` until it reaches `target`; fail if a watched process
    dies or `within` seconds pass."""
    deadline = time.monotonic() + within
    while True:
        done = int(await fetchval(conn, query, **params))
        if done >= target:
            return
        for process in watch:
            process.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{query}: {done} of {target} after {within} s")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------- reports


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Target:
    """A line of the issue's Targets: `measured` against `bound` (`at_least` or
    `at_most`)."""

    text: str
    measured: float
    bound: float
    at_least: bool

    @property
    def met(self) -> bool:
        return self.measured >= self.bound if self.at_least else self.measured <= self.bound

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.text,
            "measured": self.measured,
            "bound": self.bound,
            "at_least": self.at_least,
            "pass": self.met,
        }


@dataclass
class Report:
    """One scenario's figures: rows of (measure, taskservice, peer, peer value,
    ratio), its setup, its targets and notes."""

    scenario: str
    setup: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)

    def row(
        self,
        measure: str,
        value: float,
        unit: str,
        peer: str | None = None,
        peer_value: float | None = None,
    ) -> float | None:
        """Add a row; returns taskservice/peer (None without a peer)."""
        ratio = value / peer_value if peer_value else None
        self.rows.append(
            {
                "measure": measure,
                "taskservice": value,
                "unit": unit,
                "peer": peer,
                "peer_value": peer_value,
                "ratio": ratio,
            }
        )
        return ratio

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "setup": self.setup,
            "rows": self.rows,
            "targets": [t.as_dict() for t in self.targets],
            "notes": self.notes,
            "samples": self.samples,
        }

    def table(self) -> str:
        lines = [f"== {self.scenario} ==", "   " + json.dumps(self.setup)]
        header = ("measure", "taskservice", "peer", "peer value", "ratio")
        body = [
            (
                r["measure"],
                f"{_num(r['taskservice'])} {r['unit']}",
                r["peer"] or "",
                f"{_num(r['peer_value'])} {r['unit']}" if r["peer_value"] is not None else "",
                f"{r['ratio']:.2f}x" if r["ratio"] is not None else "",
            )
            for r in self.rows
        ]
        lines += _columns([header, *body])
        for target in self.targets:
            verdict = "pass" if target.met else "short"
            sign = ">=" if target.at_least else "<="
            lines.append(
                f"   target: {target.text}: {_num(target.measured)} {sign} "
                f"{_num(target.bound)}  {verdict}"
            )
        lines += [f"   note: {note}" for note in self.notes]
        return "\n".join(lines)


def _num(value: float | None) -> str:
    if value is None:
        return ""
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "   " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        for row in rows
    ]
