"""Settings from the environment."""

from __future__ import annotations

import pytest

from taskservice.settings import Settings


def test_database_url_and_lists_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/x")
    monkeypatch.setenv("TASKSERVICE_TASK_MODULES", "a.tasks, b.tasks")
    monkeypatch.setenv("TASKSERVICE_QUEUES", "emails")
    settings = Settings()
    assert settings.database_url == "postgresql://db/x"
    assert settings.task_modules == ["a.tasks", "b.tasks"]
    assert settings.queues == ["emails"]


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.database_url is None
    assert (settings.host, settings.port, settings.concurrency) == ("127.0.0.1", 8000, 16)


def test_secrets_and_sql_statements_are_gathered_by_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKSERVICE_SECRET_STRIPE", "sk_test_1")
    monkeypatch.setenv("TASKSERVICE_SECRET_Api_Key", "k2")
    monkeypatch.setenv("TASKSERVICE_SQL_PURGE_SESSIONS", "delete from sessions")
    # A map's own variable is not read: it would be the statement `statements`.
    monkeypatch.setenv("TASKSERVICE_SQL_STATEMENTS", "select 1")
    monkeypatch.setenv("TASKSERVICE_SECRETS", "not json")
    settings = Settings()
    assert {name: value.get_secret_value() for name, value in settings.secrets.items()} == {
        "stripe": "sk_test_1",
        "api_key": "k2",
    }
    assert settings.sql_statements == {
        "purge_sessions": "delete from sessions",
        "statements": "select 1",
    }
    assert "sk_test_1" not in repr(settings)
    # Given directly (as tests do), names are case-insensitive too.
    assert set(Settings(secrets={"Stripe": "x"}).secrets) >= {"stripe"}
