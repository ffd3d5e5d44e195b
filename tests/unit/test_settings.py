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
    assert (settings.host, settings.port, settings.concurrency) == ("127.0.0.1", 8000, 4)
