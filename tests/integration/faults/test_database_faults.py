"""The service through database faults: restart, terminated backends, no free
connection slot, an outage past the workers' grace. Real processes, a
PostgreSQL of the test's own (tests/disposable_pg.py)."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.disposable_pg import DisposablePostgres, wait_until
from tests.processes import ServiceProcess, service_env, service_process

pytestmark = pytest.mark.fault

# Each bound comes from the issue; a test fails when one is not kept.
ANSWER_WITHIN = 5.0  # an API answer during an outage
RESUME_WITHIN = 10.0  # API and workers, after the database is back


def _rows(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def _worker_ids(url: str) -> set[int]:
    return {row[0] for row in _rows(url, "SELECT id FROM procrastinate_workers")}


def _unfinished(url: str, ids: list[int]) -> dict[str, int]:
    rows = _rows(
        url,
        "SELECT status::text, count(*) FROM procrastinate_jobs "
        "WHERE id = ANY(%s) AND status <> 'succeeded' GROUP BY status",
        ids,
    )
    return dict(rows)


@dataclass
class Answer:
    sent: float  # time.monotonic()
    took: float
    status: int | None  # None: no HTTP answer (refused, timed out)
    retry_after: str | None
    task_id: int | None


def _submit_until(base: str, stop: threading.Event, answers: list[Answer]) -> None:
    with httpx.Client(base_url=base, timeout=30) as http:
        value = 0
        while not stop.is_set():
            value += 1
            sent = time.monotonic()
            try:
                response = http.post("/tasks", json={"type": "echo", "params": {"value": value}})
            except httpx.HTTPError:
                answers.append(Answer(sent, time.monotonic() - sent, None, None, None))
                continue
            created = response.status_code == 201
            answers.append(
                Answer(
                    sent,
                    time.monotonic() - sent,
                    response.status_code,
                    response.headers.get("retry-after"),
                    response.json()["id"] if created else None,
                )
            )
            if not created:
                time.sleep(0.05)


@contextlib.contextmanager
def _clients(base: str, count: int) -> Any:
    stop = threading.Event()
    answers: list[Answer] = []
    threads = [
        threading.Thread(target=_submit_until, args=(base, stop, answers)) for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    try:
        yield answers
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


def _first_after(answers: list[Answer], moment: float, status: int) -> float:
    return min(a.sent + a.took for a in answers if a.sent >= moment and a.status == status)


def test_immediate_restart_under_load_loses_nothing(
    pg: DisposablePostgres, pg_url: str, tmp_path: Path
) -> None:
    """Fault 1: API and two workers as processes, 8 clients submitting, PostgreSQL
    restarted with `-m immediate` and down 3 s: every 201 completes, outage answers
    are 503 with Retry-After within 5 s, API and workers resume within 10 s of the
    database's return, no process restarted."""
    env = service_env(pg_url, concurrency=4, api_pool_size=8)
    with (
        service_process("api", env, tmp_path) as api,
        service_process("worker", service_env(pg_url), tmp_path) as worker_a,
        service_process("worker", service_env(pg_url), tmp_path) as worker_b,
    ):
        wait_until(lambda: len(_worker_ids(pg_url)) == 2, within=30)
        workers_before = _worker_ids(pg_url)
        with _clients(api.base, 8) as answers:
            time.sleep(2)
            pg.stop("immediate")
            down_at = time.monotonic()
            time.sleep(3)
            pg.start()
            back_at = time.monotonic()
            (db_back,) = _rows(pg_url, "SELECT now()")[0]
            # Both workers resume: the same two, heartbeating again.
            worker_resume = wait_until(
                lambda: (
                    _rows(
                        pg_url,
                        "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > %s",
                        db_back,
                    )[0][0]
                    == 2
                ),
                within=RESUME_WITHIN,
            )
            time.sleep(4)
        processes: list[ServiceProcess] = [api, worker_a, worker_b]
        assert all(p.alive() for p in processes), [p.last_line() for p in processes]
        assert _worker_ids(pg_url) == workers_before  # none restarted or re-registered

        statuses = {a.status for a in answers}
        assert statuses <= {201, 503}, statuses
        slow = [a for a in answers if a.took > ANSWER_WITHIN]
        assert not slow, f"{len(slow)} answers slower than {ANSWER_WITHIN} s: {slow[:3]}"
        unavailable = [a for a in answers if a.status == 503]
        assert unavailable, "no request met the outage"
        assert all(a.retry_after for a in unavailable)
        api_resume = _first_after(answers, back_at, 201) - back_at
        assert api_resume < RESUME_WITHIN

        acknowledged = [a.task_id for a in answers if a.task_id is not None]
        started_late = [a for a in answers if a.sent > down_at and a.status == 201]
        assert started_late, "no task was acknowledged after the restart"
        try:
            wait_until(lambda: not _unfinished(pg_url, acknowledged), within=60, interval=0.5)
        except AssertionError:
            left = _rows(
                pg_url,
                "SELECT id, status::text, worker_id, attempts FROM procrastinate_jobs "
                "WHERE id = ANY(%s) AND status <> 'succeeded' ORDER BY id LIMIT 10",
                acknowledged,
            )
            workers = _rows(pg_url, "SELECT id, last_heartbeat FROM procrastinate_workers")
            raise AssertionError(f"unfinished: {left}; workers: {workers}") from None
        print(
            f"fault 1: {len(acknowledged)} acknowledged, {len(unavailable)} answered 503, "
            f"slowest answer {max(a.took for a in answers):.2f} s; after the database "
            f"returned: API answered 201 in {api_resume:.2f} s, both workers "
            f"heartbeating in {worker_resume:.2f} s"
        )


