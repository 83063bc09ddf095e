"""`stk-bridge types` (`docs/guide.md` "Typed clients") against a real `stk-bridge serve` with
the demo project: the TypeScript declarations compile with `tsc --strict` beside a sample and
refuse a wrong param type; the Python module passes `mypy --strict` beside a sample, refuses a
wrong param type, and its client works against the server."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.cli import main
from tenancy.settings import unknown_variables

from support.bridge import ADMIN_TOKEN
from support.processes import Server
from support.services import unavailable
from support.world import PASSWORD, demo_files, new_email, serving_demo_tenant

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TSC = ROOT / "tests" / "typescript" / "node_modules" / ".bin" / "tsc"


@dataclass
class Demo:
    server: Server
    api_key: str
    cwd: Path

    def types(self, lang: str, *extra: str, **env: str) -> tuple[int, str, str]:
        """`stk-bridge types` in this process (its environment: `env` as STK_*): exit code,
        stdout, stderr."""
        args = ["types", "--project", "demo", "--env", "prod", "--lang", lang, *extra]
        variables = {f"STK_{k.upper()}": v for k, v in env.items()}
        with (
            pytest.MonkeyPatch.context() as patch,
            redirect_stdout(io.StringIO()) as out,
            redirect_stderr(io.StringIO()) as err,
        ):
            for name in ("STK_API_KEY", "STK_ADMIN_TOKEN"):
                patch.delenv(name, raising=False)
            for name, value in variables.items():
                patch.setenv(name, value)
            code = 0
            try:
                main([*args, "--url", self.server.base])
            except SystemExit as exc:
                code = int(exc.code or 0)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("typegen")
    with serving_demo_tenant(tmp) as server:
        r = server.admin("POST", "/projects/demo/envs/prod/releases", json={"files": demo_files()})
        assert r.status_code == 201, r.text
        r = server.admin(
            "POST", "/projects/demo/envs/prod/api-keys", json={"name": "t", "roles": ["admin"]}
        )
        assert r.status_code == 201, r.text
        yield Demo(server, r.json()["apiKey"], tmp)


TS_SAMPLE = """
import type { Client, DbNotesRow, CallError } from "./santokit";

export async function main(client: Client): Promise<string> {
  const rows: DbNotesRow[] = await client.call("db/notes/select", {
    where: { pinned: true, title: { $like: "%a%" }, tags: { $null: false } },
    orderBy: { created_at: "desc" },
    limit: 10,
    expand: ["notebook"],
  });
  const stats = await client.call("logics/public/stats");
  await client.call("logics/notes/pin", { note_id: "01J", pinned: false });
  const inserted = await client.call("db/categories/insert", { data: { name: "n" } });
  const failed: CallError | null = null;
  return rows.map((r) => r.title.toUpperCase()).join(",") + String(inserted.id) +
    JSON.stringify(stats) + String(failed);
}
"""
TS_WRONG = """
import type { Client } from "./santokit";

export async function main(client: Client): Promise<void> {
  await client.call("logics/notes/pin", { note_id: 42 });
  await client.call("db/notes/select", { where: { pinned: "yes" } });
}
"""


def check(directory: Path, command: list[str], samples: dict[str, str]) -> dict[str, str]:
    """One run of a type checker over the samples; its error lines by sample file."""
    for name, text in samples.items():
        (directory / name).write_text(text)
    done = subprocess.run(
        [*command, *samples], cwd=directory, capture_output=True, text=True, timeout=300
    )
    errors = {name: "" for name in samples}
    for line in done.stdout.splitlines():
        for name in samples:
            if line.startswith(name):
                errors[name] += line + "\n"
    assert done.returncode != 0  # the wrong sample
    return errors


def test_typescript_declarations_compile_and_catch_a_wrong_param(
    demo: Demo, tmp_path: Path
) -> None:
    if not TSC.exists():
        unavailable("typescript", "not installed (make typescript)")
    out = tmp_path / "santokit.d.ts"
    code, _, err = demo.types("typescript", "--out", str(out), api_key=demo.api_key)
    assert code == 0, err
    assert 'call(path: "logics/admin/activity"' in out.read_text()
    command = [str(TSC), "--strict", "--noEmit", "--target", "es2022"]
    samples = {
        "sample.ts": TS_SAMPLE,
        "wrong.ts": TS_WRONG,
        "right.ts": TS_WRONG.replace("note_id: 42", 'note_id: "42"').replace('"yes"', "true"),
    }
    errors = check(tmp_path, command, samples)
    assert errors["sample.ts"] == "" and errors["right.ts"] == "", errors
    assert errors["wrong.ts"].count("No overload matches this call") == 2, errors  # both lines


PY_SAMPLE = """
from __future__ import annotations

