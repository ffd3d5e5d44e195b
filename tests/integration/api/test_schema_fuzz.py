"""Schemathesis over the whole OpenAPI document, against the real app (uvicorn, the
limits middleware) on a real database: valid and invalid requests, a fixed seed, a
bounded number of examples. No answer may be a 5xx, and every answer must be one
the document declares, in the shape it declares."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode

from taskservice.api.app import create_app
from taskservice.registry import load_registry
from taskservice.settings import Settings
from tests.api_server import serving
from tests.conftest import janitor
from tests.pg import Server

# Examples per operation and mode; about 20 operations. Raise it locally to dig
# deeper (TASKSERVICE_FUZZ_EXAMPLES); CI keeps the run short.
EXAMPLES = int(os.environ.get("TASKSERVICE_FUZZ_EXAMPLES", "50"))
SEED = 20261130


# Valid by the schema yet refused with a 422 (declared): a cron's grammar, time zone
# names, limits per task type, "cron or interval_seconds, exactly one". JSON Schema
# cannot say these, so acceptance of every schema-valid request is not checked.
EXCLUDED_CHECKS = [schemathesis.checks.positive_data_acceptance]


def fuzz_headers() -> dict[str, str]:
    """Headers every generated request carries (e.g. an API key, once there are keys)."""
    return {}


@pytest.fixture(scope="module")
def fuzz_database_url(pg_server: Server, template_db: str) -> Iterator[str]:
    """One database for the whole run: what one case creates, the next may find."""
    name = f"taskservice_fuzz_{os.getpid()}"
    with janitor(pg_server, name, template_dbname=template_db):
        yield pg_server.url(name)


@pytest.fixture(scope="module")
def fuzz_base_url(
    fuzz_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    settings = Settings(
        database_url=fuzz_database_url,
        data_dir=Path(tmp_path_factory.mktemp("fuzz")),
        migrate_on_start=False,
        metrics_port=None,
        api_pool_size=4,
    )
    app = create_app(settings, registry=load_registry(["tests.task_types"]))
    with serving(app) as url:
        yield url


def _schema() -> schemathesis.BaseSchema:
    """The document of the app the tests run (no database needed to write it).
    Loaded at import, not from a fixture: schemathesis' lazy loader does not run
    on pytest 9.2."""
    settings = Settings(database_url="postgresql://unused/unused", metrics_port=None)
    app = create_app(settings, registry=load_registry(["tests.task_types"]))
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.config.seed = SEED
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=EXAMPLES,
        deterministic=True,
        database="none",
    )
    return schema


schema = _schema()


@schema.parametrize()
@hypothesis.settings(
    deadline=None,
    # Shrinking a failure takes long and the seed is fixed: rerun locally to shrink.
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_every_operation_answers_as_documented(
    case: schemathesis.Case[Any], fuzz_base_url: str
) -> None:
    case.call_and_validate(
        base_url=fuzz_base_url, headers=fuzz_headers(), excluded_checks=EXCLUDED_CHECKS
    )
