"""`stk-bridge admin ...`: the admin API (`docs/admin.md`) from a terminal.

The server and credential come from the environment (`STK_ADMIN_URL`, `STK_ADMIN_TOKEN` or
`STK_ADMIN_TOKEN_FILE`), never from the command line, where other users could read them.
Answers print as short tables, or as the server's JSON with `--json`; progress goes to stderr.
Exit codes (`docs/operations.md`): 0 ok, 1 refused by the server (its error code printed),
2 usage, 3 server unreachable.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import httpx
import orjson

from tenancy.engines import POOLERS
from tenancy.errors import PublishError

REFUSED, UNREACHABLE = 1, 3
DEFAULT_URL = "http://127.0.0.1:8000"
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
F = TypeVar("F", bound=Callable[..., Any])


class Refused(click.ClickException):
    """The server answered an error: exit 1 with `CODE: message` and any details."""

    exit_code = REFUSED

    def __init__(self, status: int, code: str, message: str, details: list[Any]) -> None:
        super().__init__(message)
        self.status, self.code, self.details = status, code, details

    def show(self, file: IO[Any] | None = None) -> None:
        click.secho(f"stk-bridge: {self.code} ({self.status}): {self.message}", err=True, fg="red")
        for detail in self.details:
            click.echo("  " + _detail_line(detail), err=True)


class Unreachable(click.ClickException):
    exit_code = UNREACHABLE

    def show(self, file: IO[Any] | None = None) -> None:
        click.secho(f"stk-bridge: {self.message}", err=True, fg="red")


def _detail_line(detail: Any) -> str:
    """`file:line: message` like a compiler (editors jump to it), else the detail as JSON."""
    if isinstance(detail, dict) and "message" in detail:
        where = detail.get("file") or detail.get("field") or ""
        if detail.get("line"):
            where = f"{where}:{detail['line']}"
        return f"{where}: {detail['message']}" if where else str(detail["message"])
    return orjson.dumps(detail).decode()


@dataclass
class Client:
    url: str
    token: str

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float = 30,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            answer = httpx.request(
                method,
                f"{self.url}/admin/v1{path}",
                json=body,
                params=query,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=timeout,
            )
        except httpx.TransportError as exc:
            raise Unreachable(f"could not reach {self.url}: {type(exc).__name__}") from None
        if answer.status_code >= 400:
            try:
                error = answer.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "HTTP_ERROR", "message": answer.reason_phrase}
            raise Refused(
                answer.status_code,
                str(error.get("code")),
                str(error.get("message")),
                error.get("details") or [],
            )
        return answer.json() if answer.content else None

    def items(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Every item of a paged list, following `nextCursor`."""
        found: list[Any] = []
        cursor = None
        while True:
            page = self.call("GET", path, params={**(params or {}), "limit": 500, "cursor": cursor})
            found += page["items"]
            cursor = page.get("nextCursor")
            if not cursor:
                return found


def _token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            message = f"cannot read the admin token file {token_file}: {exc.strerror}"
            raise click.UsageError(message) from None
    else:
        token = os.environ.get("STK_ADMIN_TOKEN", "").strip()
    if not token:
        raise click.UsageError("set STK_ADMIN_TOKEN or STK_ADMIN_TOKEN_FILE (the admin token)")
    return token


def _state() -> dict[str, Any]:
    """What `admin` and `--json` leave for the command (one dict, inherited by subcommands)."""
    state: dict[str, Any] = click.get_current_context().ensure_object(dict)
    return state


def client() -> Client:
    state = _state()
    if "built" not in state:
        state["built"] = state["client"]()
    built: Client = state["built"]
    return built


JSON_HELP = "Print the server's JSON answer instead of a table."


def json_option(command: F) -> F:
    """`--json` on every command that prints an answer."""

    def remember(ctx: click.Context, _: click.Parameter, value: bool) -> bool:
        if value:
            ctx.ensure_object(dict)["json"] = True
        return value

    option = click.option(
        "--json", "as_json", is_flag=True, expose_value=False, callback=remember, help=JSON_HELP
    )
    return option(command)


