"""The `taskservice` command: up, api, worker and migrate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pydantic
import uvicorn

from taskservice.api.app import create_app
from taskservice.cli.keys import add_keys_commands, run_keys_command
from taskservice.cli.operator import add_client_commands, run_client_command
from taskservice.cli.processes import run_worker_processes
from taskservice.errors import (
    DatabaseError,
    DatabaseUnavailable,
    TaskServiceError,
    WorkerStopped,
)
from taskservice.logs import configure_logging
from taskservice.metrics import Metrics
from taskservice.registry import load_registry
from taskservice.services.keys import is_loopback, new_key, prepare_access
from taskservice.settings import Settings
from taskservice.store import asyncpg_driver as db
from taskservice.store.embedded import resolve_database_url
from taskservice.store.migrate import migrate_as_configured
from taskservice.worker.resilient import DatabaseLink
from taskservice.worker.runner import run_worker


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (what uvicorn picks for `api`), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _serve(main: Coroutine[Any, Any, None]) -> None:
    """Run a long-lived coroutine (`worker`, `up`) on the fastest loop available
    (uvloop's callbacks and I/O waits cost less than asyncio's own loop's)."""
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        runner.run(main)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskservice",
        description="Background tasks over REST, queued in PostgreSQL. "
        "Configuration comes from DATABASE_URL and TASKSERVICE_* variables; "
        "the flags below override them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add_api_flags(command: argparse.ArgumentParser) -> None:
        command.add_argument("--host", help="address to listen on (TASKSERVICE_HOST)")
        command.add_argument("--port", type=int, help="port to listen on (TASKSERVICE_PORT)")

    def add_worker_flags(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--concurrency", type=int, help="jobs run at once (TASKSERVICE_CONCURRENCY)"
        )

    up = commands.add_parser("up", help="run the API and a worker in one process")
    add_api_flags(up)
    add_worker_flags(up)
    api = commands.add_parser("api", help="run the HTTP API only")
    add_api_flags(api)
    worker = commands.add_parser("worker", help="run a worker only")
    add_worker_flags(worker)
    worker.add_argument(
        "--queue",
        action="append",
        dest="queues",
        help="a queue to serve; repeat for several (default: all) (TASKSERVICE_QUEUES)",
    )
    worker.add_argument(
        "--processes",
        type=_at_least_one,
        default=1,
        help="worker processes to run, each with its own worker id and --concurrency "
        "jobs (default 1); more than one uses more than one core",
    )
    commands.add_parser("migrate", help="create or update the database schema, then exit")
    add_keys_commands(commands)
    add_client_commands(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key in ("host", "port", "concurrency", "queues")
        if (value := getattr(args, key, None)) is not None
    }
    return Settings.model_validate({**Settings().model_dump(), **overrides})


def _server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's settings: where to listen, and how many connections to hold at most
    (slow clients each hold one; past the limit uvicorn answers 503)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": settings.access_log,
        "limit_concurrency": settings.max_connections,
    }


async def _prepare_access(settings: Settings, *, serving: bool = True) -> None:
    """Store the bootstrap key, if configured; then, before serving, exit with how
    to fix it when the API would listen beyond loopback with no API key (the
    app's lifespan checks it too)."""
    secret = settings.bootstrap_api_key
    if (not serving or is_loopback(settings.host)) and secret is None:
        return
    assert settings.database_url is not None
    if settings.migrate_on_start and serving:
        await migrate_as_configured(settings)
    pool = await db.create_pool(settings.database_url, max_size=1)
    try:
        await prepare_access(
            pool=pool,
            host=settings.host if serving else "127.0.0.1",
            bootstrap_key=secret.get_secret_value() if secret else None,
        )
    finally:
        await pool.close()


async def _up(settings: Settings) -> None:
    registry = load_registry(settings.task_modules)
    if settings.migrate_on_start:
        await migrate_as_configured(settings)
    metrics = Metrics.from_settings(settings)  # both halves' own, served by the API
    link = DatabaseLink()  # the worker half's state, for the API's readiness
    app = create_app(
        settings.model_copy(update={"migrate_on_start": False}),
        registry=registry,
        metrics=metrics,
        worker=link,
    )
    server = uvicorn.Server(uvicorn.Config(app, **_server_options(settings)))
    worker = asyncio.create_task(
        run_worker(settings, registry, install_signal_handlers=False, metrics=metrics, link=link)
    )
    serving = asyncio.create_task(server.serve())
    try:
        await asyncio.wait({worker, serving}, return_when=asyncio.FIRST_COMPLETED)
        if worker.done():
            # Never an API without its worker: stop serving, and fail so that a
            # supervisor restarts the whole service.
            server.should_exit = True
            await serving
            if worker.cancelled() or worker.exception() is None:
                raise WorkerStopped("the worker stopped")
            raise worker.exception()  # type: ignore[misc]  # not None: checked above
        await serving
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, WorkerStopped):
            await worker


async def _worker(settings: Settings) -> None:
    registry = load_registry(settings.task_modules)
    if settings.migrate_on_start:
        await migrate_as_configured(settings)
    await run_worker(settings, registry)


def _worker_processes(settings: Settings, args: argparse.Namespace) -> int:
    """`worker --processes N` with N > 1: migrate once, then run N workers."""
    load_registry(settings.task_modules)  # a bad task module fails here, once
    if settings.migrate_on_start:
        asyncio.run(migrate_as_configured(settings))
    worker_args = [f"--concurrency={settings.concurrency}"]
    worker_args += [f"--queue={queue}" for queue in args.queues or []]
    assert settings.database_url is not None
    return run_worker_processes(
        args.processes,
        worker_args,
        database_url=settings.database_url,
        metrics_port=settings.metrics_port,
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # uvicorn re-raises the SIGTERM it caught once it has shut down; by default
    # that kills the process on the spot, before atexit stops the embedded
    # PostgreSQL. As SystemExit, every cleanup runs.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `taskservice` console script."""
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if getattr(args, "client_command", None) is not None:
        # Operator commands talk to a running service over REST: no database here.
        return run_client_command(args)
    if args.command == "keys" and args.keys_command == "generate":
        print(new_key()[0])  # no database involved
        return 0
    try:
        settings = _settings(args)
    except pydantic.ValidationError as exc:
        for error in exc.errors(include_url=False):
            name = "TASKSERVICE_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"taskservice: {name}: {error['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        settings = resolve_database_url(settings)
        assert settings.database_url is not None
        if args.command == "migrate":
            applied = asyncio.run(migrate_as_configured(settings))
            print("applied: " + ", ".join(applied) if applied else "schema already current")
            asyncio.run(_prepare_access(settings, serving=False))
        elif args.command == "keys":
            return asyncio.run(run_keys_command(settings, args))
        elif args.command == "api":
            asyncio.run(_prepare_access(settings))
            uvicorn.run(create_app(settings), **_server_options(settings))
        elif args.command == "worker" and args.processes > 1:
            return _worker_processes(settings, args)
        elif args.command == "worker":
            _serve(_worker(settings))
        else:
            asyncio.run(_prepare_access(settings))
            _serve(_up(settings))
    except (DatabaseUnavailable, OSError, ConnectionError) as exc:
        print(f"taskservice: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    except DatabaseError as exc:
        print(f"taskservice: the database refused: {exc}", file=sys.stderr)
        return 1
    except WorkerStopped as exc:
        print(f"taskservice: the worker stopped: {exc}", file=sys.stderr)
        return 1
    except TaskServiceError as exc:
        print(f"taskservice: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
