"""A worker's heartbeat, sent from a thread of its own: a task that holds the
event loop (CPU-bound, or blocking in an async function) does not make its
worker look dead."""

from __future__ import annotations

import logging
import threading

from taskservice.store import psycopg_driver as pg

logger = logging.getLogger(__name__)


class HeartbeatThread(threading.Thread):
    """Updates `worker_id`'s heartbeat every `interval` seconds on a connection
    of its own, reconnecting after a database outage, until stopped."""

    def __init__(self, conninfo: str, worker_id: int, interval: float) -> None:
        super().__init__(name=f"heartbeat-{worker_id}", daemon=True)
        self._conninfo = conninfo
        self._worker_id = worker_id
        self._interval = interval
        self._stopped = threading.Event()
        self._conn: pg.SyncConnection | None = None

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=max(5.0, self._interval))

    def _beat(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = pg.connect_sync(
                self._conninfo,
                timeout=self._interval,
                application_name="taskservice-heartbeat",
            )
        pg.execute_sync(self._conn, "worker_heartbeat", worker_id=self._worker_id)

    def run(self) -> None:
        try:
            while not self._stopped.wait(self._interval):
                try:
                    self._beat()
                except pg.DriverError as exc:
                    logger.warning("worker %s: heartbeat failed: %s", self._worker_id, exc)
                    if self._conn is not None:
                        self._conn.close()
                        self._conn = None
        finally:
            if self._conn is not None:
                self._conn.close()
