"""`stk-bridge`: dev, serve, migrate, keys, publish (`docs/operations.md`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tenancy.audit import Actor
from tenancy.errors import PublishError, StkError
from tenancy.keyring import Keyring, KeyringError
from tenancy.settings import ConfigError, Settings, load_settings

CLI_ACTOR = Actor("cli")


def _fail(lines: list[str]) -> None:
    for line in lines:
        print(f"stk-bridge: {line}", file=sys.stderr)
    raise SystemExit(2)


def _settings() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(exc.problems)
        raise AssertionError from None  # unreachable; _fail exits
    if settings.registry_url is None or settings.kv_url is None:
        # The default SQLite registry / file KV live there; SQLite will not create the folder.
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return settings


def _keyring(settings: Settings) -> Keyring:
    text = settings.master_key_text()
    if not text or not text.strip():
        _fail(
            [
                "no master key: set STK_MASTER_KEYS or STK_MASTER_KEYS_FILE "
                "(make one with `stk-bridge keys generate`)"
            ]
        )
    try:
        ring = Keyring.parse(text or "")
    except KeyringError as exc:
        _fail([f"STK_MASTER_KEYS: {exc}"])
        raise AssertionError from None
    try:
        return ring.with_primary(settings.master_key_primary)
    except KeyringError as exc:
        _fail([f"STK_MASTER_KEY_PRIMARY: {exc}"])
        raise AssertionError from None


def cmd_serve(args: argparse.Namespace) -> None:
    settings = _settings()
    _keyring(settings)  # refuse to start, before binding, without a usable keyring
    uvicorn.run(
        "bridge.asgi:create",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


def cmd_dev(args: argparse.Namespace) -> None:
    from bridge.dev import run_dev

    run_dev(host=args.host, port=args.port)


def _with_runtime(work: Callable[[Any], Awaitable[None]], *, migrate: bool = False) -> None:
    from tenancy.runtime import Runtime

    settings = _settings()
    keyring = _keyring(settings)

    async def main() -> None:
        rt = await Runtime.start(settings, keyring, migrate_schema=migrate)
        try:
            await work(rt)
        finally:
            await rt.close()

    try:
        asyncio.run(main())
    except StkError as exc:
        _fail([exc.message])


def cmd_migrate(_: argparse.Namespace) -> None:
    from tenancy.registry import migrate
    from tenancy.registry.db import create_registry_engine

    settings = _settings()

    async def main() -> None:
        engine = create_registry_engine(settings.registry)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(main())
    print("registry schema is up to date")


def cmd_keys(args: argparse.Namespace) -> None:
    from tenancy.control import secrets

    if args.action == "generate":
        print(Keyring.generate_entry(args.kid))
        return

    async def status(rt: Any) -> None:
        answer = await secrets.key_status(rt)
        print(f"active kid: {answer['activeKid']}")
        for kid, count in sorted(answer["byKid"].items()):
            print(f"  {kid}: wraps {count} data key(s)")

    async def rewrap(rt: Any) -> None:
        print("re-wrapping every project data key under the active master key...", flush=True)
        answer = await secrets.rewrap(rt, CLI_ACTOR)
        print(f"re-wrapped {answer['rewrapped']} data key(s)")
        for kid, count in sorted(answer["byKid"].items()):
            print(f"  {kid}: wraps {count} data key(s)")

    _with_runtime(status if args.action == "status" else rewrap)


def cmd_publish(args: argparse.Namespace) -> None:
    from tenancy.releases.compile.compiler import load_project_dir

    token = args.admin_token or os.environ.get("STK_ADMIN_TOKEN")
    if not token:
        _fail(["publish needs --admin-token or STK_ADMIN_TOKEN"])
    try:
        files = load_project_dir(Path(args.dir))
    except PublishError as exc:
        _fail(_problem_lines("cannot read the project", exc.details or []))
        return
    print(f"read {len(files)} file(s) from {args.dir}; publishing to {args.project}/{args.env}...")
    body = {"files": files, "applySchema": args.apply_schema, "dryRun": args.dry_run}
    if args.ref:
        body["ref"] = args.ref
    url = f"{args.url.rstrip('/')}/admin/v1/projects/{args.project}/envs/{args.env}/releases"
    try:
        response = httpx.post(
            url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
    except httpx.HTTPError as exc:
        _fail([f"could not reach {args.url}: {type(exc).__name__}"])
        return
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code >= 400:
        error = answer.get("error", {})
        _fail(
            _problem_lines(
                f"publish failed ({response.status_code}): {error.get('message')}",
                error.get("details") or [],
            )
        )
    state = "reused" if answer["reused"] else "new"
    print(f"release {answer['release']} ({state}){' [dry run]' if answer['dryRun'] else ''}")
    for statement in answer.get("ddl", []):
        print(f"  {statement}")


def _problem_lines(headline: str, details: list[dict[str, Any]]) -> list[str]:
    """One `file:line: message` line per problem, like a compiler, so editors can jump to it."""
    lines = [headline]
    for d in details:
        where = f"{d.get('file', '?')}:{d['line']}" if d.get("line") else d.get("file", "?")
        lines.append(f"  {where}: {d.get('message')}")
    return lines


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="stk-bridge", description="Santokit Bridge")
    sub = top.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="embedded default: SQLite + files, demo tenants")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(func=cmd_dev)

    serve = sub.add_parser("serve", help="production server")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 (a server binds all interfaces)
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="upgrade the registry schema").set_defaults(func=cmd_migrate)

    keys = sub.add_parser("keys", help="master keyring")
    keys.add_argument("action", choices=["generate", "status", "rewrap"])
    keys.add_argument("--kid", default=None, help="kid for `generate`")
    keys.set_defaults(func=cmd_keys)

    publish = sub.add_parser("publish", help="publish a project directory")
    publish.add_argument("dir")
    publish.add_argument("--project", required=True)
    publish.add_argument("--env", required=True)
    publish.add_argument("--apply-schema", action="store_true")
    publish.add_argument("--dry-run", action="store_true")
    publish.add_argument("--ref", default=None)
    publish.add_argument("--url", default=os.environ.get("STK_URL", "http://127.0.0.1:8000"))
    publish.add_argument("--admin-token", default=None)
    publish.set_defaults(func=cmd_publish)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.func(args)
