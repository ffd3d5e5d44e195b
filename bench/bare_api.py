"""The API's ceiling: a bare FastAPI + asyncpg app doing one statement per request.

`POST /items` is one `INSERT ... RETURNING`, `GET /items/{id}` one select by key,
on a pool of the API's default size, served by uvicorn exactly as `taskservice api`
serves (uvicorn.run with log_config=None, its default loop and HTTP parser).
Run as `python -m bench.bare_api --port P` with DATABASE_URL set.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI, HTTPException, status
from pydantic import BaseModel, Field

from bench.harness import fetch
from taskservice.settings import Settings

POOL_SIZE = Settings.model_fields["api_pool_size"].default


class ItemCreate(BaseModel):
    type: str = Field(min_length=1, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)


class ItemPublic(BaseModel):
    id: int
    type: str
    params: dict[str, Any]
    created_at: datetime


def _item(row: asyncpg.Record) -> ItemPublic:
    return ItemPublic(
        id=row["id"],
        type=row["type"],
        params=json.loads(row["params"]),
        created_at=row["created_at"],
    )


def create_app(database_url: str) -> FastAPI:
    pools: list[asyncpg.Pool] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=POOL_SIZE)
        async with pool.acquire() as conn:
            await fetch(conn, "bare_api_table")
        pools.append(pool)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/items", status_code=status.HTTP_201_CREATED)
    async def create_item(body: ItemCreate) -> ItemPublic:
        async with pools[0].acquire() as conn:
            rows = await fetch(
                conn, "bare_api_insert", type=body.type, params=json.dumps(body.params)
            )
        return _item(rows[0])

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> ItemPublic:
        async with pools[0].acquire() as conn:
            rows = await fetch(conn, "bare_api_select", id=item_id)
        if not rows:
            raise HTTPException(status.HTTP_404_NOT_FOUND)
        return _item(rows[0])

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(os.environ["DATABASE_URL"])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None)


if __name__ == "__main__":
    main()
