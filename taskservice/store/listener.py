"""One LISTEN connection per API process: task events from PostgreSQL fanned out to subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from taskservice.store.queries import query

logger = logging.getLogger(__name__)

# The channel the status trigger (sql/schema.sql) and record_progress notify on.
CHANNEL = "taskservice_events"
# What a subscription receives when events may have been missed (the connection
# dropped, or it fell too far behind): read the current state again.
RESYNC: dict[str, Any] = {"kind": "resync"}
# Notifications about the service's own state, never a client's business: the
# api_keys trigger's (sql/schema.sql). They go to watchers only.
PRIVATE_KINDS = frozenset({"api_keys"})


@dataclass(eq=False)
class Subscription:
    """Events for one task, one batch, or all tasks, in arrival order.

    The queue is bounded: a subscriber that falls behind gets RESYNC instead
    of the events it missed, and never holds the listener up."""

    task_id: int | None = None
    batch_id: int | None = None
    everything: bool = False
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=1000)
    )

    def put(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)

    async def get(self, within: float | None) -> dict[str, Any] | None:
        """The next event, or None when `within` seconds pass without one."""
        try:
            async with asyncio.timeout(within):
                return await self.queue.get()
        except TimeoutError:
            return None


class EventListener:
    """LISTENs on CHANNEL over a connection of its own (not from the pool) and
    hands each notification to the subscriptions it concerns.

    If the connection drops it reconnects with backoff, and every subscription
    gets RESYNC once it is back (notifications sent meanwhile are lost), so
    waiters read the row again instead of trusting what they missed."""

    def __init__(
        self,
        database_url: str,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        application_name: str = "taskservice-api-listener",
    ) -> None:
        self._url = database_url
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._application_name = application_name
        self._by_task: dict[int, set[Subscription]] = {}
        self._by_batch: dict[int, set[Subscription]] = {}
        self._everything: set[Subscription] = set()
        self._watchers: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        # Each watched kind as it appears in a payload's JSON ("api_keys").
        self._watched_markers: tuple[str, ...] = ()
        self._task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Start listening in the background; returns once connected (or after
        one failed try: the loop keeps trying, and waiters read rows meanwhile)."""
        self._task = asyncio.create_task(self._run(), name="taskservice-event-listener")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self.connected.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def subscribe(
        self, *, task_id: int | None = None, batch_id: int | None = None, everything: bool = False
    ) -> Iterator[Subscription]:
        """A subscription for as long as the block runs."""
        sub = Subscription(task_id=task_id, batch_id=batch_id, everything=everything)
        if everything:
            self._everything.add(sub)
        elif task_id is not None:
            self._by_task.setdefault(task_id, set()).add(sub)
        elif batch_id is not None:
            self._by_batch.setdefault(batch_id, set()).add(sub)
        else:
            raise ValueError("subscribe to a task, a batch, or everything")
        try:
            yield sub
        finally:
            self._discard(sub)

    def watch(self, kind: str, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call `callback` with each notification of `kind` (those go to no
        subscription), and with RESYNC whenever some may have been missed (the
        connection dropped, or came back). For the API process's own state
        (its API key cache), not for clients."""
        self._watchers.setdefault(kind, []).append(callback)
        self._watched_markers = tuple(json.dumps(kind) for kind in self._watchers)

    def _discard(self, sub: Subscription) -> None:
        self._everything.discard(sub)
        for index, key in ((self._by_task, sub.task_id), (self._by_batch, sub.batch_id)):
            if key is not None and key in index:
                index[key].discard(sub)
                if not index[key]:
                    del index[key]

    def _has_subscriptions(self) -> bool:
        return bool(self._everything or self._by_task or self._by_batch)

    @property
    def subscriptions(self) -> int:
        return (
            len(self._everything)
            + sum(map(len, self._by_task.values()))
            + sum(map(len, self._by_batch.values()))
        )

    def _dispatch(self, event: dict[str, Any]) -> None:
        targets = set(self._everything)
        task_id, batch_id = event.get("id"), event.get("batch_id")
        if isinstance(task_id, int):
            targets |= self._by_task.get(task_id, set())
        if isinstance(batch_id, int):
            targets |= self._by_batch.get(batch_id, set())
        for sub in targets:
            sub.put(event)

    def _resync_all(self) -> None:
        for callbacks in self._watchers.values():
            for callback in callbacks:
                callback(RESYNC)
        for sub in {*self._everything, *self._all(self._by_task), *self._all(self._by_batch)}:
            sub.put(RESYNC)

    @staticmethod
    def _all(index: dict[int, set[Subscription]]) -> set[Subscription]:
        return set().union(*index.values()) if index else set()

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        text = str(payload)
        # Two or three per task, on a busy service mostly with no one waiting:
        # with no subscription, only a watched kind needs reading (a kind's name
        # found elsewhere in the text costs just the parse).
        if not self._has_subscriptions() and not any(
            marker in text for marker in self._watched_markers
        ):
            return
        try:
            event = json.loads(text)
        except ValueError:
            logger.warning("ignored a malformed notification on %s: %r", CHANNEL, payload)
            return
        if not isinstance(event, dict):
            return
        kind = str(event.get("kind"))
        for callback in self._watchers.get(kind, ()):
            callback(event)
        if kind not in PRIVATE_KINDS:
            self._dispatch(event)

    def _on_termination(self, _conn: object) -> None:
        self._lost.set()

    async def _run(self) -> None:
        backoff = self._min_backoff
        first = True
        while True:
            try:
                conn = await asyncpg.connect(
                    self._url, server_settings={"application_name": self._application_name}
                )
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning(
                    "event listener cannot connect (%s); retrying in %.1fs", exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            try:
                self._lost.clear()
                conn.add_termination_listener(self._on_termination)
                await conn.add_listener(CHANNEL, self._on_notification)
                self._connection = conn
                self.connected.set()
                if not first:
                    logger.info("event listener reconnected")
                    self._resync_all()
                first = False
                backoff = self._min_backoff
                await self._watch(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("event listener lost its connection: %s", exc)
            finally:
                self.connected.clear()
                self._connection = None
                # Events may be lost from here on: waiters read their rows.
                self._resync_all()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def _watch(self, conn: asyncpg.Connection) -> None:
        """Until the connection is lost: a termination callback, or a failed
        keep-alive query (a half-open TCP connection sends no FIN)."""
        while not conn.is_closed():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await self._lost.wait()
            if self._lost.is_set():
                return
            async with asyncio.timeout(10):
                await conn.execute(query("ping").asyncpg_text)
