"""`stk-bridge admin ...` and `stk-bridge config` as an operator runs them: real processes against
a real server; exit codes 0 ok, 1 refused, 2 usage, 3 unreachable (`docs/operations.md`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from bridge.cli import main

from support.bridge import ADMIN_TOKEN
from support.processes import STK_BRIDGE, Server, free_port, master_keys, run, serving, stk_env
from support.world import DEMO_DIR, seeded_sqlite

ANSI = "\x1b["


def every_command(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from every_command(command, f"{prefix}{name} ")


def test_every_command_and_option_has_help() -> None:
    commands = list(every_command(main))
    assert len(commands) > 40
    for name, command in commands:
        assert command.help, f"`stk-bridge {name}` has no help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"`stk-bridge {name}` option {param.opts} has no help"
    names = {name for name, _ in commands}
    for group in ("projects", "envs", "connections", "secrets", "api-keys", "releases"):
        assert f"admin {group}" in names
    for command in ("publish", "rollback", "promote", "tokens", "audit", "keys"):
        assert f"admin {command}" in names


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("admin-cli")
    env = stk_env(
        data_dir=str(tmp / "data"),
        master_keys=master_keys(),
        admin_tokens=ADMIN_TOKEN,
        tenant_data_dir=str(tmp_path_factory.getbasetemp()),  # each test's tenant files
    )
    with serving(["serve"], env, tmp) as running:
        yield running


def admin(
    server: Server, cwd: Path, *args: str, token: str = ADMIN_TOKEN, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = stk_env(admin_url=server.base, admin_token=token)
    return subprocess.run(
        [STK_BRIDGE, "admin", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


@pytest.mark.slow
def test_version_and_help(tmp_path: Path) -> None:
    version = run(["--version"], stk_env(), tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("stk-bridge, version ")
    helped = run(["admin", "api-keys", "create", "--help"], stk_env(), tmp_path)
    assert helped.returncode == 0 and "--role" in helped.stdout and "--json" in helped.stdout
    assert ANSI not in helped.stdout


@pytest.mark.slow
def test_a_tenant_from_the_terminal(server: Server, tmp_path: Path) -> None:
    made = admin(server, tmp_path, "projects", "create", "alpha", "--env", "prod", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["id"] == "alpha"
    assert admin(server, tmp_path, "projects", "create", "beta").returncode == 0

    listed = admin(server, tmp_path, "projects", "list")
    assert listed.returncode == 0
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["id", "status", "envs", "defaultEnv", "hosts"]
    assert [row.split()[0] for row in rows] == ["alpha", "beta"]
    assert ANSI not in listed.stdout + listed.stderr  # colours only on a terminal

    # The URL goes through stdin, never the command line.
    url = seeded_sqlite(tmp_path / "alpha.db")
    connect = ["connections", "set", "alpha", "prod", "main", "--from-file", "-"]
    pooled = admin(server, tmp_path, *connect, "--pooler", "session", stdin=url + "\n")
    assert pooled.returncode == 1  # a pooler is for PostgreSQL (docs/poolers.md)
    assert "A pooler applies to PostgreSQL connections only" in pooled.stderr
    assert admin(server, tmp_path, *connect, stdin=url + "\n").returncode == 0
    connections = admin(server, tmp_path, "connections", "list", "alpha", "prod", "--json")
    assert [(c["alias"], c["pooler"]) for c in json.loads(connections.stdout)] == [("main", "none")]
    assert url not in connections.stdout

    # A scoped token for alpha's CI, from a file: it deploys alpha and nothing else.
    token = admin(
        server, tmp_path, "tokens", "create", "--name", "ci", "--project", "alpha",
        "--scope", "deploy", "--json",
    )  # fmt: skip
    assert token.returncode == 0, token.stderr
    token_file = tmp_path / "ci.token"
    token_file.write_text(json.loads(token.stdout)["token"] + "\n")
    ci = stk_env(admin_url=server.base, admin_token_file=str(token_file))
    publish = ["admin", "publish", str(DEMO_DIR), "--project", "alpha", "--env", "prod"]
    published = run(publish, ci, tmp_path)
    assert published.returncode == 0, published.stderr
    assert published.stdout.startswith("release ") and "(new)" in published.stdout
    assert "publishing" in published.stderr  # progress, on stderr

    other = run([*publish[:-4], "--project", "beta", "--env", "prod"], ci, tmp_path)
    assert other.returncode == 1
    assert "FORBIDDEN (403)" in other.stderr and "Traceback" not in other.stderr
    key = run(["admin", "api-keys", "create", "alpha", "prod", "--name", "x"], ci, tmp_path)
    assert key.returncode == 1 and "FORBIDDEN" in key.stderr

    history = admin(server, tmp_path, "releases", "list", "alpha", "prod", "--json")
    assert len(json.loads(history.stdout)) == 1
    audit = admin(server, tmp_path, "audit", "--project", "alpha", "--json")
    actors = {e["action"]: e["actor"] for e in json.loads(audit.stdout)}
    assert actors["release.publish"] == "token:" + json.loads(token.stdout)["tokenId"]

    refused = admin(server, tmp_path, "projects", "create", "alpha")
    assert refused.returncode == 1
    assert refused.stderr.startswith("stk-bridge: CONFLICT (409):")
    assert admin(server, tmp_path, "projects", "delete", "beta").returncode == 2  # no --yes
    assert admin(server, tmp_path, "projects", "delete", "beta", "--yes").returncode == 0


@pytest.mark.slow
def test_exit_codes_for_usage_and_unreachable(server: Server, tmp_path: Path) -> None:
    no_token = run(["admin", "projects", "list"], stk_env(admin_url=server.base), tmp_path)
    assert no_token.returncode == 2 and "STK_ADMIN_TOKEN" in no_token.stderr
    wrong = admin(server, tmp_path, "projects", "list", token="x" * 40)
    assert wrong.returncode == 1 and "UNAUTHORIZED (401)" in wrong.stderr
    unknown = admin(server, tmp_path, "projects", "list", "--colour")
    assert unknown.returncode == 2 and "No such option" in unknown.stderr
    gone = f"http://127.0.0.1:{free_port()}"
    down = run(
        ["admin", "projects", "list"], stk_env(admin_url=gone, admin_token=ADMIN_TOKEN), tmp_path
    )
    assert down.returncode == 3 and f"could not reach {gone}" in down.stderr
    assert "Traceback" not in no_token.stderr + wrong.stderr + unknown.stderr + down.stderr


@pytest.mark.slow
def test_config_refuses_unknown_variables_and_redacts(tmp_path: Path) -> None:
    typo = run(["serve"], stk_env(data_dir=str(tmp_path), pool_max_tenant="3"), tmp_path)
    assert typo.returncode == 2
    assert "STK_POOL_MAX_TENANT: unknown setting; did you mean STK_POOL_MAX_PER_TENANT" in (
        typo.stderr
    )
    (tmp_path / "redis.url").write_text("redis://:hunter2secret@127.0.0.1:6379/0\n")
    env = stk_env(data_dir=str(tmp_path), redis_url_file=str(tmp_path / "redis.url"))
    env["STK_MASTER_KEYS"] = master_keys()
    shown = run(["config", "--json"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    config = json.loads(shown.stdout)
    assert config["STK_REDIS_URL"] == "redis://:***@127.0.0.1:6379/0"
    assert config["STK_MASTER_KEYS"] == "<set>" and config["STK_POOL_MAX_PER_TENANT"] == 5
    assert "hunter2secret" not in shown.stdout and env["STK_MASTER_KEYS"] not in shown.stdout
