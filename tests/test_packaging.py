"""The package as it ships (`docs/deployment.md`): a wheel built from the sources the image copies,
installed into a fresh virtualenv, runs `stk-bridge dev` with its own demo project."""

from __future__ import annotations

import ast
import importlib.metadata
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support.processes import Server, free_port, stk_env, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
PIP = [sys.executable, "-m", "pip"]


def build_wheel(tmp: Path) -> Path:
    """The wheel, built from a copy holding only what the Docker context holds."""
    source = tmp / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    for package in ("bridge", "tenancy", "migrations"):
        skip = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / package, source / package, ignore=skip)
    dist = tmp / "dist"
    built = subprocess.run(
        [*PIP, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("santokit_bridge-*.whl")
    return wheel


def install(wheel: Path, venv: Path) -> Path:
    """A fresh virtualenv with the wheel; its dependencies come from this environment (no
    network), through a path entry that does not process this environment's editable install."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [*PIP, "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin" / "stk-bridge"


@pytest.mark.slow  # builds a wheel and starts a real process
def test_dev_runs_from_an_installed_wheel(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    program = install(wheel, tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"  # not the source tree: nothing can be read from it
    elsewhere.mkdir()

    where = subprocess.run(
        [str(program.with_name("python")), "-c", "import bridge.dev as d; print(d.EXAMPLE)"],
        cwd=elsewhere, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(tmp_path / "venv")), where
    assert (Path(where) / "schema" / "app.yaml").is_file()
    helped = subprocess.run([str(program), "dev", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--port" in helped.stdout

    port = free_port()
    out, err = elsewhere / "dev.out", elsewhere / "dev.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(program), "dev", "--host", "127.0.0.1", "--port", str(port)],
            env=stk_env(data_dir=str(elsewhere / "data")), cwd=elsewhere, stdout=stdout,
            stderr=stderr,
        )  # fmt: skip
    server = Server(proc, port, out, err)
    try:
        wait_ready(server, "/healthz")
        stats = httpx.post(
            f"{server.base}/call",
            json={"path": "logics/public/stats"},
            headers={"Host": "acme.localhost"},
        )
        assert stats.status_code == 200, stats.text  # the demo from package data is served
    finally:
        stop(server)


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


# Dependencies no module imports by name, and why they are still needed.
USED_INDIRECTLY = {
    "uvloop": "uvicorn's event loop when installed (`serve`, docs/decisions.md packaging)",
    "httptools": "uvicorn's HTTP parser when installed",
}


def test_every_runtime_dependency_is_imported_and_locked() -> None:
    locked = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and line[0].isalnum():
            name, _, version = line.split(" ")[0].partition("==")
            locked[canonicalize_name(name)] = version
    imported: set[str] = set()
    for path in [*ROOT.glob("bridge/**/*.py"), *ROOT.glob("tenancy/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    providers = importlib.metadata.packages_distributions()
    used = {canonicalize_name(dist) for module in imported for dist in providers.get(module, [])}

    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock: run pip-compile"
        assert requirement.specifier.contains(locked[name]), f"locked {name} {locked[name]}"
        assert name in used or name in USED_INDIRECTLY, f"nothing imports {name}"
    assert not {"watchfiles", "websockets", "python-ulid"} & set(locked)
    assert "--hash=sha256:" in (ROOT / "requirements.lock").read_text()


def test_the_image_installs_the_lock_and_is_labelled() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r requirements.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    for label in ('image.version="${VERSION}"', 'image.revision="${COMMIT}"'):
        assert label in dockerfile
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text()
