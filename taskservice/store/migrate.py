"""`taskservice migrate`: Procrastinate's schema, then the service's migrations and views."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import asyncpg
from procrastinate.schema import SchemaManager

from taskservice.errors import DatabaseError, MigrationLocked, SchemaMismatch
from taskservice.settings import Settings
from taskservice.store import asyncpg_driver as db
from taskservice.store.queries import sql_dir

logger = logging.getLogger(__name__)

# Any constant works, as long as nothing else takes it: it makes concurrent
# `migrate` runs (several replicas starting together) queue up one by one.
_ADVISORY_LOCK_KEY = 0x7461736B73657276  # "taskserv"

# Records in taskservice.schema_migrations, besides the service's own migrations:
# "procrastinate-3.10.0", the schema of that release (Procrastinate names each
# migration file after the release that ships it, so a release's schema is every
# file up to its version); "procrastinate-03.04.00_01_pre_..." one such file,
# applied on an upgrade; "views-<hash>", views.sql and reporting.sql as applied.
_PROCRASTINATE = "procrastinate-"
_RELEASE = re.compile(r"procrastinate-(\d+)\.(\d+)(?:\.(\d+))?")
_FILE_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)_")
_VIEW_FILES = ("views.sql", "reporting.sql")
# Procrastinate objects its queries use, as named in its queries.sql.
_PROCRASTINATE_OBJECT = re.compile(r"\bprocrastinate_[a-z0-9_]+\b")

Version = tuple[int, int, int]

# A lock wait of a migration step: how long one attempt waits, and for how long
# the step is retried (the settings' defaults).
DEFAULT_LOCK_TIMEOUT_SECONDS = Settings.model_fields["migrate_lock_timeout_seconds"].default
DEFAULT_LOCK_WAIT_SECONDS = Settings.model_fields["migrate_lock_wait_seconds"].default


def _release(text: str) -> Version | None:
    match = _RELEASE.fullmatch(text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def procrastinate_record() -> str:
    """The record of the installed Procrastinate's schema, e.g. procrastinate-3.10.0."""
    version = importlib.metadata.version("procrastinate")
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if match is None:  # pragma: no cover - every release has a numeric version
        raise ValueError(f"unexpected Procrastinate version {version!r}")
    major, minor, patch = match.groups()
    return f"{_PROCRASTINATE}{major}.{minor}.{patch or 0}"


def _procrastinate_files() -> list[Path]:
    """Procrastinate's shipped migrations in the order it applies them: by file name
    (release, then sequence; a release's `pre` ones come before its `post` ones)."""
    return sorted(Path(SchemaManager.get_migrations_path()).glob("*.sql"))