def _start_latencies(url: str, ids: list[int]) -> list[float]:
    rows = _rows(
        url,
        "SELECT extract(epoch FROM s.at - d.at) FROM procrastinate_events d "
        "JOIN procrastinate_events s ON s.job_id = d.job_id AND s.type = 'started' "
        "WHERE d.type = 'deferred' AND d.job_id = ANY(%s)",
        ids,
    )
    return [float(row[0]) for row in rows]


def test_terminated_worker_backends_are_replaced(
    pg: DisposablePostgres, pg_url: str, tmp_path: Path
) -> None:
    """Fault 2: pg_terminate_backend on every connection of the workers, LISTEN
    included: they stay up, and new tasks start within 1 s on average."""
    with (
        service_process("api", service_env(pg_url), tmp_path) as api,
        service_process("worker", service_env(pg_url), tmp_path) as worker_a,
        service_process("worker", service_env(pg_url), tmp_path) as worker_b,
        httpx.Client(base_url=api.base, timeout=10) as http,
    ):
        wait_until(lambda: len(_worker_ids(pg_url)) == 2, within=30)
        workers_before = _worker_ids(pg_url)
        listeners = "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%%'"
        wait_until(lambda: _rows(pg_url, listeners)[0][0] >= 2, within=10)
        terminate = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE 'taskservice-queue%%'"
        )
        # While tasks come in, so that some statements are cut mid-flight.
        terminated = 0
        with _clients(api.base, 2) as answers:
            for _ in range(5):
                time.sleep(0.5)
                terminated += _rows(pg_url, terminate)[0][0]
        during = [a.task_id for a in answers if a.task_id is not None]
        assert terminated >= 10  # at least a pooled and a LISTEN connection each, each time
        ids = []
        for value in range(20):
            response = http.post("/tasks", json={"type": "echo", "params": {"value": value}})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
            time.sleep(0.2)
        wait_until(lambda: not _unfinished(pg_url, ids + during), within=30)
        latencies = _start_latencies(pg_url, ids)
        assert worker_a.alive()
        assert worker_b.alive()
        assert _worker_ids(pg_url) == workers_before
        assert statistics.mean(latencies) < 1.0, latencies
        # The LISTEN connections are back too.
        wait_until(lambda: _rows(pg_url, listeners)[0][0] >= 2, within=RESUME_WITHIN)
        print(
            f"fault 2: {terminated} backends terminated; start latency after: mean "
            f"{statistics.mean(latencies):.3f} s, max {max(latencies):.3f} s"
        )


def test_no_free_connection_slot(pg: DisposablePostgres, pg_url: str, tmp_path: Path) -> None:
    """Fault 7: another client takes every connection slot: the API answers within
    5 s (from its pool, or 503), /health/ready fails; both recover within 10 s of
    the slots' release."""
    with (
        service_process("api", service_env(pg_url), tmp_path) as api,
        httpx.Client(base_url=api.base, timeout=30) as http,
    ):
        assert http.get("/health/ready").status_code == 200
        hog: list[psycopg.Connection[Any]] = []
        try:
            refused = None
            while refused is None:
                try:
                    hog.append(psycopg.connect(pg_url, connect_timeout=5))
                except psycopg.OperationalError as exc:
                    refused = str(exc)
            assert "too many clients" in refused or "remaining connection" in refused
            answers = []
            for value in range(10):
                sent = time.monotonic()
                response = http.post("/tasks", json={"type": "echo", "params": {"value": value}})
                answers.append((response.status_code, time.monotonic() - sent))
                assert response.status_code in (201, 503), response.text
                if response.status_code == 503:
                    assert response.headers.get("retry-after")
            sent = time.monotonic()
            ready = http.get("/health/ready")
            answers.append((ready.status_code, time.monotonic() - sent))
            assert ready.status_code == 503
            assert ready.json()["reason"]
            assert ready.headers.get("retry-after")
            assert max(took for _, took in answers) < ANSWER_WITHIN, answers
        finally:
            released_at = time.monotonic()
            for conn in hog:
                conn.close()
        recovered = wait_until(
            lambda: (
                http.get("/health/ready").status_code == 200
                and http.post("/tasks", json={"type": "echo", "params": {"value": 0}}).status_code
                == 201
            ),
            within=RESUME_WITHIN,
        )
        print(
            f"fault 7: {len(hog)} slots taken; slowest answer meanwhile "
            f"{max(took for _, took in answers):.2f} s; ready again "
            f"{time.monotonic() - released_at:.2f} s after release ({recovered:.2f} s polled)"
        )


def test_outage_past_the_grace_stops_workers_and_up(
    pg: DisposablePostgres, pg_url: str, tmp_path: Path
) -> None:
    """Fault 9: PostgreSQL stopped past TASKSERVICE_WORKER_DB_GRACE_SECONDS: a
    worker and `taskservice up` exit non-zero within grace + 30 s, saying why."""
    grace = 5.0
    with (
        service_process(
            "worker", service_env(pg_url, worker_db_grace_seconds=grace), tmp_path
        ) as worker,
        service_process("up", service_env(pg_url, worker_db_grace_seconds=grace), tmp_path) as up,
    ):
        wait_until(lambda: len(_worker_ids(pg_url)) == 2, within=30)
        pg.stop("fast")
        stopped_at = time.monotonic()
        exits = {}
        for name, service in (("worker", worker), ("up", up)):
            service.process.wait(timeout=max(1.0, stopped_at + grace + 30 - time.monotonic()))
            exits[name] = time.monotonic() - stopped_at
            assert service.process.returncode not in (0, None)
            assert "unreachable for more than" in service.last_line(), service.last_line()
        print(
            f"fault 9: grace {grace:g} s; worker exited after {exits['worker']:.1f} s, "
            f"up after {exits['up']:.1f} s"
        )
