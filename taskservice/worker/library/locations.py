"""Where files.transfer reads and writes: `file:` paths under the files root,
`s3://bucket/key` and http(s) URLs, parsed and checked against the deployment."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from taskservice.errors import ParamRefused
from taskservice.services.destinations import DestinationRefused, check_destination
from taskservice.settings import Settings

Role = Literal["source", "destination"]

HTTP_SETTING = "TASKSERVICE_HTTP_ALLOWED_HOSTS"
# S3's rules for bucket names (3-63 characters, lowercase letters, digits, dots, hyphens).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class FileLocation:
    """A path relative to TASKSERVICE_FILES_ROOT, taken literally (no %-decoding)."""

    path: str


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str


@dataclass(frozen=True)
class HttpLocation:
    url: str


Location = FileLocation | S3Location | HttpLocation


def parse_location(text: str, role: Role) -> Location:
    """The location `text` names; ValueError saying what is wrong. Only what
    needs no deployment is checked here: the root, buckets and hosts are
    `check_location`'s."""
    if "\x00" in text:
        raise ValueError("may not contain a NUL character")
    if text.startswith("file:"):
        return FileLocation(_relative_path(text.removeprefix("file:")))
    if text.startswith("s3://"):
        bucket, _, key = text.removeprefix("s3://").partition("/")
        if not _BUCKET.match(bucket):
            raise ValueError(f"{bucket!r} is not a valid S3 bucket name")
        if not key or key.endswith("/") or len(key.encode()) > _MAX_KEY_BYTES:
            raise ValueError("an s3:// location needs an object key: s3://bucket/key")
        return S3Location(bucket, key)
    if text.startswith(("http://", "https://")):
        if role == "destination":
            raise ValueError("a destination is a file: path or an s3:// location, not a URL")
        return HttpLocation(text)
    allowed = "file:path, s3://bucket/key" + (" or an http(s):// URL" if role == "source" else "")
    raise ValueError(f"must be {allowed}")


def _relative_path(path: str) -> str:
    """`path` if it is a relative path that stays in the root by its own text."""
    if not path or path.endswith("/"):
        raise ValueError("a file: location names a file relative to the files root")
    if path.startswith("/"):
        raise ValueError("absolute paths are refused: file: paths are relative to the files root")
    if ".." in path.split("/"):
        raise ValueError("'..' is refused in file: paths")
    return path


def resolve_in_root(settings: Settings, location: FileLocation) -> Path:
    """The real path of `location`, symlinks resolved, if it stays inside the
    files root; else ValueError. Resolves what exists now: call it again right
    before opening."""
    if settings.files_root is None:
        raise ValueError("file: locations are disabled on this deployment (TASKSERVICE_FILES_ROOT)")
    root = settings.files_root.resolve()
    target = (root / location.path).resolve()
    if target == root or not target.is_relative_to(root):
        raise ValueError(f"{location.path!r} resolves outside the files root (a symlink out of it)")
    return target


async def check_location(text: str, role: Role, settings: Settings) -> Location:
    """Parse `text` and check it against the deployment: ParamRefused at `role`
    for a path outside the root, a bucket not listed or a host not allowed."""
    try:
        location = parse_location(text, role)
        if isinstance(location, FileLocation):
            resolve_in_root(settings, location)
    except ValueError as exc:
        raise ParamRefused((role,), str(exc), "path_refused") from exc
    if isinstance(location, S3Location) and location.bucket not in settings.s3_allowed_buckets:
        raise ParamRefused(
            (role,),
            f"bucket {location.bucket!r} is not in TASKSERVICE_S3_ALLOWED_BUCKETS",
            "s3_target_refused",
        )
    if isinstance(location, HttpLocation):
        try:
            await check_destination(
                location.url, settings.http_allowed_hosts, setting=HTTP_SETTING, field=role
            )
        except DestinationRefused as exc:
            raise ParamRefused((role,), str(exc), "destination_refused") from exc
    return location
