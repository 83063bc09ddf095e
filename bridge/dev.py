"""`stk-bridge dev`: the embedded default on a fresh machine (`docs/operations.md`).

Everything lives under STK_DATA_DIR: the SQLite registry, the file KV store, a generated master
key and admin token (mode 0600), and one SQLite database per demo tenant. Re-running keeps it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import uvicorn

from bridge import logs
from bridge.app import create_app
from bridge.guard import server_options
from tenancy.audit import Actor
from tenancy.control import apikeys, projects, releases
from tenancy.control import secrets as tenant_secrets
from tenancy.engines.sqlite import private_file
from tenancy.errors import Conflict, NotFound
from tenancy.keyring import Keyring
from tenancy.principal import Tenant
from tenancy.releases.compile.compiler import load_project_dir
from tenancy.runtime import Runtime
from tenancy.settings import Settings, load_settings
from tenancy.users import Accounts

# Package data, so `dev` works from a wheel or the image; `examples/demo` links here.
EXAMPLE = Path(__file__).resolve().parent / "demo"
DEMO_PROJECTS = {
    # project: notes added to its own database, so each tenant visibly sees only its own data
    "acme": ["Anvil order #1", "Rocket skates"],
    "globex": ["Hammock district plans"],
}
DEV_ACTOR = Actor("dev")
DEMO_PASSWORD = "demo-password-1"  # a local demo account, printed in the banner on purpose


def demo_email(project: str) -> str:
    return f"demo@{project}.example"


@dataclass(frozen=True)
class DemoTenant:
    project: str
    api_key: str


def _private_file(path: Path, make: str) -> str:
    """Read a generated secret, creating it (mode 0600) on first run."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(make + "\n")
    os.chmod(path, 0o600)
    return path.read_text().strip()


def dev_settings() -> Settings:
    settings = load_settings()
    overrides: dict[str, object] = {}
    if settings.host_suffix is None:
        overrides["host_suffix"] = "localhost"
    if settings.log_format is None:
        overrides["log_format"] = "text"
    return settings.model_copy(update=overrides)


def secrets_for(settings: Settings) -> tuple[Keyring, str]:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_text = settings.master_key_text() or _private_file(
        settings.data_dir / "master.keys", Keyring.generate_entry("dev")
    )
    tokens = settings.admin_token_list() or [
        _private_file(settings.data_dir / "admin.token", secrets.token_urlsafe(32))
    ]
    return Keyring.parse(key_text, settings.master_key_primary), tokens[0]


def _seed_database(path: Path, project: str) -> None:
    seed = (EXAMPLE / "seed" / "sqlite.sql").read_text()
    private_file(str(path))
    with sqlite3.connect(path) as db:
        db.executescript(seed)
        notebook = f"01JF0000000000000000{project[:4].upper():<4}NB".replace(" ", "X")
        db.execute(
            "INSERT OR IGNORE INTO notebooks (id, owner_id, title) VALUES (?, 'demo', ?)",
            (notebook, f"Welcome to {project}"),
        )
        for index, title in enumerate(DEMO_PROJECTS[project]):
            db.execute(
                "INSERT OR IGNORE INTO notes (id, notebook_id, owner_id, title)"
                " VALUES (?, ?, 'demo', ?)",
                (f"{notebook}{index:04d}", notebook, title),
            )


async def _demo_user(rt: Runtime, tenant: Tenant) -> str:
    """The tenant's demo end user (signed up once); its id owns the notes it will see."""
    auth = (await rt.directory.release(tenant)).auth
    accounts = Accounts(rt.sessions, rt.directory.signing, rt.limits.hashing)
    with contextlib.suppress(Conflict):
        await accounts.signup(tenant, auth, demo_email(tenant.project), DEMO_PASSWORD)
    login = await accounts.login(tenant, auth, demo_email(tenant.project), DEMO_PASSWORD)
    return str(login["user"]["id"])


def _seed_user_notes(path: Path, project: str, user_id: str) -> None:
    with sqlite3.connect(path) as db:
        notebook = f"{project}-demo-user-notebook"
        db.execute(
            "INSERT OR IGNORE INTO notebooks (id, owner_id, title) VALUES (?, ?, ?)",
            (notebook, user_id, f"{project} user's notebook"),
        )
        db.execute(
            "INSERT OR IGNORE INTO notes (id, notebook_id, owner_id, title) VALUES (?, ?, ?, ?)",
            (
                f"{project}-demo-user-note",
                notebook,
                user_id,
                f"Only {project}'s demo user sees this",
            ),
        )


