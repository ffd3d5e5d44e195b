"""KeyCache: what one API process keeps about API keys, and when it stops trusting it."""

from __future__ import annotations

from taskservice.models.keys import Principal, Scope
from taskservice.services.keys import KeyCache

ALICE = Principal(key_id=1, name="alice", scopes=frozenset({Scope.READ}))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_kept_for_the_ttl() -> None:
    clock = Clock()
    cache = KeyCache(ttl_seconds=10, clock=clock)
    cache.remember(b"k", ALICE, None, cache.generation)
    known = cache.known(b"k")
    assert known is not None
    assert known.principal == ALICE
    clock.now += 10
    assert cache.known(b"k") is None


def test_invalidation_forgets_and_refuses_an_answer_read_before_it() -> None:
    cache = KeyCache(ttl_seconds=10, clock=Clock())
    cache.remember(b"k", ALICE, None, cache.generation)
    cache.remember_no_keys(cache.generation)
    read_at = cache.generation  # a request starts reading the key ...
    cache.invalidate()  # ... the key is revoked meanwhile ...
    cache.remember(b"k", ALICE, None, read_at)  # ... its answer is not kept
    assert cache.known(b"k") is None
    assert not cache.no_keys()


def test_untrusted_or_zero_ttl_keeps_nothing() -> None:
    trusted = False
    cache = KeyCache(ttl_seconds=10, trusted=lambda: trusted, clock=Clock())
    cache.remember(b"k", ALICE, None, cache.generation)
    assert cache.known(b"k") is None
    trusted = True
    cache.remember(b"k", ALICE, None, cache.generation)
    trusted = False  # the listener dropped: what was kept is not used
    assert cache.known(b"k") is None

    off = KeyCache(ttl_seconds=0, clock=Clock())
    off.remember(b"k", ALICE, None, off.generation)
    off.remember_no_keys(off.generation)
    assert off.known(b"k") is None
    assert not off.no_keys()


def test_no_keys_is_kept_for_the_ttl_a_key_for_good() -> None:
    clock = Clock()
    cache = KeyCache(ttl_seconds=10, clock=clock)
    cache.remember_no_keys(cache.generation)
    assert cache.no_keys()
    clock.now += 11
    assert not cache.no_keys()
    cache.keys_seen = True
    cache.invalidate()
    assert cache.keys_seen