def _wants_json() -> bool:
    return bool(_state().get("json"))


def emit(answer: Any, columns: list[str] | None = None) -> None:
    """The answer as JSON (`--json`), a table (a list, `columns`), or `key: value` lines."""
    if _wants_json():
        click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
    elif answer is None:
        return
    elif isinstance(answer, list):
        _table(answer, columns or sorted({k for row in answer for k in row}))
    elif isinstance(answer, dict):
        width = max((len(k) for k in answer), default=0)
        for key, value in answer.items():
            click.echo(f"{click.style(key.ljust(width), bold=True)}  {_cell(value)}")
    else:
        click.echo(str(answer))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return str(value)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    header = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
    click.echo(click.style(header, bold=True))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        click.echo(click.style("(none)", dim=True))


def done(message: str) -> None:
    """A confirmation for a change without an answer body (nothing with `--json`)."""
    if not _wants_json():
        click.secho(message, fg="green")


@contextmanager
def progress(message: str) -> Iterator[None]:
    """`message...` on stderr, then the time it took: long calls (publish, rewrap) show life."""
    click.echo(f"{message}...", err=True)
    began = time.monotonic()
    yield
    click.echo(f"  done in {time.monotonic() - began:.1f}s", err=True)


def _secret_value(source: IO[str] | None, what: str) -> str:
    """From `--from-file` (`-` for stdin), else asked without echo: never a command argument."""
    if source is not None:
        return source.read().rstrip("\n")
    if not sys.stdin.isatty():
        raise click.UsageError(f"give the {what} with --from-file (use - for stdin)")
    value: str = click.prompt(what, hide_input=True)
    return value


def _confirm(yes: bool, what: str) -> None:
    if not yes:
        raise click.UsageError(f"{what} cannot be undone: add --yes to confirm")


YES_HELP = "Confirm an irreversible deletion."
FROM_FILE_HELP = "Read the value from this file (- for stdin) instead of asking for it."
project_arg = click.argument("project")
env_arg = click.argument("env")


@click.group(context_settings=CONTEXT)
@click.option(
    "--url",
    envvar="STK_ADMIN_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Base URL of the Bridge [env: STK_ADMIN_URL].",
)
@click.option(
    "--token-file",
    envvar="STK_ADMIN_TOKEN_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the admin token [env: STK_ADMIN_TOKEN_FILE]; else STK_ADMIN_TOKEN.",
)
@json_option
@click.pass_context
def admin(ctx: click.Context, url: str, token_file: Path | None) -> None:
    """Drive a running Bridge through its admin API (docs/admin.md).

    Exit codes: 0 ok, 1 refused by the server (its error code printed), 2 usage, 3 unreachable.
    """
    # Built on first use, so `--help` and usage errors need no token.
    ctx.ensure_object(dict)["client"] = lambda: Client(url.rstrip("/"), _token(token_file))


# --- projects and envs --------------------------------------------------------------------------

PROJECT_COLUMNS = ["id", "status", "envs", "defaultEnv", "hosts"]


@admin.group(context_settings=CONTEXT)
def projects() -> None:
    """Projects (tenants)."""


@projects.command("list", context_settings=CONTEXT)
@json_option
def projects_list() -> None:
    """Every project the token may see."""
    emit(client().items("/projects"), PROJECT_COLUMNS)


@projects.command("show", context_settings=CONTEXT)
@project_arg
@json_option
def projects_show(project: str) -> None:
    """One project: PROJECT is its id."""
    emit(client().call("GET", f"/projects/{project}"))


@projects.command("create", context_settings=CONTEXT)
@project_arg
@click.option("--env", "envs", multiple=True, help="An env of the project (repeat; default prod).")
@click.option("--default-env", help="The env used when a request names none (default: first).")
@click.option("--host", "hosts", multiple=True, help="A custom host name (repeat).")
@json_option
def projects_create(
    project: str, envs: tuple[str, ...], default_env: str | None, hosts: tuple[str, ...]
) -> None:
    """Create project PROJECT (and its data key)."""
    body: dict[str, Any] = {"id": project}
    if envs:
        body["envs"] = list(envs)
    if default_env:
        body["defaultEnv"] = default_env
    if hosts:
        body["hosts"] = list(hosts)
    emit(client().call("POST", "/projects", body=body))