async def bootstrap(settings: Settings, keyring: Keyring) -> list[DemoTenant]:
    """Create the demo tenants once; publish the example every time (reused if unchanged)."""
    rt = await Runtime.start(settings, keyring, migrate_schema=True)
    keys_file = settings.data_dir / "demo-keys.json"
    saved: dict[str, str] = orjson.loads(keys_file.read_bytes()) if keys_file.exists() else {}
    tenants_dir = settings.data_dir / "tenants"
    tenants_dir.mkdir(exist_ok=True)
    try:
        for project in DEMO_PROJECTS:
            database = tenants_dir / f"{project}.db"
            _seed_database(database, project)
            try:
                record = await projects.require_project(rt, project)
            except NotFound:
                record = await projects.create(rt, DEV_ACTOR, project, ["dev"], None, None)
                saved.pop(project, None)
            env = record.default_env
            url = f"sqlite:///{database.resolve()}"
            await tenant_secrets.set_connection(rt, DEV_ACTOR, project, env, "main", url, True)
            if project not in saved:
                created = await apikeys.create(rt, DEV_ACTOR, project, env, "demo", ["admin"])
                saved[project] = created["apiKey"]
            files = load_project_dir(EXAMPLE)
            await releases.publish(rt, DEV_ACTOR, project, env, files, None, False, False)
            user_id = await _demo_user(rt, Tenant(project, env))
            _seed_user_notes(database, project, user_id)
    finally:
        await rt.close()
    keys_file.touch(mode=0o600)
    keys_file.write_bytes(orjson.dumps(saved))
    return [DemoTenant(p, saved[p]) for p in DEMO_PROJECTS]


def curl_commands(base: str, tenants: list[DemoTenant]) -> list[str]:
    def call(
        project: str, body: dict[str, object], key: str | None = None, user: bool = False
    ) -> str:
        parts = [
            "curl -s -X POST",
            f"{base}/call",
            f"-H {shlex.quote(f'Host: {project}.localhost')}",
            "-H 'Content-Type: application/json'",
        ]
        if key:
            parts.append(f"-H {shlex.quote(f'X-Santokit-Api-Key: {key}')}")
        if user:
            parts.append('-H "Authorization: Bearer $TOKEN"')
        parts.append(f"-d {shlex.quote(orjson.dumps(body).decode())}")
        return " ".join(parts)

    def login_then_call(project: str, body: dict[str, object]) -> str:
        credentials = {"email": demo_email(project), "password": DEMO_PASSWORD}
        login = " ".join(
            [
                "curl -q -s -X POST",  # -q: no ~/.curlrc, the output is parsed
                f"{base}/auth/login",
                f"-H {shlex.quote(f'Host: {project}.localhost')}",
                "-H 'Content-Type: application/json'",
                f"-d {shlex.quote(orjson.dumps(credentials).decode())}",
                "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'",
            ]
        )
        return f"TOKEN=$({login}) && " + call(project, body, user=True)

    commands = []
    for tenant in tenants:
        project = tenant.project
        commands.append(call(project, {"path": "logics/public/stats"}))
        commands.append(
            call(
                project,
                {"path": "logics/notebooks/summary", "params": {"owner_id": "demo"}},
                tenant.api_key,
            )
        )
        commands.append(
            call(
                project,
                {"path": "db/notes/select", "params": {"select": ["title"]}},
                tenant.api_key,
            )
        )
        commands.append(
            login_then_call(
                project, {"path": "db/notes/select", "params": {"select": ["id", "title"]}}
            )
        )
    return commands


def banner(base: str, token: str, tenants: list[DemoTenant], data_dir: Path) -> str:
    lines = [
        "",
        f"Santokit Bridge (embedded default) — data in {data_dir.resolve()}",
        f"  admin token: {token}",
        "",
        "Try (each tenant sees only its own data; the last of each four signs in as",
        "the tenant's demo user, whose row filter shows only that user's notes):",
    ]
    lines += [f"  {command}" for command in curl_commands(base, tenants)]
    first = tenants[0]
    lines += [
        "",
        "A key of one tenant is refused by another (403):",
        "  " + curl_commands(base, [DemoTenant(tenants[1].project, first.api_key)])[1],
        "",
        "Object storage (storage/uploads/...) answers 503 until a tenant's secret DEMO_S3 holds",
        "its store keys: README, 'Object storage with curl'.",
        "",
        "Admin API:",
        f"  curl -s {base}/admin/v1/projects -H {shlex.quote(f'Authorization: Bearer {token}')}",
        "",
        "Admin CLI (stk-bridge admin --help): the projects, and what acme used today",
        f"  {admin_cli_command(base, token, data_dir)} admin projects list",
        f"  {admin_cli_command(base, token, data_dir)} admin usage acme",
        "",
    ]
    return "\n".join(lines)


def admin_cli_command(base: str, token: str, data_dir: Path) -> str:
    """This very executable with the server and the token in its environment (the generated
    token by its file, so it does not end up in shell history)."""
    token_file = data_dir.resolve() / "admin.token"
    if token_file.is_file() and token_file.read_text().strip() == token:
        credential = f"STK_ADMIN_TOKEN_FILE={shlex.quote(str(token_file))}"
    else:
        credential = f"STK_ADMIN_TOKEN={shlex.quote(token)}"
    program = Path(sys.argv[0])
    executable = str(program.resolve()) if program.name == "stk-bridge" else "stk-bridge"
    return f"STK_ADMIN_URL={base} {credential} {shlex.quote(executable)}"


def run_dev(host: str, port: int) -> None:
    settings = dev_settings()
    logs.configure(settings.log_level, settings.log_format or "text")
    keyring, token = secrets_for(settings)
    tenants = asyncio.run(bootstrap(settings, keyring))
    print(banner(f"http://{host}:{port}", token, tenants, settings.data_dir), flush=True)
    app = create_app(settings, keyring, [token], migrate=True)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, **server_options())
