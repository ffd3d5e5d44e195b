"""The benchmark suite runs end to end at a tiny size (CI's smoke run; no figures checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.pg import Server

TINY = [
    "--rounds", "1",
    "--drain-tasks", "20",
    "--e2e-tasks", "20",
    "--latency-tasks", "5",
    "--api-seconds", "1",
    "--growth-sizes", "200,400",
    "--memory-tasks", "20",
    "--python-load",  # CI has no wrk; the fallback is what it would use
]  # fmt: skip
SCENARIOS = {"drain", "e2e", "latency", "api", "growth", "memory"}


def test_every_scenario_reports_its_figures_and_targets(pg_server: Server, tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {**os.environ, "BENCH_DATABASE_URL": pg_server.url("postgres")}
    run = subprocess.run(
        [sys.executable, "-m", "bench", "all", *TINY, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "all.json").read_text())
    assert set(results["scenarios"]) == SCENARIOS
    for name, scenario in results["scenarios"].items():
        assert "error" not in scenario, (name, scenario)
        assert scenario["rows"], name
        # e2e's only target is against Celery, skipped (with a note) where it is missing.
        assert scenario["targets"] or "Celery peer skipped" in " ".join(scenario["notes"]), name
        for row in scenario["rows"]:
            assert row["taskservice"] > 0, (name, row)
            if row["peer"] is not None:
                assert row["peer_value"] > 0, (name, row)
        assert json.loads((out / f"{name}.json").read_text()) == scenario
        assert f"== {name} ==" in run.stdout
    assert "target:" in run.stdout
    # Every database the run made is gone.
    with psycopg.connect(pg_server.url("postgres")) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
            (results["database_prefix"],),
        ).fetchall()
    assert left == []
