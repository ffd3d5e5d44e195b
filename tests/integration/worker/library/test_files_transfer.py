"""files.transfer through the API and a real worker: files under a temporary root,
S3 on moto's server, an HTTP source on loopback; refusals at submission and at run time."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import os
import stat
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from taskservice.api.app import create_app
from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from taskservice.worker.library.s3 import PART_SIZE
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status
from tests.processes import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.anyio  # at collection: parametrized async tests need it then

MiB = 1024 * 1024


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- servers and folders --------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials moto accepts, and no AWS files of the machine's user."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def bucket() -> str:
    """A bucket name of this test's own (moto's state lasts the session)."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3(aws_env: None, moto_url: str, bucket: str) -> S3Client:
    client = boto3.session.Session().client("s3", endpoint_url=moto_url)
    client.create_bucket(Bucket=bucket)
    return client


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(b"not yours")
    return tmp_path / "root"


@dataclass
class Source:
    """An HTTP server on loopback: each path answers its queued (status, body)
    in turn, then the last one; `pause` spreads a body over time."""

    routes: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    pause: float = 0.0
    requests: list[str] = field(default_factory=list)
    base: str = ""


@pytest.fixture
def source() -> Iterator[Source]:
    state = Source()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            answers = state.routes.get(self.path, [(404, b"")])
            status, body = answers.pop(0) if len(answers) > 1 else answers[0]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = 256 * 1024
            for start in range(0, len(body), step):
                self.wfile.write(body[start : start + step])
                if state.pause:
                    self.wfile.flush()
                    time.sleep(state.pause)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(settings: Settings, root: Path, moto_url: str, bucket: str) -> Settings:
    return settings.model_copy(
        update={
            "files_root": root,
            "s3_endpoint_url": moto_url,
            "s3_allowed_buckets": [bucket],
            "http_allowed_hosts": ["127.0.0.1"],
        }
    )


def _leftovers(folder: Path) -> list[str]:
    """Temporary files a transfer left behind."""
    return [p.name for p in folder.rglob("*.part")]


