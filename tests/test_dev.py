"""`stk-bridge dev` on a fresh machine: the printed curl commands work exactly as printed.

The commands are run verbatim through bash. The HTTP status comes from a `.curlrc` (CURL_HOME)
that adds `--write-out`, so not one character of what the user would paste is changed.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from support.processes import Server, free_port, start, stk_env, stop, wait_ready

pytestmark = pytest.mark.slow  # a real `stk-bridge dev` process


@dataclass
class Banner:
    admin_token: str
    commands: list[tuple[str, str]]  # (heading it is printed under, command)
    cli: list[str] = field(default_factory=list)  # the admin CLI commands


def parse_banner(stdout: str) -> Banner:
    token, heading, commands, cli = "", "", [], []
    for line in (raw.strip() for raw in stdout.splitlines()):
        if line.startswith("admin token:"):
            token = line.removeprefix("admin token:").strip()
        elif line.startswith("STK_ADMIN_URL="):
            cli.append(line)
        elif line.startswith(("curl ", "TOKEN=$(curl ")):
            commands.append((heading, line))
        elif line:
            heading = line
    assert token and commands and cli, stdout
    return Banner(token, commands, cli)


def curl(command: str, curl_home: Path) -> tuple[int, str]:
    env = stk_env()
    env["CURL_HOME"] = str(curl_home)
    done = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=15
    )
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def run_banner_commands(banner: Banner, curl_home: Path) -> dict[str, str]:
    """Every command answers as its heading says; the answers keyed by command."""
    answers = {}
    for heading, command in banner.commands:
        status, body = curl(command, curl_home)
        if "(403)" in heading:
            assert status == 403, (command, body)
            assert '"FORBIDDEN"' in body
        else:
            assert 200 <= status < 300, (command, status, body)
        answers[command] = body
    return answers


def tenant_answers(answers: dict[str, str], project: str) -> list[str]:
    return [
        body
        for command, body in answers.items()
        if f"Host: {project}.localhost" in command and '"FORBIDDEN"' not in body
    ]


def dev(data_dir: Path, cwd: Path) -> Server:
    server = start(["dev"], stk_env(data_dir=str(data_dir)), cwd, free_port())
    try:
        wait_ready(server, timeout=120)  # bootstrap + imports, on a busy machine
    except BaseException:
        stop(server)
        raise
    return server


def test_dev_prints_commands_that_work_and_keeps_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    curl_home = tmp_path / "curl"
    curl_home.mkdir()
    (curl_home / ".curlrc").write_text('write-out = "\\n%{http_code}"\n')

    server = dev(data_dir, tmp_path)
    try:
        banner = parse_banner(server.stdout())
        assert len(banner.commands) == 10, server.stdout()
        assert sum("(403)" in heading for heading, _ in banner.commands) == 1
        assert any("/admin/v1/" in command for _, command in banner.commands)
        first = run_banner_commands(banner, curl_home)

        acme, globex = tenant_answers(first, "acme"), tenant_answers(first, "globex")
        assert len(acme) == len(globex) == 4
        assert any("Welcome to acme" in body for body in acme)
        assert any("Welcome to globex" in body for body in globex)
        assert not any("globex" in body for body in acme)
        assert not any("acme" in body for body in globex)
        assert acme != globex  # each tenant's own database, not a shared one
        # The demo user signs in and its row filter shows exactly its own note.
        for project, answers in (("acme", acme), ("globex", globex)):
            user_view = json.loads(answers[-1])["data"]
            title = f"Only {project}'s demo user sees this"
            assert user_view == [{"id": f"{project}-demo-user-note", "title": title}]
            api_view = json.loads(answers[-2])["data"]
            assert {"title": "Ship v1"} in api_view  # the admin key sees every note

        made = httpx.post(
            f"{server.base}/admin/v1/projects",
            json={"id": "initech"},
            headers={"Authorization": f"Bearer {banner.admin_token}"},
        )
        assert made.status_code == 201, made.text
    finally:
        first_exit = stop(server, signal.SIGINT)  # what Ctrl+C sends
    assert first_exit == 0, server.stderr()[-2000:]
    assert "Traceback" not in server.stderr()

    # Issue 9 row 8: the registry and tenant SQLite files (and their journals) too.
    databases = [p for p in data_dir.rglob("*") if ".db" in p.name]
    assert {"registry.db", "acme.db", "globex.db"} <= {p.name for p in databases}
    for path in [data_dir / "master.keys", data_dir / "admin.token", *databases]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{path.name} has mode {oct(mode)}"
    assert (data_dir / "admin.token").read_text().strip() == banner.admin_token

    again = dev(data_dir, tmp_path)
    try:
        second = parse_banner(again.stdout())
        assert second.admin_token == banner.admin_token
        # The same commands (same API keys), on the new port.
        moved = [(h, c.replace(again.base, server.base)) for h, c in second.commands]
        assert moved == banner.commands
        answers = run_banner_commands(second, curl_home)
        # Same data, not seeded twice: every tenant answers what it answered before.
        for (heading, command), (_, before) in zip(second.commands, banner.commands, strict=True):
            if "(403)" not in heading and "/admin/" not in command:
                assert answers[command] == first[before]
        admin_listing = next(body for c, body in answers.items() if "/admin/" in c)
        assert '"initech"' in admin_listing
        # The admin CLI lines work as printed, from another directory, without the token in them.
        listed, used = (
            subprocess.run(
                ["bash", "-c", line], env=stk_env(), cwd=tmp_path / "curl", capture_output=True,
                text=True, timeout=30,
            )
            for line in second.cli
        )  # fmt: skip
        assert all(banner.admin_token not in line for line in second.cli)
        assert listed.returncode == 0, listed.stderr
        assert [row.split()[0] for row in listed.stdout.splitlines()[1:]] == [
            "acme", "globex", "initech",
        ]  # fmt: skip
        # acme's usage of the first run (flushed when it stopped) and of this one so far.
        assert used.returncode == 0, used.stderr
        header, *days = used.stdout.splitlines()
        assert "requests.logics.2xx" in header.split() and "logins" in header.split(), header
        assert days and days[-1].split()[1] == "dev", used.stdout
    finally:
        second_exit = stop(again)
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the status reflects it.
    assert second_exit in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in again.stderr()
    assert "Traceback" not in again.stderr()
