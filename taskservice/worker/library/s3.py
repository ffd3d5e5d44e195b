"""S3 objects for files.transfer: a streamed download and an upload that leaves
no object unless committed; boto3's blocking calls run in threads."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

from taskservice.settings import Settings
from taskservice.worker.library.errors import TransferInterrupted, TransferRefused

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# S3's smallest part but the last is 5 MiB; 8 MiB parts keep memory bounded
# and a 100 GB object within the 10,000-part limit.
PART_SIZE = 8 * 1024 * 1024


def make_client(settings: Settings) -> S3Client:
    """An S3 client for TASKSERVICE_S3_ENDPOINT_URL (or AWS), credentials from
    the usual AWS variables. boto3 is imported here: the API process, which
    only parses s3:// locations, never loads it."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=10,
        read_timeout=60,
        # The task's own retry policy retries a failed transfer; botocore's
        # retries inside it only cover a blip.
        retries={"max_attempts": 2, "mode": "standard"},
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=settings.s3_endpoint_url, config=config
    )


async def call(func: Callable[..., Any], /, **kwargs: Any) -> Any:
    """`func(**kwargs)` in a thread, its failures sorted into retried
    (connection, timeout, 5xx) and final (4xx, no credentials)."""
    from botocore import exceptions

    try:
        return await asyncio.to_thread(functools.partial(func, **kwargs))
    except exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        details = {"s3_code": error.get("Code"), "status": status}
        message = f"S3 answered {status} {error.get('Code')}: {error.get('Message')}"
        if status >= 500 or status in (408, 429):
            raise TransferInterrupted(message) from exc
        raise TransferRefused(message, details=details) from exc
    except exceptions.NoCredentialsError as exc:
        raise TransferRefused(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or another source boto3 reads) for the worker"
        ) from exc
    except (
        exceptions.ConnectionError,
        exceptions.HTTPClientError,  # timeouts and connections lost mid-body included
        exceptions.IncompleteReadError,
    ) as exc:
        raise TransferInterrupted(f"S3 could not be reached: {exc}") from exc


async def download(
    client: S3Client, bucket: str, key: str, chunk_size: int
) -> tuple[int | None, AsyncGenerator[bytes, None]]:
    """The object's size and its bytes in chunks."""
    response = await call(client.get_object, Bucket=bucket, Key=key)
    body = response["Body"]

    async def chunks() -> AsyncGenerator[bytes, None]:
        try:
            while chunk := await call(body.read, amt=chunk_size):
                yield chunk
        finally:
            body.close()

    size = response.get("ContentLength")
    return (size if isinstance(size, int) else None), chunks()


class Upload:
    """An object written in parts; nothing is visible in the bucket until
    `commit`, and `abort` leaves nothing behind. Holds at most one part in memory."""

    def __init__(self, client: S3Client, bucket: str, key: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= PART_SIZE:
            part = bytes(self._buffer[:PART_SIZE])
            del self._buffer[:PART_SIZE]
            await self._upload_part(part)

    async def _upload_part(self, part: bytes) -> None:
        if self._upload_id is None:
            created = await call(
                self._client.create_multipart_upload, Bucket=self._bucket, Key=self._key
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        answer = await call(
            self._client.upload_part,
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=part,
        )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def commit(self) -> None:
        """Make the object visible (one PUT when it fits in one part)."""
        if self._upload_id is None:
            await call(
                self._client.put_object,
                Bucket=self._bucket,
                Key=self._key,
                Body=bytes(self._buffer),
            )
        else:
            if self._buffer:
                await self._upload_part(bytes(self._buffer))
            await call(
                self._client.complete_multipart_upload,
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buffer.clear()

    async def abort(self) -> None:
        """Drop what was uploaded: the parts of an unfinished multipart upload."""
        self._buffer.clear()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            await call(
                self._client.abort_multipart_upload,
                Bucket=self._bucket,
                Key=self._key,
                UploadId=upload_id,
            )
