"""The service's exceptions: one root, one subclass per thing that can go wrong."""

from __future__ import annotations

from typing import Any


class TaskServiceError(Exception):
    """Root of every error the service raises on purpose."""


class ConfigurationError(TaskServiceError):
    """The deployment is set up wrongly (bad setting, missing module)."""


class TaskNotFound(TaskServiceError):
    def __init__(self, task_id: int) -> None:
        super().__init__(f"no task with id {task_id}")
        self.task_id = task_id


class TaskAlreadyFinished(TaskServiceError):
    def __init__(self, task_id: int, status: str) -> None:
        super().__init__(
            f"task {task_id} is already {status}; only pending or running tasks can be cancelled"
        )
        self.task_id = task_id
        self.status = status


class TaskNotRetryable(TaskServiceError):
    def __init__(self, task_id: int, status: str) -> None:
        super().__init__(
            f"task {task_id} is {status}; only failed or cancelled tasks can be retried"
        )
        self.task_id = task_id
        self.status = status


class UniqueKeyTaken(TaskServiceError):
    def __init__(self, unique_key: str, task_id: int | None) -> None:
        super().__init__(f"task {task_id} is already pending with unique_key {unique_key!r}")
        self.unique_key = unique_key
        self.task_id = task_id


class IdempotencyKeyReused(TaskServiceError):
    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was used for a different request; use a new key")
        self.key = key


class BatchNotFound(TaskServiceError):
    def __init__(self, batch_id: int) -> None:
        super().__init__(f"no batch with id {batch_id}")
        self.batch_id = batch_id


class ScheduleNotFound(TaskServiceError):
    def __init__(self, schedule_id: int) -> None:
        super().__init__(f"no schedule with id {schedule_id}")
        self.schedule_id = schedule_id


class ScheduleReadOnly(TaskServiceError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"schedule {name!r} is declared in code: change it there; here it can only be "
            "paused, resumed or run now"
        )
        self.name = name


class ScheduleNameTaken(TaskServiceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a schedule named {name!r} exists already")
        self.name = name


class InvalidTaskRequest(TaskServiceError):
    """A submission that names an unknown type or carries bad params.

    `errors` follows FastAPI's validation format: dicts with loc, msg and type."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(error["msg"]) for error in errors))
        self.errors = errors


class ParamRefused(TaskServiceError):
    """A task type's own check refused a parameter (a host not allowed, a path
    outside the root, an unknown secret name). `loc` is the path inside params;
    the submission answers 422 with it, and a run fails without retry."""

    def __init__(self, loc: tuple[str | int, ...], message: str, kind: str = "param_refused"):
        super().__init__(message)
        self.loc = loc
        self.kind = kind


class DatabaseUnavailable(TaskServiceError):
    """The database cannot be reached, or dropped the connection: retry later."""


class WorkerStopped(TaskServiceError):
    """A worker stopped without being asked to: the database was unreachable past
    the grace period, or one of its loops failed. Its supervisor should restart it."""


class UniqueViolation(TaskServiceError):
    """A write broke a unique constraint or index, named by `constraint`."""

    def __init__(self, constraint: str | None) -> None:
        super().__init__(f"unique constraint {constraint} violated")
        self.constraint = constraint


class DatabaseError(TaskServiceError):
    """The database refused a statement (a bug, a missing schema, a permission)."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class SchemaMismatch(TaskServiceError):
    """The database's schema is not one `taskservice migrate` can bring up to date."""


class MigrationLocked(TaskServiceError):
    """A migration step could not take its lock in time: other sessions hold it."""

    def __init__(self, step: str, open_transactions: list[dict[str, Any]]) -> None:
        sessions = "; ".join(
            f"pid {row['pid']} ({row['state']} for {row['seconds']:.0f} s: {row['query']})"
            for row in open_transactions
        )
        super().__init__(
            f"migrate: {step} could not take its lock: another session holds it, most "
            f"likely a long query or an open transaction. Oldest open transactions: "
            f"{sessions or 'none now'}. Nothing of this step was applied; run migrate "
            "again once they end (or raise TASKSERVICE_MIGRATE_LOCK_WAIT_SECONDS)."
        )
        self.step = step
        self.open_transactions = open_transactions


class NotAuthenticated(TaskServiceError):
    """No API key, or one that is malformed, unknown or revoked."""


class MissingScope(TaskServiceError):
    def __init__(self, scope: str) -> None:
        super().__init__(f"this API key lacks the {scope!r} scope")
        self.scope = scope


class ApiKeyNotFound(TaskServiceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no API key named {name!r}")
        self.name = name


class ApiKeyNameTaken(TaskServiceError):
    def __init__(self, name: str) -> None:
        super().__init__(f"an API key named {name!r} exists already")
        self.name = name