from santokit_client import Client, DbNotesRow


async def main(client: Client) -> str:
    rows: list[DbNotesRow] = await client.call(
        "db/notes/select", {"where": {"pinned": True}, "orderBy": {"created_at": "desc"}}
    )
    await client.call("logics/notes/pin", {"note_id": "01J", "pinned": False})
    inserted = await client.call("db/categories/insert", {"data": {"name": "n"}})
    stats = await client.call("logics/public/stats")
    return ",".join(row["title"].upper() for row in rows) + str(inserted["id"]) + str(stats)
"""
PY_WRONG = """
from santokit_client import Client


async def main(client: Client) -> None:
    await client.call("logics/notes/pin", {"note_id": 42})
    await client.call("db/notes/select", {"where": {"pinned": "yes"}})
"""


def test_python_module_type_checks_and_its_client_works(demo: Demo, tmp_path: Path) -> None:
    module = tmp_path / "santokit_client.py"
    code, _, err = demo.types("python", "--out", str(module), api_key=demo.api_key)
    assert code == 0, err
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", module.name]
    samples = {
        "sample.py": PY_SAMPLE,
        "wrong.py": PY_WRONG,
        "right.py": PY_WRONG.replace('"note_id": 42', '"note_id": "42"').replace('"yes"', "True"),
    }
    errors = check(tmp_path, command, samples)
    assert errors["sample.py"] == "" and errors["right.py"] == "", errors
    assert '"dict[str, int]"' in errors["wrong.py"], errors
    assert errors["wrong.py"].count("No overload variant") == 2, errors  # both lines

    spec = importlib.util.spec_from_file_location("santokit_client", module)
    assert spec is not None and spec.loader is not None
    client_module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client_module)
    asyncio.run(_use_client(client_module, demo))


async def _use_client(module: Any, demo: Demo) -> None:
    base = demo.server.base
    async with module.Client(base, api_key=demo.api_key, project="demo", env="prod") as client:
        rows = await client.call("db/categories/select", {"orderBy": {"name": "asc"}})
        assert rows and {"id", "name", "created_at"} <= set(rows[0])
        stats = await client.call("logics/public/stats")
        assert stats[0]["categories"] == len(rows)
        with pytest.raises(module.SantokitError) as failed:
            await client.call("db/notes/select", {"where": {"pinned": "yes"}})
        assert failed.value.status == 400 and failed.value.code == "BAD_REQUEST"
    email = new_email()
    signup = {"email": email, "password": PASSWORD}
    r = httpx.post(f"{base}/auth/signup", json=signup, headers={"X-Santokit-Project": "demo"})
    assert r.status_code == 201, r.text
    async with module.Client(base, project="demo") as user:
        session = await user.login(email, PASSWORD)
        assert session["user"]["email"] == email
        assert await user.call("logics/notes/mine", {}) == []


def test_admin_token_and_roles_and_missing_credentials(demo: Demo) -> None:
    code, everything, err = demo.types("typescript", admin_token=ADMIN_TOKEN)
    assert code == 0, err
    assert '"logics/admin/activity"' in everything
    code, anonymous, err = demo.types("python", "--roles", "public", admin_token=ADMIN_TOKEN)
    assert code == 0, err
    assert '"db/categories/select"' in anonymous
    assert "logics/admin/activity" not in anonymous
    code, _, err = demo.types("python")
    assert code == 2 and "STK_API_KEY or STK_ADMIN_TOKEN" in err
    code, _, err = demo.types("python", api_key="stk_nope")
    assert code == 2 and "401" in err


def test_its_variables_do_not_stop_a_server() -> None:
    """A shell that exported them for `types` can still start `serve` (unknown STK_* stop it)."""
    assert unknown_variables(["STK_URL", "STK_API_KEY", "STK_ADMIN_TOKEN"]) == []