def _limits(values: tuple[str, ...]) -> dict[str, int]:
    limits = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or not number.isdigit():
            raise click.BadParameter(f"{value!r} is not NAME=INTEGER", param_hint="--limit")
        limits[name] = int(number)
    return limits


@projects.command("update", context_settings=CONTEXT)
@project_arg
@click.option(
    "--status", type=click.Choice(["active", "disabled"]), help="Enable or disable the project."
)
@click.option("--default-env", help="The env used when a request names none.")
@click.option(
    "--host", "hosts", multiple=True, help="A custom host name (repeat; replaces the list)."
)
@click.option("--no-hosts", is_flag=True, help="Remove every custom host name (an empty list).")
@click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="NAME=N",
    help="A limit, e.g. requestsPerMinute=600 (repeat; replaces all limits).",
)
@json_option
def projects_update(
    project: str,
    status: str | None,
    default_env: str | None,
    hosts: tuple[str, ...],
    no_hosts: bool,
    limits: tuple[str, ...],
) -> None:
    """Change project PROJECT (only what is given)."""
    body: dict[str, Any] = {}
    if status:
        body["status"] = status
    if default_env:
        body["defaultEnv"] = default_env
    if hosts or no_hosts:
        body["hosts"] = list(hosts)
    if limits:
        body["limits"] = _limits(limits)
    if not body:
        raise click.UsageError("nothing to change: give at least one option")
    emit(client().call("PATCH", f"/projects/{project}", body=body))


@projects.command("delete", context_settings=CONTEXT)
@project_arg
@click.option("--yes", is_flag=True, help=YES_HELP)
def projects_delete(project: str, yes: bool) -> None:
    """Delete project PROJECT: its data key is destroyed (crypto-shredding)."""
    _confirm(yes, f"deleting project {project}")
    client().call("DELETE", f"/projects/{project}")
    done(f"project {project} deleted")


@projects.command("status", context_settings=CONTEXT)
@project_arg
@json_option
def projects_status(project: str) -> None:
    """What the answering replica knows of PROJECT: releases, pools, last error."""
    answer = client().call("GET", f"/projects/{project}/status")
    if _wants_json():
        emit(answer)
        return
    click.echo(f"{answer['id']} ({answer['status']})")
    for env, state in answer["envs"].items():
        click.echo(f"  {env}: release {state.get('release') or '-'}")
        for pool in state.get("pools", []):
            click.echo(
                f"    pool {pool['alias']} v{pool['version']}: {pool['size']}/{pool['max_size']}"
                f" open, {pool['in_use']} in use, breaker {pool['breaker']}"
            )
        if state.get("lastError"):
            click.secho(f"    last error: {state['lastError']}", fg="yellow")


@admin.group(context_settings=CONTEXT)
def envs() -> None:
    """Environments of a project."""


@envs.command("create", context_settings=CONTEXT)
@project_arg
@env_arg
@json_option
def envs_create(project: str, env: str) -> None:
    """Add env ENV to PROJECT."""
    emit(client().call("POST", f"/projects/{project}/envs", body={"id": env}))


@envs.command("delete", context_settings=CONTEXT)
@project_arg
@env_arg
@click.option("--yes", is_flag=True, help=YES_HELP)
def envs_delete(project: str, env: str, yes: bool) -> None:
    """Delete env ENV of PROJECT with its secrets, keys and users."""
    _confirm(yes, f"deleting env {project}/{env}")
    client().call("DELETE", f"/projects/{project}/envs/{env}")
    done(f"env {project}/{env} deleted")


# --- connections and secrets --------------------------------------------------------------------