async def _transfer(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    return await submit(client, type="files.transfer", params=params)


# --- files under the root ---------------------------------------------------------------


async def test_a_file_is_copied_and_its_checksum_verified(
    client: httpx.AsyncClient, worker: None, root: Path
) -> None:
    data = os.urandom(5 * MiB + 123)  # several chunks, the last one short
    (root / "in").mkdir()
    (root / "in" / "a.bin").write_bytes(data)
    task = await _transfer(
        client, source="file:in/a.bin", destination="file:out/deep/a.bin", sha256=_sha256(data)
    )
    done = await wait_for_status(client, task["id"], "completed", "failed")
    assert done["status"] == "completed", done["error"]
    assert done["result"] == {"bytes": len(data), "sha256": _sha256(data)}
    assert (root / "out" / "deep" / "a.bin").read_bytes() == data
    # Made as any new file is (not the temporary file's 0600).
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((root / "out" / "deep" / "a.bin").stat().st_mode) == 0o666 & ~umask
    assert done["progress"]["fraction"] == 1.0
    assert done["progress"]["message"] == f"{len(data):,} of {len(data):,} bytes"
    assert _leftovers(root) == []


async def test_a_checksum_mismatch_fails_at_once_and_leaves_the_destination_untouched(
    client: httpx.AsyncClient, worker: None, root: Path
) -> None:
    (root / "a.csv").write_bytes(b"x,y\n1,2\n")
    (root / "b.csv").write_bytes(b"old content")
    task = await _transfer(client, source="file:a.csv", destination="file:b.csv", sha256="0" * 64)
    failed = await wait_for_status(client, task["id"], "failed")
    assert failed["attempts"] == 1
    assert failed["error"]["type"] == "ChecksumMismatch"
    assert "checksum mismatch" in failed["error"]["message"]
    assert failed["error"]["details"] == {
        "expected": "0" * 64,
        "actual": _sha256(b"x,y\n1,2\n"),
        "bytes": 8,
    }
    assert (root / "b.csv").read_bytes() == b"old content"
    assert _leftovers(root) == []


async def test_memory_stays_flat_while_a_large_file_is_copied(
    client: httpx.AsyncClient, worker: None, root: Path
) -> None:
    size = 48 * MiB
    with (root / "big.bin").open("wb") as file:
        for _ in range(size // MiB):
            file.write(os.urandom(MiB))
    tracemalloc.start()
    try:
        task = await _transfer(client, source="file:big.bin", destination="file:copy.bin")
        done = await wait_for_status(client, task["id"], "completed", "failed", within=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done["status"] == "completed", done["error"]
    assert done["result"]["bytes"] == size
    # Chunks of 1 MiB: a run that read the whole file would peak near 48 MiB.
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB"


async def test_a_missing_source_file_fails_without_retry(
    client: httpx.AsyncClient, worker: None
) -> None:
    task = await _transfer(client, source="file:nothing.csv", destination="file:b.csv")
    failed = await wait_for_status(client, task["id"], "failed")
    assert failed["attempts"] == 1
    assert failed["error"]["type"] == "TransferRefused"
    assert "does not exist" in failed["error"]["message"]


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "where", "reason"),
    [
        ({"source": "file:../outside/secret.txt"}, "source", "'..' is refused"),
        ({"source": "file:a/../../outside/secret.txt"}, "source", "'..' is refused"),
        ({"source": "file:/etc/passwd"}, "source", "absolute paths are refused"),
        ({"source": "file:///etc/passwd"}, "source", "absolute paths are refused"),
        ({"destination": "file:../x"}, "destination", "'..' is refused"),
        ({"destination": "file:"}, "destination", "names a file"),
        ({"destination": "https://127.0.0.1/x"}, "destination", "not a URL"),
        ({"source": "ftp://127.0.0.1/x"}, "source", "must be file:path"),
        ({"source": "s3://Bad_Bucket/x"}, "source", "not a valid S3 bucket name"),
        ({"source": "s3://some-bucket"}, "source", "needs an object key"),
    ],
)
async def test_malformed_locations_are_422(
    client: httpx.AsyncClient, given: dict[str, str], where: str, reason: str
) -> None:
    body = {"source": "file:a", "destination": "file:b", **given}
    response = await client.post("/tasks", json={"type": "files.transfer", "params": body})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][:3] == ["body", "params", where]
    assert reason in error["msg"]


async def test_locations_the_deployment_does_not_allow_are_422(
    client: httpx.AsyncClient, root: Path, tmp_path: Path
) -> None:
    (root / "out").symlink_to(tmp_path / "outside")
    (root / "secret.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    cases = [
        ({"source": "file:secret.txt"}, "source", "path_refused", "outside the files root"),
        ({"destination": "file:out/x.txt"}, "destination", "path_refused", "outside the files"),
        ({"source": "s3://other-bucket/k"}, "source", "s3_target_refused", "not in TASKSERVICE_S3"),
        ({"destination": "s3://other-bucket/k"}, "destination", "s3_target_refused", "S3_ALLOWED"),
        ({"source": "http://example.org/a"}, "source", "destination_refused", "HTTP_ALLOWED_HOSTS"),
    ]
    for params, field_name, kind, reason in cases:
        body = {"source": "file:a", "destination": "file:b", **params}
        response = await client.post("/tasks", json={"type": "files.transfer", "params": body})
        assert response.status_code == 422, (params, response.text)
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "params", field_name], params
        assert error["type"] == kind
        assert reason in error["msg"], (params, error["msg"])


async def test_schedules_are_checked_too(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/scheduler/jobs",
        json={
            "name": "copy",
            "type": "files.transfer",
            "params": {"source": "s3://elsewhere/k", "destination": "file:b"},
            "interval_seconds": 3600,
        },
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "params", "source"]