def _file_version(path: Path) -> Version:
    match = _FILE_VERSION.match(path.name)
    if match is None:  # pragma: no cover - Procrastinate names every file so
        raise ValueError(f"unexpected Procrastinate migration name {path.name!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch)


def _pending_procrastinate(done: set[str]) -> list[Path] | None:
    """Procrastinate migrations the database lacks; None when no Procrastinate
    schema was ever recorded (a fresh install, or one to adopt)."""
    releases = [version for name in done if (version := _release(name)) is not None]
    if not releases:
        return None
    level = max(releases)
    return [
        path
        for path in _procrastinate_files()
        if _file_version(path) > level and _PROCRASTINATE + path.stem not in done
    ]


def views_record() -> str:
    """The record of views.sql and reporting.sql as they are now."""
    digest = hashlib.sha256()
    for name in _VIEW_FILES:
        digest.update((sql_dir() / name).read_bytes())
    return "views-" + digest.hexdigest()[:12]


def migration_names() -> list[str]:
    """What a fresh install applies and records, in order."""
    return [procrastinate_record(), *(p.stem for p in _migration_files()), views_record()]


def missing_migrations(applied: set[str]) -> list[str]:
    """What the database lacks for this code, given the recorded names."""
    pending = _pending_procrastinate(applied)
    missing = (
        [procrastinate_record()] if pending is None else [_PROCRASTINATE + p.stem for p in pending]
    )
    missing += [name for name in migration_names()[1:] if name not in applied]
    return missing


def _migration_files() -> list[Path]:
    return sorted((sql_dir() / "migrations").glob("*.sql"))


async def migrate_as_configured(settings: Settings) -> list[str]:
    """`migrate` on `settings.database_url` (resolved), with the configured lock waits."""
    if settings.database_url is None:
        raise ValueError("migrate needs settings with a database_url")
    return await migrate(
        settings.database_url,
        lock_timeout_seconds=settings.migrate_lock_timeout_seconds,
        lock_wait_seconds=settings.migrate_lock_wait_seconds,
    )


async def migrate(
    database_url: str,
    *,
    from_schema_file: bool = True,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
) -> list[str]:
    """Bring the database to the current schema; return the names of what was applied.

    A database without the service's schema gets sql/schema.sql in one go
    (unless `from_schema_file` is false: tests walk the migrations instead);
    one with an older version gets the missing migrations, Procrastinate's
    included. The views are re-created only when they changed. Safe to run on
    every start and from several processes at once.

    A step waits at most `lock_timeout_seconds` for a lock (so that reads queued
    behind it wait no longer), then is retried until `lock_wait_seconds` have
    passed; then MigrationLocked says who holds it."""
    with db.translated():
        conn = await asyncpg.connect(database_url)
        try:
            await db.execute(conn, "take_migration_lock", key=_ADVISORY_LOCK_KEY)
            try:
                await db.execute(
                    conn, "set_lock_timeout", value=f"{lock_timeout_seconds * 1000:.0f}"
                )
                steps = _Steps(conn, time.monotonic() + lock_wait_seconds)
                return await _migrate_locked(conn, steps, from_schema_file)
            finally:
                await db.execute(conn, "release_migration_lock", key=_ADVISORY_LOCK_KEY)
        finally:
            await conn.close()


class _Steps:
    """Runs each migration step in its own transaction, retried while a lock is busy."""

    def __init__(self, conn: asyncpg.Connection, deadline: float) -> None:
        self.conn = conn
        self.deadline = deadline

    async def run(self, what: str, work: Callable[[], Awaitable[None]]) -> None:
        delay = 0.2
        while True:
            try:
                async with self.conn.transaction():
                    await work()
                return
            except (asyncpg.LockNotAvailableError, DatabaseError) as exc:
                if isinstance(exc, DatabaseError) and exc.sqlstate != "55P03":
                    raise
                if time.monotonic() + delay > self.deadline:
                    holders = await db.fetch(self.conn, "oldest_open_transactions")
                    raise MigrationLocked(what, [dict(row) for row in holders]) from exc
                logger.warning(
                    "migrate: %s waits for a lock another session holds; retrying in %.1f s",
                    what,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def sql(self, what: str, *texts: str, records: Sequence[str] = ()) -> None:
        """Run `texts` and record `records`, all in one transaction."""

        async def work() -> None:
            for text in texts:
                await self.conn.execute(text)
            for name in records:
                await db.execute(self.conn, "record_migration", name=name)

        await self.run(what, work)


async def _migrate_locked(
    conn: asyncpg.Connection, steps: _Steps, from_schema_file: bool
) -> list[str]:
    await db.execute(conn, "create_migrations_table")
    done = {row["name"] for row in await db.fetch(conn, "applied_migrations")}
    applied = await _migrate_procrastinate(conn, steps, done, from_schema_file)

    pending = [path for path in _migration_files() if path.stem not in done]
    service_done = {path.stem for path in _migration_files()} & done
    if pending and from_schema_file and not service_done:
        schema = (sql_dir() / "schema.sql").read_text(encoding="utf-8")
        await steps.sql("schema.sql", schema, records=[path.stem for path in pending])
        applied.extend(path.stem for path in pending)
        pending = []
    for path in pending:
        await steps.sql(path.name, path.read_text(encoding="utf-8"), records=[path.stem])
        applied.append(path.stem)

    # CREATE OR REPLACE VIEW takes an exclusive lock on the view, so it waits for
    # every open transaction that read it (an analyst's long query) and every
    # read after it waits in turn: run it only when the views changed, or a
    # migration may have touched what they read.
    views = views_record()
    if views not in done or applied:
        texts = [(sql_dir() / name).read_text(encoding="utf-8") for name in _VIEW_FILES]
        await steps.sql("the views", *texts, records=[views] if views not in done else [])
        if views not in done:
            applied.append(views)
    for name in applied:
        logger.info("applied migration %s", name)
    return applied


async def _migrate_procrastinate(
    conn: asyncpg.Connection, steps: _Steps, done: set[str], from_schema_file: bool
) -> list[str]:
    """Procrastinate's schema: installed, adopted or upgraded with its own migrations."""
    release = procrastinate_record()
    pending = _pending_procrastinate(done)
    applied: list[str] = []
    if pending is None:
        if await db.fetchval(conn, "procrastinate_installed"):
            await _check_adopted(conn)
        elif from_schema_file:
            await steps.sql("Procrastinate's schema", SchemaManager.get_schema(), records=[release])
            return [release]
        else:
            pending = _procrastinate_files()
    for path in pending or []:
        await steps.sql(
            f"Procrastinate migration {path.name}",
            path.read_text(encoding="utf-8"),
            records=[_PROCRASTINATE + path.stem],
        )
        applied.append(_PROCRASTINATE + path.stem)
    if release not in done:
        await db.execute(conn, "record_migration", name=release)
        applied.append(release)
    return applied


async def _check_adopted(conn: asyncpg.Connection) -> None:
    """A Procrastinate schema installed by someone else, of an unknown release: adopt
    it only if it has every object the installed Procrastinate's queries use."""
    queries = (Path(SchemaManager.get_migrations_path()).parent / "queries.sql").read_text(
        encoding="utf-8"
    )
    wanted = sorted(set(_PROCRASTINATE_OBJECT.findall(queries)))
    missing = [
        row["name"] for row in await db.fetch(conn, "missing_procrastinate_objects", names=wanted)
    ]
    if missing:
        raise SchemaMismatch(
            "the database has a Procrastinate schema that taskservice did not install and "
            f"that predates the installed Procrastinate ({procrastinate_record()}): it lacks "
            + ", ".join(missing)
            + ". Apply Procrastinate's migrations up to that release "
            "(`procrastinate schema --migrations-path` shows where they are), then migrate again."
        )
