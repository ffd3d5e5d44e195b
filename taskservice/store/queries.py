"""Loads the named SQL statements of `sql/` and renders them for asyncpg or psycopg."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
# `:name` but not the second colon of a `::type` cast.
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
# A statement whose best plan depends on its arguments (optional filters).
_CUSTOM_PLAN = re.compile(r"^-- plan: custom\s*$", re.MULTILINE)


def sql_dir() -> Path:
    """The `sql/` folder: beside the package in a checkout, inside it in a wheel."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parent / "sql", package / "sql"):
        if (candidate / "queries.sql").is_file():
            return candidate
    raise FileNotFoundError(f"no sql/queries.sql next to or inside {package}")


@dataclass(frozen=True)
class Query:
    """One named statement, with `:name` parameters."""

    name: str
    text: str

    @functools.cached_property
    def param_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_PARAM.findall(self.text)))

    @functools.cached_property
    def custom_plan(self) -> bool:
        """Marked `-- plan: custom`: to be planned for each call's arguments."""
        return bool(_CUSTOM_PLAN.search(self.text))

    @functools.cached_property
    def asyncpg_text(self) -> str:
        positions = {name: i + 1 for i, name in enumerate(self.param_names)}
        return _PARAM.sub(lambda m: f"${positions[m.group(1)]}", self.text)

    @functools.cached_property
    def psycopg_text(self) -> str:
        return _PARAM.sub(lambda m: f"%({m.group(1)})s", self.text.replace("%", "%%"))

    def psycopg_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Named parameters for psycopg: dicts and lists as JSON text (the query
        casts them to jsonb), the rest as they are."""
        return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in params.items()}

    def asyncpg_args(self, params: dict[str, Any]) -> list[Any]:
        """The positional arguments asyncpg wants, from named ones."""
        missing = set(self.param_names) - params.keys()
        extra = params.keys() - set(self.param_names)
        if missing or extra:
            raise TypeError(
                f"query {self.name}: missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        return [params[name] for name in self.param_names]


def parse(text: str) -> dict[str, Query]:
    """Split a file of `-- name: x` sections into queries by name."""
    parts = _NAME_LINE.split(text)
    queries: dict[str, Query] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = Query(name=name, text=body.strip())
    return queries


@functools.cache
def all_queries() -> dict[str, Query]:
    return parse((sql_dir() / "queries.sql").read_text(encoding="utf-8"))


def query(name: str) -> Query:
    """The statement called `name` in sql/queries.sql."""
    return all_queries()[name]
