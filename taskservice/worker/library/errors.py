"""The library's failures, by what another attempt can do: the retried ones (a
lost connection, a timeout, a 5xx or an SMTP 4xx) and the final ones, which
subclass DoNotRetry so that clients see what went wrong by its type."""

from __future__ import annotations

from taskservice.worker.failures import DoNotRetry


class TransferInterrupted(Exception):
    """files.transfer could not reach its source or destination, or it answered 5xx."""


class TransferRefused(DoNotRetry):
    """The source or destination refused the transfer (a 4xx, a missing file or
    object, a path that resolves out of the root, no credentials)."""


class ChecksumMismatch(DoNotRetry):
    """The content's SHA-256 is not the expected one; nothing was written."""


class EmailDeferred(Exception):
    """The mail server could not be reached or answered 4xx (try again later)."""


class EmailRejected(DoNotRetry):
    """The mail server refused the message for good (5xx), or TLS with it failed."""
