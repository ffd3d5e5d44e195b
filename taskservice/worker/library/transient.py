"""Failures another attempt may fix (a lost connection, a timeout, a 5xx or an
SMTP 4xx): the only exceptions the library's retry policies retry."""

from __future__ import annotations


class TransferInterrupted(Exception):
    """files.transfer could not reach its source or destination, or it answered 5xx."""


class EmailDeferred(Exception):
    """The mail server could not be reached or answered 4xx (try again later)."""
