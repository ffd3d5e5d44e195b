"""Task types: a name, a pydantic model for parameters, a function and a retry policy."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from taskservice.errors import ConfigurationError
from taskservice.timing import CatchUp, Timing

if TYPE_CHECKING:
    from taskservice.settings import Settings

# A task type's own check of its validated params against the deployment
# (allowlists, roots, secret names): raises errors.ParamRefused. Runs at
# submission (so a refusal is a 422) and again when the task runs.
ParamsCheck = Callable[[Any, "Settings"], Coroutine[Any, Any, None]]

BUILTIN_MODULES = (
    "taskservice.worker.builtin_tasks",
    "taskservice.worker.housekeeping",
    "taskservice.worker.library",
)
# Names of the service's internal jobs (see worker/rescue.py); the tasks listing hides them.
RESERVED_PREFIX = "taskservice."
# The queue of the service's own jobs. Every worker serves it besides the
# queues it is given, so whichever worker is alive runs them.
INTERNAL_QUEUE = "taskservice"
# The priority of the service's own jobs (dispatcher, rescue, clean-up): the
# highest PostgreSQL integer, one above what a client may ask for, so that a
# backlog of user tasks never delays a schedule or a rescue (Procrastinate
# fetches by priority, then age).
INTERNAL_PRIORITY = 2**31 - 1
# Where a task goes when its submission names no queue.
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed attempt is retried: up to `max_attempts` runs in all,
    waiting `backoff_seconds * backoff_factor ** (attempt - 1)` (factor 1 is a
    constant backoff), at most `max_backoff_seconds`. `retry_on` limits retries
    to those exception types. A submission may ask for up to
    `max_attempts_limit` runs and another `backoff_seconds` (up to the cap)."""

    max_attempts: int = 3
    backoff_seconds: float = 1.0
    backoff_factor: float = 2.0
    max_backoff_seconds: float = 300.0
    max_attempts_limit: int = 10
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= self.max_attempts_limit:
            raise ValueError("max_attempts must be at least 1 and at most max_attempts_limit")
        if self.backoff_seconds < 0 or self.backoff_factor < 1:
            raise ValueError("backoff_seconds must be >= 0 and backoff_factor >= 1")

    def wait_after(self, attempt: int, backoff_seconds: float | None = None) -> float:
        """Seconds to wait after the given (1-based) failed attempt."""
        base = self.backoff_seconds if backoff_seconds is None else backoff_seconds
        wait = base * self.backoff_factor ** (attempt - 1)
        return float(min(wait, self.max_backoff_seconds))


@dataclass(frozen=True)
class TaskType:
    """A kind of task clients may submit, registered once with the queue."""

    name: str
    params_model: type[BaseModel]
    func: Callable[..., Any]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Longest a run may take (a submission may ask for less); None: no limit.
    timeout_seconds: float | None = None
    description: str = ""
    check: ParamsCheck | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    @property
    def wants_context(self) -> bool:
        """Whether the function takes a second positional argument: Procrastinate's JobContext."""
        positional = [
            p
            for p in inspect.signature(self.func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        return len(positional) >= 2

    @property
    def wants_settings(self) -> bool:
        """Whether the function takes the keyword-only argument `settings`: the
        deployment's Settings (allowlists, secrets, servers)."""
        parameter = inspect.signature(self.func).parameters.get("settings")
        return parameter is not None and parameter.kind is parameter.KEYWORD_ONLY


def task_type(
    name: str,
    *,
    params: type[BaseModel],
    retry: RetryPolicy | None = None,
    timeout_seconds: float | None = None,
    check: ParamsCheck | None = None,
) -> Callable[[Callable[..., Any]], TaskType]:
    """Turn a function into a TaskType. The function takes the validated params
    model (and optionally Procrastinate's JobContext, and keyword-only
    `settings`) and returns JSON-able data. `check` refuses params the
    deployment does not allow, at submission and at run time."""

    if name.startswith(RESERVED_PREFIX):
        raise ValueError(f"task type names starting with {RESERVED_PREFIX!r} are the service's own")

    def wrap(func: Callable[..., Any]) -> TaskType:
        return TaskType(
            name=name,
            params_model=params,
            func=func,
            retry=retry or RetryPolicy(),
            timeout_seconds=timeout_seconds,
            description=inspect.getdoc(func) or "",
            check=check,
        )

    return wrap


@dataclass(frozen=True)
class PeriodicSchedule:
    """A schedule declared in code, next to task types: synced into
    taskservice.schedules (source 'code'), read-only through the API but pausable."""

    name: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str = "UTC"
    priority: int = 0
    queue: str = DEFAULT_QUEUE
    catch_up: CatchUp = "once"

    def __post_init__(self) -> None:
        self.timing  # noqa: B018 - validates cron, interval and time zone

    @property
    def timing(self) -> Timing:
        return Timing(
            cron=self.cron, interval_seconds=self.interval_seconds, timezone=self.timezone
        )


@dataclass(frozen=True)
class TaskRegistry(Mapping[str, TaskType]):
    """The task types (and code-declared schedules) this deployment knows, by name."""

    types: dict[str, TaskType]
    schedules: dict[str, PeriodicSchedule] = field(default_factory=dict)

    def __getitem__(self, name: str) -> TaskType:
        return self.types[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.types)

    def __len__(self) -> int:
        return len(self.types)

    @property
    def names(self) -> list[str]:
        """The types clients may submit: all but the service's own."""
        return sorted(name for name in self.types if not name.startswith(RESERVED_PREFIX))


def load_registry(modules: Iterable[str] = ()) -> TaskRegistry:
    """Collect the TaskType and PeriodicSchedule objects of the built-in modules
    and of `modules`."""
    found: dict[str, tuple[str, TaskType]] = {}
    schedules: dict[str, PeriodicSchedule] = {}
    for module_name in [*BUILTIN_MODULES, *modules]:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(
                f"cannot import task module {module_name!r} (TASKSERVICE_TASK_MODULES): {exc}"
            ) from exc
        for value in vars(module).values():
            if isinstance(value, PeriodicSchedule):
                schedules[value.name] = value
            if not isinstance(value, TaskType):
                continue
            if value.name in found and found[value.name][1] is not value:
                raise ConfigurationError(
                    f"task type {value.name!r} is defined in both "
                    f"{found[value.name][0]} and {module_name}"
                )
            found[value.name] = (module_name, value)
    types = {name: entry[1] for name, entry in found.items()}
    for schedule in schedules.values():
        if schedule.type not in types:
            raise ConfigurationError(
                f"schedule {schedule.name!r} runs unknown task type {schedule.type!r}"
            )
    return TaskRegistry(types=types, schedules=schedules)