@admin.group(context_settings=CONTEXT)
def connections() -> None:
    """Database connections of an env (write-only: URLs are never shown)."""


@connections.command("list", context_settings=CONTEXT)
@project_arg
@env_arg
@json_option
def connections_list(project: str, env: str) -> None:
    """Connections of PROJECT/ENV."""
    path = f"/projects/{project}/envs/{env}/connections"
    emit(client().items(path), ["alias", "engine", "pooler", "version", "updatedAt"])


@connections.command("set", context_settings=CONTEXT)
@project_arg
@env_arg
@click.argument("alias")
@click.option("--from-file", type=click.File("r"), help=FROM_FILE_HELP)
@click.option("--no-verify", is_flag=True, help="Store without connecting first.")
@click.option(
    "--pooler",
    type=click.Choice(POOLERS),
    default="none",
    show_default=True,
    help="The mode of the PgBouncer/Supavisor in front of the database (docs/poolers.md).",
)
@json_option
def connections_set(
    project: str, env: str, alias: str, from_file: IO[str] | None, no_verify: bool, pooler: str
) -> None:
    """Set connection ALIAS of PROJECT/ENV; the URL is read, never an argument."""
    url = _secret_value(from_file, "connection URL")
    path = f"/projects/{project}/envs/{env}/connections/{alias}"
    params = {"verify": "false"} if no_verify else None
    emit(client().call("PUT", path, body={"url": url, "pooler": pooler}, params=params))


@connections.command("delete", context_settings=CONTEXT)
@project_arg
@env_arg
@click.argument("alias")
def connections_delete(project: str, env: str, alias: str) -> None:
    """Delete connection ALIAS of PROJECT/ENV."""
    client().call("DELETE", f"/projects/{project}/envs/{env}/connections/{alias}")
    done(f"connection {alias} deleted")


@admin.group(context_settings=CONTEXT)
def secrets() -> None:
    """Named secrets of an env (write-only: values are never shown)."""


@secrets.command("list", context_settings=CONTEXT)
@project_arg
@env_arg
@json_option
def secrets_list(project: str, env: str) -> None:
    """Secret names of PROJECT/ENV."""
    path = f"/projects/{project}/envs/{env}/secrets"
    emit(client().items(path), ["name", "version", "updatedAt"])


@secrets.command("set", context_settings=CONTEXT)
@project_arg
@env_arg
@click.argument("name")
@click.option("--from-file", type=click.File("r"), help=FROM_FILE_HELP)
@json_option
def secrets_set(project: str, env: str, name: str, from_file: IO[str] | None) -> None:
    """Set secret NAME of PROJECT/ENV; the value is read, never an argument."""
    value = _secret_value(from_file, "secret value")
    path = f"/projects/{project}/envs/{env}/secrets/{name}"
    emit(client().call("PUT", path, body={"value": value}))


@secrets.command("delete", context_settings=CONTEXT)
@project_arg
@env_arg
@click.argument("name")
def secrets_delete(project: str, env: str, name: str) -> None:
    """Delete secret NAME of PROJECT/ENV."""
    client().call("DELETE", f"/projects/{project}/envs/{env}/secrets/{name}")
    done(f"secret {name} deleted")


# --- API keys -----------------------------------------------------------------------------------


@admin.group("api-keys", context_settings=CONTEXT)
def api_keys() -> None:
    """API keys of an env."""


@api_keys.command("list", context_settings=CONTEXT)
@project_arg
@env_arg
@json_option
def api_keys_list(project: str, env: str) -> None:
    """API keys of PROJECT/ENV (never their secret)."""
    path = f"/projects/{project}/envs/{env}/api-keys"
    emit(client().items(path), ["keyId", "name", "roles", "status", "createdAt", "lastUsedAt"])


@api_keys.command("create", context_settings=CONTEXT)
@project_arg
@env_arg
@click.option("--name", required=True, help="What the key is for (shown in lists).")
@click.option("--role", "roles", multiple=True, help="A role the key's callers get (repeat).")
@json_option
def api_keys_create(project: str, env: str, name: str, roles: tuple[str, ...]) -> None:
    """Create an API key for PROJECT/ENV; the key is printed once."""
    path = f"/projects/{project}/envs/{env}/api-keys"
    emit(client().call("POST", path, body={"name": name, "roles": list(roles)}))


