"""The App for Procrastinate's CLI: `procrastinate --app=taskservice.procrastinate_app.app`.

The one module that reads the environment on import, because that CLI loads an
App by dotted path. With no DATABASE_URL it starts (or joins) the embedded server.
"""

from __future__ import annotations

from taskservice.registry import load_registry
from taskservice.settings import Settings
from taskservice.store.embedded import resolve_database_url
from taskservice.worker.app import build_queue_app
from taskservice.worker.runner import worker_pool_size

_settings = resolve_database_url(Settings())
app = build_queue_app(
    _settings, load_registry(_settings.task_modules), pool_size=worker_pool_size(_settings)
)
