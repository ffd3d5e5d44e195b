"""Where batch.map's items come from: a `source` (JSON lines or CSV) read over HTTP
or from under TASKSERVICE_FILES_ROOT, split into records."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from taskservice.errors import ParamRefused
from taskservice.settings import Settings
from taskservice.worker.failures import DoNotRetry
from taskservice.worker.library import outbound

SourceFormat = Literal["jsonl", "csv"]

_SUFFIXES: dict[str, SourceFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_FETCH_TIMEOUT_SECONDS = 30.0


def source_format(source: str, given: SourceFormat | None) -> SourceFormat:
    """The format asked for, or the one the source's name ends with."""
    if given is not None:
        return given
    name = source.split("?", 1)[0].split("#", 1)[0]
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ParamRefused(
            ("format",),
            "cannot tell the source's format from its name (.jsonl, .ndjson or .csv); "
            "give `format`: jsonl or csv",
            "format_unknown",
        )
    return _SUFFIXES[suffix]


def file_path(source: str, settings: Settings) -> Path:
    """The file a `file:` source names, inside TASKSERVICE_FILES_ROOT (symlinks
    resolved), or ParamRefused."""
    root = settings.files_root
    if root is None:
        raise ParamRefused(
            ("source",), "file: sources are disabled (TASKSERVICE_FILES_ROOT is unset)"
        )
    relative = PurePosixPath(source.removeprefix("file:"))
    if not relative.parts or relative.is_absolute() or ".." in relative.parts:
        raise ParamRefused(
            ("source",),
            "a file: source is a path relative to TASKSERVICE_FILES_ROOT, without '..'",
            "path_refused",
        )
    base = Path(root).resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise ParamRefused(
            ("source",), "the path leads outside TASKSERVICE_FILES_ROOT", "path_refused"
        )
    return path


async def check_source(source: str, settings: Settings) -> None:
    """Refuse a source the deployment does not allow (ParamRefused at `source`)."""
    if source.startswith("file:"):
        file_path(source, settings)
        return
    await outbound.check_url(source, settings, ("source",))


async def read_source(source: str, settings: Settings) -> bytes:
    """The whole source, at most TASKSERVICE_BATCH_MAP_MAX_SOURCE_BYTES. Checked
    again here (DNS answers change); a source that cannot be read for good (a
    4xx, a missing file, too large) raises DoNotRetry."""
    await check_source(source, settings)
    limit = settings.batch_map_max_source_bytes
    if source.startswith("file:"):
        path = file_path(source, settings)
        try:
            with path.open("rb") as file:
                data = file.read(limit + 1)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise DoNotRetry(f"cannot read the source file: {exc.strerror}") from exc
    else:
        data = await fetch_url(source, limit + 1, settings)
    if len(data) > limit:
        raise DoNotRetry(
            f"the source is larger than {limit} bytes (TASKSERVICE_BATCH_MAP_MAX_SOURCE_BYTES)"
        )
    return data


async def fetch_url(url: str, most: int, settings: Settings) -> bytes:
    """GET `url` through the library's outbound client (each connection checked
    against the allowlist at connect time), reading at most `most` bytes. A
    refused destination or a 3xx/4xx raises DoNotRetry; a 5xx or a connection
    error raises httpx's error, which the retry policy retries."""
    try:
        async with (
            outbound.client(settings, timeout=_FETCH_TIMEOUT_SECONDS) as client,
            client.stream("GET", url) as response,
        ):
            if 300 <= response.status_code < 500:
                raise DoNotRetry(
                    f"the source answered {response.status_code}",
                    details={"status": response.status_code},
                )
            response.raise_for_status()
            data, _ = await outbound.read_capped(response, most)
            return data
    except outbound.DestinationRefused as exc:
        raise DoNotRetry(f"source refused: {exc}") from exc
    except outbound.UndecodableBody as exc:
        raise DoNotRetry(f"source unreadable: {exc}") from exc


@dataclass(frozen=True)
class Record:
    """One record of a source: its index (0-based, blank lines skipped) and
    either its fields or why it cannot be read."""

    index: int
    fields: dict[str, Any] | None = None
    error: str | None = None


def records(data: bytes, fmt: SourceFormat) -> Iterator[Record]:
    """The source's records, in order. Text that is not UTF-8 raises DoNotRetry."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DoNotRetry(f"the source is not UTF-8 text: {exc}") from exc
    if fmt == "jsonl":
        yield from _json_lines(text)
    else:
        yield from _csv_rows(text)


def _json_lines(text: str) -> Iterator[Record]:
    index = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Record(index, error=f"not JSON: {exc}")
        else:
            if isinstance(value, dict):
                yield Record(index, fields=value)
            else:
                yield Record(index, error="a line must be a JSON object (the item's params)")
        index += 1


def _csv_rows(text: str) -> Iterator[Record]:
    """Rows under a header row of param names; an empty cell is an absent param."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for index, row in enumerate(reader):
            if None in row:
                yield Record(index, error="the row has more cells than the header")
                continue
            yield Record(index, fields={k: v for k, v in row.items() if v not in (None, "")})
    except csv.Error as exc:
        raise DoNotRetry(f"the source is not valid CSV: {exc}") from exc
