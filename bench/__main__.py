"""`python -m bench`: run the benchmark scenarios, each beside its peer, in one go.

    python -m bench all [--quick]           # every scenario
    python -m bench drain latency [--quick] # some of them
    python -m bench all --quick --drain-tasks 50 ...  # sizes by hand

Scenarios: drain, e2e, latency, api, growth, memory (see each module's docstring).
Each prints a table (its figure, its peer's from the same run, the ratio, and the
issue's targets, pass or short) and writes JSON to --out (default
bench-results/: <scenario>.json and all.json), with the logs of every process.

Needs: PostgreSQL (BENCH_DATABASE_URL or DATABASE_URL; default
postgresql://postgres@127.0.0.1:5432/postgres; the bench creates and drops its own
databases, named bench_<pid>_*), Redis for the Celery peer (BENCH_REDIS_URL,
default redis://127.0.0.1:6379/15), the `bench` extra (`pip install -e '.[bench]'`:
Celery; without it the Celery peer is skipped with a note) and `wrk` for the API
scenario (`apt-get install wrk`; without it a Python load generator in its own
process is used).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import api_load, drain, end_to_end, growth, latency, memory
from bench.harness import Databases, Processes, Report, server_url

SCENARIOS = ("drain", "e2e", "latency", "api", "growth", "memory")

# Full sizes (the issue's) and --quick ones.
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "rounds": 2,
        "drain_tasks": 3000,
        "e2e_tasks": 3000,
        "latency_tasks": 200,
        "api_seconds": 8.0,
        "growth_sizes": [10_000, 100_000, 1_000_000],
        "memory_tasks": 100_000,
    },
    "quick": {
        "rounds": 1,
        "drain_tasks": 500,
        "e2e_tasks": 500,
        "latency_tasks": 200,
        "api_seconds": 3.0,
        "growth_sizes": [1_000, 10_000],
        "memory_tasks": 2_000,
    },
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[1:]),
    )
    parser.add_argument("scenarios", nargs="+", choices=("all", *SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--rounds", type=int, help="alternating rounds per peer pair")
    parser.add_argument("--drain-tasks", type=int)
    parser.add_argument("--e2e-tasks", type=int)
    parser.add_argument("--latency-tasks", type=int)
    parser.add_argument("--api-seconds", type=float)
    parser.add_argument(
        "--growth-sizes", type=lambda s: [int(x) for x in s.split(",")], help="e.g. 1000,10000"
    )
    parser.add_argument("--memory-tasks", type=int)
    parser.add_argument(
        "--python-load", action="store_true", help="load the API from Python even if wrk exists"
    )
    parser.add_argument(
        "--no-celery", action="store_true", help="skip the Celery peer even if installed"
    )
    return parser


def environment() -> dict[str, Any]:
    """Machine, versions and date, for the report."""
    import psycopg

    with psycopg.connect(server_url()) as conn:
        server_version = conn.info.parameter_status("server_version")
    versions: dict[str, str | None] = {}
    for name in ("taskservice", "procrastinate", "fastapi", "uvicorn", "asyncpg", "psycopg"):
        versions[name] = metadata.version(name)
    for name in ("celery", "redis", "uvloop", "httptools"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0]
    except OSError:
        wrk = None
    import os

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (nproc), {platform.system()}",
        "python": platform.python_version(),
        "postgresql": server_version,
        "wrk": wrk.strip() if wrk else None,
        "versions": versions,
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes = dict(SIZES["quick" if args.quick else "full"])
    for key in sizes:
        if getattr(args, key, None) is not None:
            sizes[key] = getattr(args, key)
    chosen = SCENARIOS if "all" in args.scenarios else tuple(dict.fromkeys(args.scenarios))
    args.out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="logs-", dir=args.out))
    env = environment()
    print(json.dumps(env, indent=1))
    dbs, procs = Databases(server_url()), Processes(logs)
    rounds = sizes["rounds"]
    runners: dict[str, Callable[[], Report]] = {
        "drain": lambda: drain.run(dbs, procs, tasks=sizes["drain_tasks"], rounds=rounds),
        "e2e": lambda: end_to_end.run(
            dbs, procs, tasks=sizes["e2e_tasks"], rounds=rounds, celery=not args.no_celery
        ),
        "latency": lambda: latency.run(dbs, procs, tasks=sizes["latency_tasks"]),
        "api": lambda: api_load.run(
            dbs, procs, seconds=sizes["api_seconds"], rounds=rounds, python_load=args.python_load
        ),
        "growth": lambda: growth.run(dbs, sizes=sizes["growth_sizes"], rounds=max(3, rounds + 1)),
        "memory": lambda: memory.run(dbs, procs, tasks=sizes["memory_tasks"]),
    }
    results: dict[str, Any] = {
        "environment": env,
        "sizes": sizes,
        "database_prefix": dbs.prefix,
        "scenarios": {},
    }
    failed = []
    try:
        for name in chosen:
            started = time.monotonic()
            try:
                report = runners[name]()
            except Exception as exc:  # one broken scenario must not hide the others
                failed.append(name)
                print(f"== {name} == FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
                results["scenarios"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            finally:
                procs.close()
            report.setup["elapsed seconds"] = round(time.monotonic() - started, 1)
            print(report.table(), flush=True)
            data = report.as_dict()
            print(json.dumps({k: v for k, v in data.items() if k != "samples"}))
            (args.out / f"{name}.json").write_text(json.dumps(data, indent=1))
            results["scenarios"][name] = data
    finally:
        procs.close()
        dbs.close()
        (args.out / "all.json").write_text(json.dumps(results, indent=1))
    print(f"JSON in {args.out}/, process logs in {logs}/")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
