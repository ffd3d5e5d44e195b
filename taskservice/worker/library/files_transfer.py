"""files.transfer: copy one file from an http(s) URL, the files root or S3 to the
files root or S3, streamed in chunks, checksummed, never leaving a partial copy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import stat
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from procrastinate import JobContext
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from taskservice.registry import RetryPolicy, task_type
from taskservice.settings import Settings
from taskservice.worker.library import s3
from taskservice.worker.library.errors import (
    ChecksumMismatch,
    TransferInterrupted,
    TransferRefused,
)
from taskservice.worker.library.http_source import open_http
from taskservice.worker.library.locations import (
    FileLocation,
    HttpLocation,
    Location,
    S3Location,
    check_location,
    parse_location,
    resolve_in_root,
)
from taskservice.worker.progress import report_progress

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

# Memory per run is one chunk (plus one S3 part when the destination is S3).
CHUNK_SIZE = 1024 * 1024

Chunks = AsyncGenerator[bytes, None]


def _source(value: str) -> str:
    parse_location(value, "source")
    return value


def _destination(value: str) -> str:
    parse_location(value, "destination")
    return value


class TransferParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Annotated[str, AfterValidator(_source)] = Field(
        max_length=4096,
        description="`file:path` (relative to TASKSERVICE_FILES_ROOT), `s3://bucket/key` "
        "or an http(s):// URL on TASKSERVICE_HTTP_ALLOWED_HOSTS.",
        examples=["https://example.com/export.csv"],
    )
    destination: Annotated[str, AfterValidator(_destination)] = Field(
        max_length=4096,
        description="`file:path` or `s3://bucket/key`; replaced whole once every byte "
        "arrived (and matched `sha256`), never left half-written.",
        examples=["file:reports/export.csv"],
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="Expected SHA-256 (hex) of the content: a mismatch fails the task "
        "without retry and leaves the destination untouched.",
    )


async def check_transfer(params: TransferParams, settings: Settings) -> None:
    """Both ends against the deployment: the files root, the S3 buckets, the HTTP hosts."""
    await check_location(params.source, "source", settings)
    await check_location(params.destination, "destination", settings)


@task_type(
    "files.transfer",
    params=TransferParams,
    retry=RetryPolicy(
        max_attempts=5, backoff_seconds=5.0, backoff_factor=2.0, retry_on=(TransferInterrupted,)
    ),
    timeout_seconds=6 * 3600,
    check=check_transfer,
)
async def files_transfer(
    params: TransferParams, context: JobContext, *, settings: Settings
) -> dict[str, Any]:
    """Copy `source` to `destination` in chunks, reporting bytes copied; result
    `{"bytes", "sha256"}`. Retried after connection errors, timeouts and 5xx
    answers; a refused path, a missing source or a checksum mismatch fails at once."""
    source = parse_location(params.source, "source")
    destination = parse_location(params.destination, "destination")
    client = None
    if isinstance(source, S3Location) or isinstance(destination, S3Location):
        client = await asyncio.to_thread(s3.make_client, settings)
    digest = hashlib.sha256()
    copied = 0
    async with _open_source(source, settings, client) as (size, chunks):
        sink = await _open_sink(destination, settings, client)
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    digest.update(chunk)
                    copied += len(chunk)
                    await sink.write(chunk)
                    _report(context, copied, size)
            actual = digest.hexdigest()
            if params.sha256 is not None and actual != params.sha256.lower():
                raise ChecksumMismatch(
                    "checksum mismatch: the source's content is not the expected one; "
                    "the destination was left untouched",
                    details={"expected": params.sha256.lower(), "actual": actual, "bytes": copied},
                )
            await sink.commit()
        except BaseException:
            try:
                await sink.abort()
            except Exception:  # the transfer's own failure is the one to report
                logger.warning("could not clean up after a failed transfer", exc_info=True)
            raise
    return {"bytes": copied, "sha256": actual}


def _report(context: JobContext, copied: int, size: int | None) -> None:
    if size:
        report_progress(context, min(copied / size, 1.0), f"{copied:,} of {size:,} bytes")
    else:
        report_progress(context, None, f"{copied:,} bytes")


def _in_root(settings: Settings, location: FileLocation) -> Path:
    """The path resolved again right before it is opened (symlinks may have
    changed since the check)."""
    try:
        return resolve_in_root(settings, location)
    except ValueError as exc:
        raise TransferRefused(f"file:{location.path} refused: {exc}") from exc


@contextlib.asynccontextmanager
async def _open_source(
    location: Location, settings: Settings, client: S3Client | None
) -> AsyncIterator[tuple[int | None, Chunks]]:
    if isinstance(location, HttpLocation):
        async with open_http(location.url, settings, CHUNK_SIZE) as opened:
            size, raw = opened

            async def relay() -> Chunks:
                async for chunk in raw:
                    yield chunk

            yield size, relay()
    elif isinstance(location, S3Location):
        assert client is not None
        yield await s3.download(client, location.bucket, location.key, CHUNK_SIZE)
    else:
        path = _in_root(settings, location)
        try:
            # O_NOFOLLOW: a symlink swapped in since the path was resolved is refused.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise TransferRefused(f"source file:{location.path} does not exist") from exc
        except OSError as exc:
            raise TransferRefused(
                f"source file:{location.path} cannot be read: {exc.strerror}"
            ) from exc
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise TransferRefused(f"source file:{location.path} is not a regular file")

            async def read() -> Chunks:
                while chunk := await asyncio.to_thread(file.read, CHUNK_SIZE):
                    yield chunk

            yield info.st_size, read()


class _Sink(Protocol):
    async def write(self, chunk: bytes) -> None: ...
    async def commit(self) -> None: ...
    async def abort(self) -> None: ...


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would, for a
    moment, for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


class _FileSink:
    """A temporary file beside the target, renamed over it on commit."""

    def __init__(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        # mkstemp makes it 0600; the file should end as any new file would
        # (or keep the mode of the one it replaces).
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
        self._target = target
        self._temporary = Path(name)
        self._file = os.fdopen(fd, "wb")

    async def write(self, chunk: bytes) -> None:
        await asyncio.to_thread(self._file.write, chunk)

    async def commit(self) -> None:
        def finish() -> None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._temporary, self._target)

        await asyncio.to_thread(finish)

    async def abort(self) -> None:
        self._file.close()
        self._temporary.unlink(missing_ok=True)


async def _open_sink(location: Location, settings: Settings, client: S3Client | None) -> _Sink:
    if isinstance(location, S3Location):
        assert client is not None
        return s3.Upload(client, location.bucket, location.key)
    assert isinstance(location, FileLocation)  # parse_location allows no URL here
    target = _in_root(settings, location)
    try:
        return await asyncio.to_thread(_FileSink, target)
    except OSError as exc:
        raise TransferRefused(
            f"destination file:{location.path} cannot be written: {exc.strerror}"
        ) from exc
