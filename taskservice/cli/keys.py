"""`taskservice keys create | list | revoke`: API keys, managed on the database directly."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from taskservice.cli.tables import table, when
from taskservice.models.keys import ApiKeyPublic, Scope
from taskservice.services import keys as key_service
from taskservice.settings import Settings
from taskservice.store import asyncpg_driver as db
from taskservice.store.migrate import migrate_as_configured

KEY_COLUMNS = ("name", "scopes", "prefix", "created", "last_used", "revoked")


def _scopes(text: str) -> list[Scope]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    known = ", ".join(s.value for s in Scope)
    if not names:
        raise argparse.ArgumentTypeError(f"name at least one scope of: {known}")
    try:
        return [Scope(name) for name in names]
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown scope in {text!r}; scopes: {known}") from None


def add_keys_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `keys` and its subcommands to the `taskservice` parser."""
    keys = commands.add_parser(
        "keys",
        help="create, list or revoke API keys (on the database: DATABASE_URL)",
        description="API keys, stored hashed in PostgreSQL. Every API replica sees a "
        "change on its next request.",
    )
    actions = keys.add_subparsers(dest="keys_command", required=True)
    actions.add_parser(
        "generate",
        help="print a new random key, stored nowhere (for TASKSERVICE_BOOTSTRAP_API_KEY)",
    )
    create = actions.add_parser("create", help="create a key; its secret is printed once")
    create.add_argument("name", help="a name to tell the key by, such as billing-service")
    create.add_argument(
        "--scopes",
        type=_scopes,
        required=True,
        help="comma-separated: read, submit, admin (admin includes the others)",
    )
    create.add_argument("--json", action="store_true", help='print {"name", "key", "scopes"}')
    listing = actions.add_parser("list", help="names, scopes, prefixes and use; never secrets")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = actions.add_parser("revoke", help="refuse a key from the next request on")
    revoke.add_argument("name", help="the key's name")
    revoke.add_argument("--json", action="store_true", help="print JSON")


def _row(key: ApiKeyPublic) -> list[Any]:
    return [
        key.name,
        ",".join(s.value for s in key.scopes),
        f"tsk_{key.prefix}_…",
        when(key.created_at.isoformat()),
        when(key.last_used_at.isoformat() if key.last_used_at else None),
        when(key.revoked_at.isoformat() if key.revoked_at else None),
    ]


async def run_keys_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run `keys create | list | revoke` (`generate` needs no database: see main); its
    exit code."""
    assert settings.database_url is not None
    if settings.migrate_on_start:
        await migrate_as_configured(settings)
    pool = await db.create_pool(settings.database_url, max_size=1)
    try:
        if args.keys_command == "create":
            key, secret = await key_service.create_key(
                pool=pool, name=args.name, scopes=args.scopes
            )
            scopes = [s.value for s in key.scopes]
            if args.json:
                print(json.dumps({"name": key.name, "key": secret, "scopes": scopes}))
            else:
                print(f"created API key {key.name!r} with scopes {', '.join(scopes)}.")
                print("Its secret is shown this once; store it now (Authorization: Bearer …):")
                print(secret)
        elif args.keys_command == "list":
            keys = await key_service.list_keys(pool=pool)
            if args.json:
                print(json.dumps([k.model_dump(mode="json") for k in keys], indent=2))
            elif not keys:
                print("no API keys: the service runs open, on loopback only", file=sys.stderr)
            else:
                print(table(KEY_COLUMNS, [_row(k) for k in keys]))
        else:
            key = await key_service.revoke_key(pool=pool, name=args.name)
            if args.json:
                print(json.dumps(key.model_dump(mode="json")))
            else:
                print(f"revoked API key {key.name!r}")
    finally:
        await pool.close()
    return 0
