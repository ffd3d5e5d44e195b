"""The `taskservice` command: up, api, worker and migrate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

import pydantic
import uvicorn

from taskservice.api.app import create_app
from taskservice.cli.operator import add_client_commands, run_client_command
from taskservice.errors import (
    DatabaseError,
    DatabaseUnavailable,
    TaskServiceError,
    WorkerStopped,
)
from taskservice.logs import configure_logging
from taskservice.metrics import Metrics
from taskservice.registry import load_registry
from taskservice.settings import Settings
from taskservice.store.embedded import resolve_database_url
from taskservice.store.migrate import migrate
from taskservice.worker.resilient import DatabaseLink
from taskservice.worker.runner import run_worker


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
    commands.add_parser("migrate", help="create or update the database schema, then exit")
    add_client_commands(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key in ("host", "port", "concurrency", "queues")
        if (value := getattr(args, key, None)) is not None
    }
    return Settings.model_validate({**Settings().model_dump(), **overrides})


async def _up(settings: Settings) -> None:
    registry = load_registry(settings.task_modules)
    await migrate(settings.database_url or "")
    metrics = Metrics()  # one set for both halves, served by the API's /metrics
    link = DatabaseLink()  # the worker half's state, for the API's readiness
    app = create_app(
        settings.model_copy(update={"migrate_on_start": False}),
        registry=registry,
        metrics=metrics,
        worker=link,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None)
    )
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
        await migrate(settings.database_url or "")
    await run_worker(settings, registry)


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
            applied = asyncio.run(migrate(settings.database_url))
            print("applied: " + ", ".join(applied) if applied else "schema already current")
        elif args.command == "api":
            uvicorn.run(
                create_app(settings), host=settings.host, port=settings.port, log_config=None
            )
        elif args.command == "worker":
            asyncio.run(_worker(settings))
        else:
            asyncio.run(_up(settings))
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