@api_keys.command("revoke", context_settings=CONTEXT)
@project_arg
@env_arg
@click.argument("key_id")
def api_keys_revoke(project: str, env: str, key_id: str) -> None:
    """Revoke API key KEY_ID of PROJECT/ENV."""
    client().call("DELETE", f"/projects/{project}/envs/{env}/api-keys/{key_id}")
    done(f"API key {key_id} revoked")


# --- releases -----------------------------------------------------------------------------------


@admin.group(context_settings=CONTEXT)
def releases() -> None:
    """Release history of an env."""


@releases.command("list", context_settings=CONTEXT)
@project_arg
@env_arg
@json_option
def releases_list(project: str, env: str) -> None:
    """History of PROJECT/ENV, newest first."""
    path = f"/projects/{project}/envs/{env}/releases"
    emit(client().items(path), ["release", "ref", "publishedAt", "current"])


@releases.command("current", context_settings=CONTEXT)
@project_arg
@env_arg
@json_option
def releases_current(project: str, env: str) -> None:
    """The release PROJECT/ENV serves."""
    answer = client().call("GET", f"/projects/{project}/envs/{env}/releases/current")
    emit(answer if _wants_json() else {"release": answer["release"]})


@admin.command(context_settings=CONTEXT)
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--project", required=True, help="Project to publish to.")
@click.option("--env", required=True, help="Env to publish to.")
@click.option("--apply-schema", is_flag=True, help="Apply additive schema changes to the database.")
@click.option("--dry-run", is_flag=True, help="Compile and plan, change nothing.")
@click.option("--ref", help="A label kept in the history (e.g. a commit id).")
@json_option
def publish(
    directory: Path, project: str, env: str, apply_schema: bool, dry_run: bool, ref: str | None
) -> None:
    """Publish the project files in DIRECTORY; problems print as `file:line: message`."""
    from tenancy.releases.compile.compiler import load_project_dir

    try:
        files = load_project_dir(directory)
    except PublishError as exc:
        click.secho("stk-bridge: cannot read the project", err=True, fg="red")
        for detail in exc.details or []:
            click.echo("  " + _detail_line(detail), err=True)
        sys.exit(2)
    body: dict[str, Any] = {"files": files, "applySchema": apply_schema, "dryRun": dry_run}
    if ref:
        body["ref"] = ref
    api = client()
    with progress(f"publishing {len(files)} file(s) from {directory} to {project}/{env}"):
        answer = api.call(
            "POST", f"/projects/{project}/envs/{env}/releases", body=body, timeout=300
        )
    if _wants_json():
        emit(answer)
        return
    state = "reused" if answer["reused"] else "new"
    click.echo(f"release {answer['release']} ({state}){' [dry run]' if answer['dryRun'] else ''}")
    for statement in answer.get("ddl", []):
        click.echo(f"  {statement}")


@admin.command(context_settings=CONTEXT)
@project_arg
@env_arg
@click.argument("release")
@json_option
def rollback(project: str, env: str, release: str) -> None:
    """Point PROJECT/ENV back at RELEASE (one of its history)."""
    path = f"/projects/{project}/envs/{env}/releases/rollback"
    emit(client().call("POST", path, body={"release": release}))


@admin.command(context_settings=CONTEXT)
@project_arg
@click.option("--from", "source", required=True, help="Env whose current release is promoted.")
@click.option("--to", "target", required=True, help="Env that will serve it.")
@json_option
def promote(project: str, source: str, target: str) -> None:
    """Serve in one env of PROJECT the release another serves."""
    body = {"from": source, "to": target}
    emit(client().call("POST", f"/projects/{project}/promote", body=body))


# --- scoped admin tokens ------------------------------------------------------------------------

