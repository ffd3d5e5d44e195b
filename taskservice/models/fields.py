"""Field types for untrusted input: text PostgreSQL can store, bounded numbers, strict
date-times and ids, and the checks on free-form params."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

PG_INT_MAX = 2**31 - 1
PG_BIGINT_MAX = 2**63 - 1
# The longest wait or time limit a field accepts: a year (and a day).
MAX_SECONDS = 366 * 86_400

# Deeper documents overflow recursive code on the way (Procrastinate copies args
# with attrs.asdict); no real task needs more.
MAX_PARAMS_DEPTH = 64
# A string in params (a key: MAX_PARAMS_KEY_LENGTH) longer than this is refused
# with its place named. The body limit bounds the whole document; this bounds
# what one value can make a task function (or a log line) hold.
MAX_PARAMS_STRING_LENGTH = 100_000
MAX_PARAMS_KEY_LENGTH = 1_000


def text_problem(value: str) -> str | None:
    """Why PostgreSQL cannot store `value` as text, or None if it can."""
    if "\x00" in value:
        return "may not contain the NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON's "\ud800" escape parses to a lone surrogate, which no UTF-8 holds.
        return "may not contain a lone surrogate (\\ud800-\\udfff): not a Unicode character"
    return None


def _storable_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"text {problem}")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("may not be blank")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError("may not contain control characters")
    return value


# Every free-text field and filter: PostgreSQL text refuses NUL and lone surrogates.
StorableText = Annotated[str, AfterValidator(_storable_text)]
# A name people read in lists (schedules): also not blank, no control characters.
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_storable_text),
                 AfterValidator(_not_blank)]  # fmt: skip

# Numbers in bodies: no true/false or "5" standing in for a number, no NaN or
# Infinity (1e309 parses to Infinity), and a bound on each.
Seconds = Annotated[float, Field(strict=True, allow_inf_nan=False, le=MAX_SECONDS)]
StrictBool = Annotated[bool, Field(strict=True)]

_CANONICAL_INT = re.compile(r"-?[1-9][0-9]*|0")


def canonical_int(value: object) -> object:
    """Refuse "1.0", "+5", "0646", " 7": one spelling per number in paths and queries."""
    if isinstance(value, str) and not _CANONICAL_INT.fullmatch(value):
        raise ValueError("must be an integer written in decimal digits, without sign or zeros")
    return value


# An integer in a path or a query string.
CanonicalInt = Annotated[int, BeforeValidator(canonical_int)]

# RFC 3339: a date and a time; pydantic alone also takes "0.5" (Unix seconds).
_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _date_time_text(value: object) -> object:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError("must be an RFC 3339 date-time with a time zone, e.g. 2030-01-01T12:00Z")
    return value


def _in_utc(value: dt.datetime) -> dt.datetime:
    """In UTC; a time whose UTC reading falls outside years 1-9999 is refused."""
    try:
        return value.astimezone(dt.UTC)
    except OverflowError as exc:
        raise ValueError("is out of range: in UTC it falls outside years 1 to 9999") from exc


Moment = Annotated[AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_in_utc)]


def check_storable(value: Any, path: str = "params", depth: int = 0) -> None:
    """Reject what JSON parsing lets through but PostgreSQL's jsonb cannot store
    (or Procrastinate's recursive copy of args cannot take), and strings over
    the length limits; the message names the place."""
    if depth > MAX_PARAMS_DEPTH:
        raise ValueError(f"{path}: nested more than {MAX_PARAMS_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: NaN and Infinity are not valid JSON numbers")
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(f"{path}: strings {problem}")
        if len(value) > MAX_PARAMS_STRING_LENGTH:
            raise ValueError(
                f"{path}: strings may hold at most {MAX_PARAMS_STRING_LENGTH} characters"
            )
    if isinstance(value, dict):
        for key, item in value.items():
            if len(key) > MAX_PARAMS_KEY_LENGTH:
                raise ValueError(
                    f"{path}: keys may hold at most {MAX_PARAMS_KEY_LENGTH} characters"
                )
            check_storable(key, f"{path} key", depth + 1)
            check_storable(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_storable(item, f"{path}[{index}]", depth + 1)
