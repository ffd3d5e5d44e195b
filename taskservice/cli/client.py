"""The REST client of the operator commands: one httpx client, errors as ClientError."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
HTTP_TIMEOUT_SECONDS = 10.0


class ClientError(Exception):
    """A failure to report on stderr (exit 2): a message and, optionally, detail lines."""

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)


class ApiClient:
    """The service's REST API over one httpx client; errors become ClientError."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self.client = client
        self.url = url

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str | int] | None = None,
    ) -> Any:
        content: bytes | None = None
        headers: dict[str, str] = {}
        if body is not None:
            try:
                content = json.dumps(body, allow_nan=False, ensure_ascii=False).encode()
            except ValueError as exc:
                raise ClientError(f"cannot send the request as JSON: {exc}") from exc
            headers["Content-Type"] = "application/json"
        response = self.client.request(
            method, path, content=content, params=params, headers=headers
        )
        if response.is_error:
            raise ClientError(
                f"{method} {path} failed: HTTP {response.status_code} {response.reason_phrase}",
                _error_details(response),
            )
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(
                f"unexpected response from {self.url}{path} "
                f"(HTTP {response.status_code}, not JSON); is --url right?"
            ) from exc

    def stream_events(self, path: str) -> Iterator[tuple[str, Any]]:
        """The (event, data) pairs of a Server-Sent Events stream, until it ends."""
        import httpx

        # Reads wait longer than the server's keep-alive interval (15 s).
        timeout = httpx.Timeout(HTTP_TIMEOUT_SECONDS, read=45.0)
        try:
            with self.client.stream("GET", path, timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise ClientError(
                        f"GET {path} failed: HTTP {response.status_code}",
                        _error_details(response),
                    )
                kind, data = "message", ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data = line[5:].strip()
                    elif line == "" and data:
                        yield kind, json.loads(data)
                        kind, data = "message", ""
        except (httpx.HTTPError, ValueError) as exc:
            raise ClientError(f"the event stream {path} broke: {exc}") from exc


def _error_details(response: httpx.Response) -> list[str]:
    """The server's `detail` messages: `loc.joined.by.dots: msg`, one per error."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return [text[:500]] if text else []
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, str):
        return [detail]
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(part) for part in item.get("loc") or [])
                msg = str(item.get("msg", ""))
                lines.append(f"{loc}: {msg}" if loc else msg)
            else:
                lines.append(str(item))
        return lines
    return [json.dumps(body)]