async def test_without_a_files_root_file_paths_are_422(
    settings: Settings, registry: TaskRegistry
) -> None:
    app = create_app(settings.model_copy(update={"files_root": None}), registry=registry)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as bare,
    ):
        params = {"source": "file:a", "destination": "file:b"}
        response = await bare.post("/tasks", json={"type": "files.transfer", "params": params})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "params", "source"]
    assert "TASKSERVICE_FILES_ROOT" in error["msg"]


async def test_a_symlink_out_of_the_root_made_after_submission_is_refused_at_run_time(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    root: Path,
    tmp_path: Path,
) -> None:
    task = await _transfer(client, source="file:report.txt", destination="file:copy.txt")
    (root / "report.txt").symlink_to(tmp_path / "outside" / "secret.txt")
    async with running_worker(settings, registry):
        failed = await wait_for_status(client, task["id"], "failed")
    assert failed["attempts"] == 1
    assert "outside the files root" in failed["error"]["message"]
    assert not (root / "copy.txt").exists()


# --- S3 ---------------------------------------------------------------------------------


async def test_a_file_goes_to_s3_in_parts_and_comes_back(
    client: httpx.AsyncClient, worker: None, root: Path, s3: S3Client, bucket: str
) -> None:
    data = os.urandom(PART_SIZE + 3 * MiB)  # two parts: a multipart upload
    (root / "up.bin").write_bytes(data)
    up = await _transfer(
        client, source="file:up.bin", destination=f"s3://{bucket}/dir/up.bin", sha256=_sha256(data)
    )
    done = await wait_for_status(client, up["id"], "completed", "failed", within=30)
    assert done["status"] == "completed", done["error"]
    stored = s3.get_object(Bucket=bucket, Key="dir/up.bin")["Body"].read()
    assert stored == data

    down = await _transfer(client, source=f"s3://{bucket}/dir/up.bin", destination="file:down.bin")
    done = await wait_for_status(client, down["id"], "completed", "failed", within=30)
    assert done["status"] == "completed", done["error"]
    assert done["result"] == {"bytes": len(data), "sha256": _sha256(data)}
    assert done["progress"]["fraction"] == 1.0
    assert (root / "down.bin").read_bytes() == data


async def test_a_small_file_goes_to_s3_in_one_put(
    client: httpx.AsyncClient, worker: None, root: Path, s3: S3Client, bucket: str
) -> None:
    (root / "small.txt").write_bytes(b"hello")
    task = await _transfer(client, source="file:small.txt", destination=f"s3://{bucket}/s.txt")
    done = await wait_for_status(client, task["id"], "completed", "failed")
    assert done["status"] == "completed", done["error"]
    assert s3.get_object(Bucket=bucket, Key="s.txt")["Body"].read() == b"hello"


@pytest.mark.parametrize("size", [10, PART_SIZE + MiB])
async def test_a_checksum_mismatch_leaves_no_object_in_s3(
    client: httpx.AsyncClient, worker: None, root: Path, s3: S3Client, bucket: str, size: int
) -> None:
    (root / "x.bin").write_bytes(os.urandom(size))
    task = await _transfer(
        client, source="file:x.bin", destination=f"s3://{bucket}/x.bin", sha256="a" * 64
    )
    failed = await wait_for_status(client, task["id"], "failed", within=30)
    assert failed["attempts"] == 1
    assert "checksum mismatch" in failed["error"]["message"]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


async def test_a_listed_bucket_that_does_not_exist_fails_without_retry(
    client: httpx.AsyncClient, worker: None, aws_env: None, bucket: str
) -> None:
    task = await _transfer(client, source=f"s3://{bucket}/k", destination="file:k")
    failed = await wait_for_status(client, task["id"], "failed", within=20)
    assert failed["attempts"] == 1
    assert failed["error"]["details"] == {"s3_code": "NoSuchBucket", "status": 404}


# --- HTTP source --------------------------------------------------------------------------


