"""Backoff bounds, what counts as a lost database, and what a worker's state says."""

from __future__ import annotations

import time

import psycopg
import pytest
from procrastinate import exceptions

from taskservice.worker.resilient import (
    RECONNECT_CAP_SECONDS,
    Backoff,
    DatabaseLink,
    is_connection_error,
)


@pytest.mark.parametrize("draw", [0.0, 0.5, 1.0])
def test_backoff_doubles_within_jitter_and_is_capped(draw: float) -> None:
    backoff = Backoff(first=0.2, cap=3.0, rng=lambda: draw)
    delays = [backoff.next() for _ in range(10)]
    ceilings = [min(3.0, 0.2 * 2**n) for n in range(10)]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= RECONNECT_CAP_SECONDS


def test_backoff_draws_differ() -> None:
    """Workers that lost the database together do not retry in step."""
    delays = {Backoff().next() for _ in range(20)}
    assert len(delays) > 1


def _wrapped(cause: BaseException) -> exceptions.ConnectorException:
    try:
        raise exceptions.ConnectorException from cause
    except exceptions.ConnectorException as exc:
        return exc


def test_connection_errors_are_told_from_bugs() -> None:
    assert is_connection_error(_wrapped(psycopg.OperationalError("connection refused")))
    assert is_connection_error(_wrapped(psycopg.errors.AdminShutdown("terminated")))
    assert is_connection_error(ConnectionResetError())
    assert not is_connection_error(_wrapped(psycopg.errors.UndefinedTable("no table")))
    assert not is_connection_error(_wrapped(psycopg.errors.RaiseException("not in doing")))
    assert not is_connection_error(ValueError("bug"))


def test_link_says_why_the_worker_cannot_work() -> None:
    link = DatabaseLink()
    assert link.not_ready_reason() == "the worker is starting"
    link.running = True
    assert link.not_ready_reason() is None
    link.down_since = time.monotonic() - 12
    link.last_error = "OperationalError: connection refused"
    reason = link.not_ready_reason()
    assert reason is not None
    assert "reconnecting" in reason
    assert "connection refused" in reason
    link.stopped = "the database was unreachable for more than 300 s"
    assert link.not_ready_reason() == (
        "the worker stopped: the database was unreachable for more than 300 s"
    )
