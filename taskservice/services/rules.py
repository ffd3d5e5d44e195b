"""What a deployment allows at submission: callback destinations and each task
type's own checks of its params; the default allows nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from taskservice.errors import InvalidTaskRequest, ParamRefused
from taskservice.registry import TaskType
from taskservice.services.callbacks import CallbackRefused, check_callback_url
from taskservice.settings import Settings


@dataclass(frozen=True)
class SubmitRules:
    """What a deployment allows; the default allows nothing."""

    allowed_hosts: tuple[str, ...] = ()
    signed: bool = False
    # What task types check their params against; None: the defaults, which
    # allow no outbound host, secret, statement or file root.
    settings: Settings | None = None
    # Checked URLs of one request: a batch of 1,000 tasks resolves its host once.
    _seen: dict[str, None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> SubmitRules:
        return cls(
            allowed_hosts=tuple(settings.callback_allowed_hosts),
            signed=settings.callback_secret is not None,
            settings=settings,
        )

    async def check(self, url: str, loc: Sequence[str | int] = ("callback_url",)) -> None:
        """A 422 (InvalidTaskRequest at `loc` in the body) if `url` is refused."""
        if url in self._seen:
            return
        try:
            await check_callback_url(url, self.allowed_hosts, signed=self.signed)
        except CallbackRefused as exc:
            error: dict[str, Any] = {
                "loc": ["body", *loc],
                "msg": str(exc),
                "type": "callback_refused",
            }
            raise InvalidTaskRequest([error]) from exc
        self._seen[url] = None

    async def check_params(
        self, task: TaskType, params: BaseModel, loc: Sequence[str | int] = ("params",)
    ) -> None:
        """A 422 naming the param if `task`'s own check refuses `params`."""
        if task.check is None:
            return
        try:
            await task.check(params, self.settings or Settings.model_construct())
        except ParamRefused as exc:
            error: dict[str, Any] = {
                "loc": ["body", *loc, *exc.loc],
                "msg": str(exc),
                "type": exc.kind,
            }
            raise InvalidTaskRequest([error]) from exc
