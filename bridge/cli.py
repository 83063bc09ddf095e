"""`stk-bridge`: the server commands (dev, serve, migrate, keys, config), `types` (client types of
a tenant) and `admin`, the client of the admin API (`bridge/admincli.py`); `docs/operations.md`
"CLI".

Exit codes: 0 ok, 1 refused by the server, 2 usage or configuration error, 3 server unreachable.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson
import uvicorn
from uvicorn.supervisors import Multiprocess

from bridge.admincli import admin
from bridge.guard import server_options
from tenancy.audit import Actor
from tenancy.errors import StkError
from tenancy.keyring import Keyring, KeyringError
from tenancy.settings import ConfigError, Settings, effective, load_settings

CLI_ACTOR = Actor("cli")
USAGE = 2
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _fail(lines: list[str]) -> NoReturn:
    for line in lines:
        click.echo(f"stk-bridge: {line}", err=True)
    sys.exit(USAGE)


def _settings() -> Settings:
    try:
        settings = load_settings(strict_environment=True)
    except ConfigError as exc:
        _fail(exc.problems)
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


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="santokit-bridge", prog_name="stk-bridge")
def main() -> None:
    """Santokit Bridge: one service serving many projects.

    Server commands read the STK_* configuration (docs/operations.md); `admin` talks to a
    running server's admin API with STK_ADMIN_URL and STK_ADMIN_TOKEN (or STK_ADMIN_TOKEN_FILE).
    """


HOST_HELP = "Interface to bind."
PORT_HELP = "TCP port to listen on."


@main.command(context_settings=CONTEXT)
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", default=8000, show_default=True, help=PORT_HELP)
def dev(host: str, port: int) -> None:
    """Embedded default: SQLite + files under STK_DATA_DIR, two demo tenants."""
    from bridge.dev import run_dev

    _settings()  # the same strict check as `serve`: a typo stops here, not later
    run_dev(host=host, port=port)


@main.command(context_settings=CONTEXT)
@click.option("--host", default="0.0.0.0", show_default=True, help=HOST_HELP)  # noqa: S104
@click.option("--port", default=8000, show_default=True, help=PORT_HELP)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1), help="Worker processes."
)
def serve(host: str, port: int, workers: int) -> None:
    """Production server (uvicorn); refuses to start without a valid configuration and keyring."""
    settings = _settings()
    _keyring(settings)  # refuse to start, before binding, without a usable keyring
    if settings.internal_port == port:
        _fail(["STK_INTERNAL_PORT: must differ from --port"])
    config = uvicorn.Config(
        "bridge.asgi:create",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        **server_options(),
    )
    # What `uvicorn.run` does, with the internal listener's socket next to the public one: every
    # worker serves both (`bridge.app.InternalGate` tells them apart).
    sockets = [config.bind_socket()]
    if settings.internal_port is not None:
        internal = uvicorn.Config(config.app, host=host, port=settings.internal_port)
        sockets.append(internal.bind_socket())
    with _metrics_directory(workers):
        if workers > 1:
            Multiprocess(config, sockets=sockets).run()
        else:
            uvicorn.Server(config).run(sockets=sockets)


@contextmanager
def _metrics_directory(workers: int) -> Iterator[None]:
    """Several workers share their metrics through files (`bridge/metrics.py`): a directory the
    workers inherit, emptied first (series of an earlier run would add up) and, when made here,
    removed at exit. An operator's own PROMETHEUS_MULTIPROC_DIR is used as given."""
    from bridge.metrics import MULTIPROC_DIR  # not for `admin`: it would import the server

    given = os.environ.get(MULTIPROC_DIR)
    if workers == 1 and not given:
        yield
        return
    directory = Path(given or tempfile.mkdtemp(prefix="stk-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_DIR] = str(directory)
    try:
        yield
    finally:
        if not given:
            shutil.rmtree(directory, ignore_errors=True)


def _with_runtime(work: Callable[[Any], Awaitable[None]]) -> None:
    from tenancy.runtime import Runtime

    settings = _settings()
    keyring = _keyring(settings)

    async def run() -> None:
        rt = await Runtime.start(settings, keyring, migrate_schema=False)
        try:
            await work(rt)
        finally:
            await rt.close()

    try:
        asyncio.run(run())
    except StkError as exc:
        _fail([exc.message])


@main.command(context_settings=CONTEXT)
def migrate() -> None:
    """Upgrade the registry schema (Alembic, under a PostgreSQL advisory lock)."""
    from tenancy.registry import migrate as migrations
    from tenancy.registry.db import create_registry_engine

    settings = _settings()
    # Optional: only a revision that re-seals stored values needs it, and says so.
    keyring = _keyring(settings) if settings.master_key_text() else None

    async def run() -> None:
        engine = create_registry_engine(settings.registry)
        try:
            await migrations.upgrade(engine, keyring=keyring)
        finally:
            await engine.dispose()

    asyncio.run(run())
    click.echo("registry schema is up to date")


@main.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of lines.")
def config(as_json: bool) -> None:
    """Print the effective configuration (defaults included), secrets redacted."""
    shown = effective(_settings())
    if as_json:
        click.echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
        return
    for name, value in shown.items():
        click.echo(f"{name}={'' if value is None else value}")


@main.group(context_settings=CONTEXT)
def keys() -> None:
    """The master keyring, on this machine's configuration (docs/security.md)."""


@keys.command(context_settings=CONTEXT)
@click.option("--kid", default=None, help="Key id of the new entry (default: a date-based one).")
def generate(kid: str | None) -> None:
    """Print a new `kid:base64key` entry for STK_MASTER_KEYS."""
    click.echo(Keyring.generate_entry(kid))


@keys.command(context_settings=CONTEXT)
def status() -> None:
    """How many project data keys each master key wraps."""
    from tenancy.control import secrets

    async def work(rt: Any) -> None:
        answer = await secrets.key_status(rt)
        click.echo(f"active kid: {answer['activeKid']}")
        for kid, count in sorted(answer["byKid"].items()):
            click.echo(f"  {kid}: wraps {count} data key(s)")

    _with_runtime(work)


@keys.command(context_settings=CONTEXT)
def rewrap() -> None:
    """Re-wrap every project data key under the active master key."""
    from tenancy.control import secrets

    async def work(rt: Any) -> None:
        click.echo("re-wrapping every project data key under the active master key...", err=True)
        answer = await secrets.rewrap(rt, CLI_ACTOR)
        click.echo(f"re-wrapped {answer['rewrapped']} data key(s)")
        for kid, count in sorted(answer["byKid"].items()):
            click.echo(f"  {kid}: wraps {count} data key(s)")

    _with_runtime(work)


@main.command(context_settings=CONTEXT)
@click.option("--project", required=True, help="The tenant's project id.")
@click.option("--env", required=True, help="The tenant's env.")
@click.option(
    "--lang", required=True, type=click.Choice(["typescript", "python"]), help="Output language."
)
@click.option("--out", default=None, help="File to write (default: stdout).")
@click.option(
    "--roles", default=None, help="With STK_ADMIN_TOKEN: describe a caller with these roles."
)
@click.option(
    "--url",
    envvar="STK_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The Bridge's base URL (STK_URL).",
)
def types(project: str, env: str, lang: str, out: str | None, roles: str | None, url: str) -> None:
    """Client types of a tenant from its OpenAPI document (STK_API_KEY, else STK_ADMIN_TOKEN)."""
    from bridge.typegen import TypegenError, fetch, python, typescript

    try:
        doc = fetch(
            url,
            project,
            env,
            api_key=os.environ.get("STK_API_KEY"),
            admin_token=os.environ.get("STK_ADMIN_TOKEN"),
            roles=roles,
        )
    except TypegenError as exc:
        _fail([f"types: {exc}"])
    text = typescript(doc) if lang == "typescript" else python(doc)
    if out:
        Path(out).write_text(text)
    else:
        sys.stdout.write(text)


main.add_command(admin)