TOKEN_COLUMNS = ["tokenId", "name", "project", "scopes", "createdAt", "revokedAt"]


@admin.group(context_settings=CONTEXT)
def tokens() -> None:
    """Scoped admin tokens (global admin token required)."""


@tokens.command("list", context_settings=CONTEXT)
@click.option("--project", help="Only the tokens bound to this project.")
@json_option
def tokens_list(project: str | None) -> None:
    """Scoped admin tokens (never their secret)."""
    emit(client().items("/tokens", {"project": project}), TOKEN_COLUMNS)


@tokens.command("create", context_settings=CONTEXT)
@click.option("--name", required=True, help="What the token is for (e.g. 'shop CI').")
@click.option("--project", help="The one project it may act on (default: every project).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(["deploy", "keys", "secrets", "read"]),
    help="A scope (repeat): deploy, keys, secrets or read.",
)
@json_option
def tokens_create(name: str, project: str | None, scopes: tuple[str, ...]) -> None:
    """Create a scoped admin token; it is printed once."""
    body = {"name": name, "project": project, "scopes": list(scopes)}
    emit(client().call("POST", "/tokens", body=body))


@tokens.command("revoke", context_settings=CONTEXT)
@click.argument("token_id")
def tokens_revoke(token_id: str) -> None:
    """Revoke scoped admin token TOKEN_ID on every replica."""
    client().call("DELETE", f"/tokens/{token_id}")
    done(f"admin token {token_id} revoked")


# --- audit and keys -----------------------------------------------------------------------------


@admin.command(context_settings=CONTEXT)
@click.option("--project", help="Only entries of this project.")
@click.option("--action", help="Only this action, e.g. release.publish.")
@click.option("--since", help="Only entries from this ISO-8601 time (with an offset) on.")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(1, 500), help="How many."
)
@json_option
def audit(project: str | None, action: str | None, since: str | None, limit: int) -> None:
    """The audit log, newest first."""
    params = {"project": project, "action": action, "since": since, "limit": limit}
    answer = client().call("GET", "/audit", params=params)
    emit(answer["items"], ["ts", "actor", "action", "project", "env", "detail"])


@admin.command(context_settings=CONTEXT)
@project_arg
@click.option("--from", "start", help="First day, YYYY-MM-DD (default: 29 days before --to).")
@click.option("--to", "end", help="Last day, YYYY-MM-DD (default: today, UTC).")
@click.option("--env", help="Only this env.")
@json_option
def usage(project: str, start: str | None, end: str | None, env: str | None) -> None:
    """Daily usage of PROJECT, summed over replicas: requests, rows, bytes, logins."""
    params = {"from": start, "to": end, "env": env}
    answer = client().call("GET", f"/projects/{project}/usage", params=params)
    if _wants_json():
        emit(answer)
        return
    rows = [{"day": i["day"], "env": i["env"], **i["counters"]} for i in answer["items"]]
    metrics = sorted({name for item in answer["items"] for name in item["counters"]})
    emit(rows, ["day", "env", *metrics])


@admin.group("keys", context_settings=CONTEXT)
def keys_group() -> None:
    """The server's master keyring and project data keys."""


@keys_group.command("status", context_settings=CONTEXT)
@json_option
def keys_status() -> None:
    """How many data keys each master key wraps."""
    emit(client().call("GET", "/keys/status"))


@keys_group.command("rewrap", context_settings=CONTEXT)
@json_option
def keys_rewrap() -> None:
    """Re-wrap every project data key under the active master key."""
    api = client()
    with progress("re-wrapping every project data key under the active master key"):
        answer = api.call("POST", "/keys/rewrap", timeout=600)
    emit(answer)


@keys_group.command("rotate-dek", context_settings=CONTEXT)
@project_arg
@json_option
def keys_rotate_dek(project: str) -> None:
    """Give PROJECT a new data key and re-encrypt its secrets."""
    api = client()
    with progress(f"rotating the data key of {project}"):
        answer = api.call("POST", f"/projects/{project}/rotate-dek", timeout=600)
    emit(answer)