async def test_an_http_source_is_streamed_with_progress(
    client: httpx.AsyncClient, worker: None, root: Path, source: Source
) -> None:
    data = os.urandom(4 * MiB)
    source.routes["/export.bin"] = [(200, data)]
    source.pause = 0.15  # 16 pieces over ~2.4 s: progress shows mid-way
    task = await _transfer(client, source=f"{source.base}/export.bin", destination="file:e.bin")
    seen: list[float] = []
    deadline = time.monotonic() + 20
    while (current := (await client.get(f"/tasks/{task['id']}")).json())["status"] not in (
        "completed",
        "failed",
    ):
        if current["progress"] and current["progress"]["fraction"] is not None:
            seen.append(current["progress"]["fraction"])
            if seen[-1] < 1:  # only the temporary file until the last byte
                assert not (root / "e.bin").exists()
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert current["status"] == "completed", current["error"]
    assert any(0 < fraction < 1 for fraction in seen), seen
    assert (root / "e.bin").read_bytes() == data
    assert current["result"]["sha256"] == _sha256(data)


async def test_an_http_source_answering_500_is_retried(
    client: httpx.AsyncClient, worker: None, root: Path, source: Source
) -> None:
    source.routes["/flaky"] = [(500, b"oops"), (200, b"finally")]
    task = await submit(
        client,
        type="files.transfer",
        params={"source": f"{source.base}/flaky", "destination": "file:f.txt"},
        backoff_seconds=0.1,
    )
    done = await wait_for_status(client, task["id"], "completed", "failed", within=20)
    assert done["status"] == "completed", done["error"]
    assert done["attempts"] == 2
    assert done["attempt_history"][0]["error"]["type"] == "TransferInterrupted"
    assert (root / "f.txt").read_bytes() == b"finally"


async def test_an_http_source_answering_404_fails_without_retry(
    client: httpx.AsyncClient, worker: None, source: Source
) -> None:
    task = await _transfer(client, source=f"{source.base}/missing", destination="file:m.txt")
    failed = await wait_for_status(client, task["id"], "failed")
    assert failed["attempts"] == 1
    assert failed["error"]["details"] == {"status": 404}
    assert source.requests == ["/missing"]


async def test_an_unreachable_source_is_retried(
    client: httpx.AsyncClient, worker: None, root: Path
) -> None:
    task = await submit(
        client,
        type="files.transfer",
        params={"source": f"http://127.0.0.1:{free_port()}/x", "destination": "file:x"},
        max_attempts=2,
        backoff_seconds=0.1,
    )
    failed = await wait_for_status(client, task["id"], "failed", within=20)
    assert [a["error"]["type"] for a in failed["attempt_history"]] == [
        "TransferInterrupted",
        "TransferInterrupted",
    ]
    assert _leftovers(root) == []


async def test_an_unreachable_s3_endpoint_is_retried(
    settings: Settings, registry: TaskRegistry, aws_env: None, root: Path, bucket: str
) -> None:
    nowhere = settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"})
    (root / "a.txt").write_bytes(b"a")
    app = create_app(nowhere, registry=registry)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
        running_worker(nowhere, registry),
    ):
        task = await submit(
            client,
            type="files.transfer",
            params={"source": "file:a.txt", "destination": f"s3://{bucket}/a.txt"},
            max_attempts=2,
            backoff_seconds=0.1,
        )
        failed = await wait_for_status(client, task["id"], "failed", within=30)
    assert [a["error"]["type"] for a in failed["attempt_history"]] == [
        "TransferInterrupted",
        "TransferInterrupted",
    ]
    assert "S3 could not be reached" in failed["error"]["message"]


async def test_a_missing_s3_object_fails_without_retry(
    client: httpx.AsyncClient, worker: None, s3: S3Client, bucket: str, root: Path
) -> None:
    task = await _transfer(client, source=f"s3://{bucket}/nothing", destination="file:n")
    failed = await wait_for_status(client, task["id"], "failed", within=20)
    assert failed["attempts"] == 1
    assert failed["error"]["details"] == {"s3_code": "NoSuchKey", "status": 404}
    assert not (root / "n").exists()
    assert _leftovers(root) == []
