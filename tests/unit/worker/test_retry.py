"""Retry decisions: the type's policy, overridden per job by max_attempts."""

from __future__ import annotations

import datetime

import pydantic
import pytest
from procrastinate.jobs import Job

from taskservice.registry import RetryPolicy
from taskservice.worker.failures import DoNotRetry, RetryLater
from taskservice.worker.retry import ServiceRetryStrategy


def _job(attempts: int, **options: object) -> Job:
    kwargs: dict[str, object] = {"value": 1}
    if options:
        kwargs["_options"] = options
    return Job(
        id=1,
        queue="default",
        lock=None,
        queueing_lock=None,
        task_name="t",
        task_kwargs=kwargs,  # type: ignore[arg-type]
        attempts=attempts,
    )


def test_retries_until_the_type_max_attempts() -> None:
    strategy = ServiceRetryStrategy(RetryPolicy(max_attempts=3))
    assert strategy.get_retry_decision(exception=ValueError(), job=_job(0)) is not None
    assert strategy.get_retry_decision(exception=ValueError(), job=_job(1)) is not None
    assert strategy.get_retry_decision(exception=ValueError(), job=_job(2)) is None


def test_job_max_attempts_overrides_the_type() -> None:
    strategy = ServiceRetryStrategy(RetryPolicy(max_attempts=5))
    assert strategy.get_retry_decision(exception=ValueError(), job=_job(0, max_attempts=1)) is None


def test_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(backoff_seconds=2, backoff_factor=3, max_backoff_seconds=10)
    assert [policy.wait_after(n) for n in (1, 2, 3)] == [2, 6, 10]
    strategy = ServiceRetryStrategy(RetryPolicy(max_attempts=9, backoff_seconds=60))
    decision = strategy.get_retry_decision(exception=ValueError(), job=_job(0))
    assert decision is not None
    assert decision.retry_at is not None
    wait = decision.retry_at - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(seconds=55) < wait <= datetime.timedelta(seconds=60)


def test_only_listed_exceptions_retry() -> None:
    strategy = ServiceRetryStrategy(RetryPolicy(retry_on=(TimeoutError,)))
    assert strategy.get_retry_decision(exception=TimeoutError(), job=_job(0)) is not None
    assert strategy.get_retry_decision(exception=ValueError(), job=_job(0)) is None


def test_bad_params_never_retry() -> None:
    class Model(pydantic.BaseModel):
        x: int

    with pytest.raises(pydantic.ValidationError) as caught:
        Model.model_validate({"x": "no"})
    strategy = ServiceRetryStrategy(RetryPolicy(max_attempts=5))
    assert strategy.get_retry_decision(exception=caught.value, job=_job(0)) is None


def test_policy_needs_one_attempt() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(max_attempts=0)


def _wait(strategy: ServiceRetryStrategy, exception: BaseException) -> float:
    decision = strategy.get_retry_decision(exception=exception, job=_job(0))
    assert decision is not None
    assert decision.retry_at is not None
    return (decision.retry_at - datetime.datetime.now(datetime.UTC)).total_seconds()


def test_retry_after_is_honoured_within_the_longest_backoff() -> None:
    strategy = ServiceRetryStrategy(
        RetryPolicy(max_attempts=5, backoff_seconds=1, max_backoff_seconds=120)
    )
    assert 29 < _wait(strategy, RetryLater("429", retry_after=30)) <= 30
    # Not sooner than the policy's own backoff...
    assert 0.5 < _wait(strategy, RetryLater("429", retry_after=0)) <= 1
    # ...and never past its longest wait.
    assert 119 < _wait(strategy, RetryLater("429", retry_after=86_400)) <= 120
    assert 0.5 < _wait(strategy, RetryLater("503")) <= 1


def test_do_not_retry_fails_at_once() -> None:
    strategy = ServiceRetryStrategy(RetryPolicy(max_attempts=5))
    assert strategy.get_retry_decision(exception=DoNotRetry("404"), job=_job(0)) is None
