"""`stk-bridge` as an operator runs it: real processes, real exit codes, real output."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tenancy.keyring import Keyring

from support.bridge import ADMIN_TOKEN
from support.processes import (
    STK_BRIDGE,
    Server,
    free_port,
    master_keys,
    port_is_bound,
    run,
    serving,
    stk_env,
)
from support.world import DEMO_DIR, seeded_sqlite

pytestmark = pytest.mark.slow  # real stk-bridge processes


def test_invalid_config_lists_every_problem_and_never_binds(tmp_path: Path) -> None:
    keys_file = tmp_path / "master.keys"
    keys_file.write_text(master_keys() + "\n")
    env = stk_env(
        pool_max_total="0",
        kv_url="ftp://x",
        master_keys=master_keys(),
        master_keys_file=str(keys_file),
        data_dir=str(tmp_path / "data"),
    )
    port = free_port()
    began = time.monotonic()
    proc = subprocess.Popen(
        [STK_BRIDGE, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while proc.poll() is None and time.monotonic() - began < 15:
            assert not port_is_bound(port)
            time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=5)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode not in (0, None)
    assert time.monotonic() - began < 10
    lines = stderr.strip().splitlines()
    assert len(lines) == 3, stderr
    assert [line.split(":")[1].strip() for line in sorted(lines)] == [
        "STK_KV_URL",
        "STK_MASTER_KEYS_FILE",
        "STK_POOL_MAX_TOTAL",
    ], stderr
    assert "STK_MASTER_KEYS is set too" in stderr
    assert "Traceback" not in stderr + stdout
    assert not (tmp_path / "data").exists()


def test_serve_without_master_key_says_how_to_make_one(tmp_path: Path) -> None:
    answer = run(["serve", "--port", str(free_port())], stk_env(data_dir=str(tmp_path)), tmp_path)
    assert answer.returncode != 0
    assert len(answer.stderr.strip().splitlines()) == 1, answer.stderr
    assert "master key" in answer.stderr
    assert "`stk-bridge keys generate`" in answer.stderr
    assert "Started server" not in answer.stderr


def test_keys_generate_prints_a_usable_entry(tmp_path: Path) -> None:
    first = run(["keys", "generate"], stk_env(), tmp_path)
    named = run(["keys", "generate", "--kid", "rotation-2"], stk_env(), tmp_path)
    assert first.returncode == named.returncode == 0
    entry = first.stdout.strip()
    assert len(first.stdout.splitlines()) == 1
    kid, _, key = entry.partition(":")
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,32}", kid)
    assert len(base64.b64decode(key, validate=True)) == 32
    assert named.stdout.startswith("rotation-2:")
    Keyring.parse(f"{named.stdout.strip()},{entry}")  # both parse, as one keyring
    assert entry != run(["keys", "generate"], stk_env(), tmp_path).stdout.strip()


def _stats(server: Server, project: str) -> httpx.Response:
    body = {"path": "logics/public/stats"}
    return httpx.post(f"{server.base}/call", json=body, headers={"X-Santokit-Project": project})


def _publish(server: Server, directory: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    args = ["admin", "publish", str(directory), "--project", "alpha", "--env", "prod"]
    return run(args, stk_env(admin_url=server.base, admin_token=ADMIN_TOKEN), cwd)


def test_publish_against_a_running_server(tmp_path: Path) -> None:
    env = stk_env(
        data_dir=str(tmp_path / "data"), master_keys=master_keys(), tenant_data_dir=str(tmp_path)
    )
    env["STK_ADMIN_TOKENS"] = ADMIN_TOKEN
    with serving(["serve"], env, tmp_path) as server:
        assert server.admin("POST", "/projects", json={"id": "alpha", "envs": ["prod"]}).is_success
        url = {"url": seeded_sqlite(tmp_path / "alpha.db")}
        assert server.admin(
            "PUT", "/projects/alpha/envs/prod/connections/main", json=url
        ).is_success

        good = _publish(server, DEMO_DIR, tmp_path)
        assert good.returncode == 0, good.stderr
        release = re.search(r"^release ([0-9a-f]{64}) \(new\)$", good.stdout, re.M)
        assert release, good.stdout
        assert _stats(server, "alpha").status_code == 200
        again = _publish(server, DEMO_DIR, tmp_path)
        assert f"release {release[1]} (reused)" in again.stdout

        broken = tmp_path / "broken"
        shutil.copytree(DEMO_DIR, broken)
        (broken / "logics" / "bad.sql").write_text(
            "---\nauth: public\ncolour: blue\n---\nSELECT 1\nWHERE x = :nope\n"
        )
        failed = _publish(server, broken, tmp_path)
        assert failed.returncode == 1
        assert "BAD_REQUEST (400)" in failed.stderr
        problems = [line for line in failed.stderr.splitlines() if "logics/bad.sql:" in line]
        assert len(problems) == 2, failed.stderr
        assert re.search(r"logics/bad\.sql:3: unknown key 'colour'", failed.stderr), failed.stderr
        assert re.search(r"logics/bad\.sql:6: .*':nope'", failed.stderr), failed.stderr
        current = server.admin("GET", "/projects/alpha/envs/prod/releases/current")
        assert current.json()["release"] == release[1]  # the broken publish changed nothing

        missing = _publish(server, tmp_path / "missing", tmp_path)
        assert missing.returncode == 2
        assert f"{tmp_path / 'missing'}: not a directory" in missing.stderr
        assert "Traceback" not in missing.stderr

    gone = _publish(server, DEMO_DIR, tmp_path)  # the server has stopped
    assert gone.returncode == 3
    assert f"could not reach {server.base}" in gone.stderr
    assert "Traceback" not in gone.stderr


def test_migrate_then_keys_status_and_rewrap_rotate_the_master_key(tmp_path: Path) -> None:
    old, new = Keyring.generate_entry("old"), Keyring.generate_entry("new")
    data = str(tmp_path / "data")
    migrated = run(["migrate"], stk_env(data_dir=data), tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "data" / "registry.db").is_file()

    env = stk_env(
        data_dir=data,
        master_keys=old,
        admin_tokens=ADMIN_TOKEN,
        auto_migrate="false",
        tenant_data_dir=str(tmp_path),
    )
    with serving(["serve"], env, tmp_path) as server:
        for project in ("alpha", "beta"):
            assert server.admin("POST", "/projects", json={"id": project}).status_code == 201
        url = {"url": seeded_sqlite(tmp_path / "alpha.db")}
        put = server.admin("PUT", "/projects/alpha/envs/prod/connections/main", json=url)
        assert put.is_success, put.text
        assert _publish(server, DEMO_DIR, tmp_path).returncode == 0

    status = run(["keys", "status"], stk_env(data_dir=data, master_keys=old), tmp_path)
    assert status.returncode == 0, status.stderr
    assert "active kid: old" in status.stdout
    assert "old: wraps 2 data key(s)" in status.stdout

    rotated = stk_env(data_dir=data, master_keys=f"{new},{old}", tenant_data_dir=str(tmp_path))
    rewrap = run(["keys", "rewrap"], rotated, tmp_path)
    assert rewrap.returncode == 0, rewrap.stderr
    assert "re-wrapped 2 data key(s)" in rewrap.stdout
    status = run(["keys", "status"], rotated, tmp_path)
    assert "active kid: new" in status.stdout
    assert "new: wraps 2 data key(s)" in status.stdout
    assert "old: wraps 2" not in status.stdout
    for output in (status.stdout, rewrap.stdout):
        assert old.split(":")[1] not in output and new.split(":")[1] not in output

    # The old key removed: the tenant's secrets still open (its DEK is wrapped by `new` now).
    env["STK_MASTER_KEYS"] = new
    with serving(["serve"], env, tmp_path) as server:
        answer = _stats(server, "alpha")
        assert answer.status_code == 200, answer.text


def test_serve_with_an_unknown_primary_names_the_setting(tmp_path: Path) -> None:
    env = stk_env(data_dir=str(tmp_path), master_keys=Keyring.generate_entry("a"))
    env["STK_MASTER_KEY_PRIMARY"] = "b"
    answer = run(["serve", "--port", str(free_port())], env, tmp_path)
    assert answer.returncode != 0
    assert "STK_MASTER_KEY_PRIMARY: primary kid 'b' is not in the keyring" in answer.stderr
    assert "Started server" not in answer.stderr
