"""Project directory files → one validated, canonical, content-addressed release (`docs/project-
files.md`).

The server compiles; clients only send files. Every problem of every file is collected before
failing, so one publish attempt shows the whole list. The canonical JSON (sorted keys, no
whitespace) depends only on meaning, so republishing the same project yields the same id.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tenancy.errors import PublishError
from tenancy.releases.compile.limits import LIMITS_FILE, compile_limits
from tenancy.releases.compile.logics import compile_logic, logic_name
from tenancy.releases.compile.permissions import ROLE, compile_permissions
from tenancy.releases.compile.schema import compile_schema
from tenancy.releases.compile.sources import Problems, YamlMap, check_keys, load_yaml
from tenancy.releases.model import FORMAT
from tenancy.storage.compile import STORAGE_FILE, compile_storage

PERMISSIONS_FILE = "config/permissions.yaml"
AUTH_FILE = "config/auth.yaml"
MAX_FILE_BYTES = 1_048_576
ALLOWED = (
    "schema/*.yaml, config/permissions.yaml, config/auth.yaml, config/storage.yaml, "
    "config/limits.yaml, logics/**/*.sql"
)
_SCHEMA_FILE = re.compile(r"^schema/[^/]+\.yaml$")
_LOGIC_FILE = re.compile(r"^logics/(?:[^/]+/)*[^/]+\.sql$")
_ORIGIN = re.compile(
    r"^https?://[a-z0-9.-]+(?::[0-9]{1,5})?$|^https?://\[[0-9a-f:.]+\](?::[0-9]{1,5})?$"
)
ACCESS_TTL_MAX = 86_400
_TTL_BOUNDS = {
    "accessTtlSeconds": (60, ACCESS_TTL_MAX),
    "refreshTtlSeconds": (300, 31_536_000),
}
DEFAULT_AUTH: dict[str, Any] = {
    "signup": {"enabled": False, "roles": []},
    "tokens": {"accessTtlSeconds": 900, "refreshTtlSeconds": 2_592_000},
    "cors": {"origins": []},
}


@dataclass(frozen=True)
class CompiledRelease:
    id: str  # hex SHA-256 of body
    body: bytes  # canonical JSON
    doc: dict[str, Any]


def compile_release(
    files: Mapping[str, str], *, connections: Collection[str] | None
) -> CompiledRelease:
    """Compile project files; raise PublishError listing every problem.

    `connections` are the aliases configured for the target env; None skips that check.
    """
    problems = Problems()
    schema_files: list[tuple[str, str]] = []
    logic_files: list[tuple[str, str]] = []
    permissions_text: str | None = None
    auth_text: str | None = None
    storage_text: str | None = None
    limits_text: str | None = None
    for path, content in files.items():
        kind = _file_kind(path, content, problems)
        if kind == "schema":
            schema_files.append((path, content))
        elif kind == "logic":
            logic_files.append((path, content))
        elif kind == "permissions":
            permissions_text = content
        elif kind == "auth":
            auth_text = content
        elif kind == "storage":
            storage_text = content
        elif kind == "limits":
            limits_text = content
    if not files:
        problems.add(".", f"no project files (expected {ALLOWED})")
    schema = compile_schema(schema_files, problems, connections)
    permissions = compile_permissions(PERMISSIONS_FILE, permissions_text, schema, problems)
    auth = compile_auth(auth_text, problems)
    storage = compile_storage(STORAGE_FILE, storage_text, problems)
    limits = compile_limits(limits_text, problems)
    logics: dict[str, Any] = {}
    for path, text in sorted(logic_files):
        name = logic_name(path)
        if name is None:
            problems.add(path, "a logic path may only use letters, digits, '_' and '-'")
            continue
        logic = compile_logic(path, text, problems, connections)
        if logic is not None:
            logics[name] = logic
    problems.raise_if_any()
    doc = {
        "format": FORMAT,
        "tables": schema.tables,
        "permissions": permissions,
        "auth": auth,
        "logics": logics,
    }
    if storage is not None:  # absent without the file, so releases without storage keep their id
        doc["storage"] = storage
    if limits is not None:  # the same for config/limits.yaml
        doc["limits"] = limits
    body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return CompiledRelease(hashlib.sha256(body).hexdigest(), body, orjson.loads(body))


def _file_kind(path: object, content: object, problems: Problems) -> str | None:
    if not isinstance(path, str):
        problems.add(repr(path), "a file name must be a string")
        return None
    segments = path.split("/")
    if (
        "\\" in path
        or "\x00" in path
        or path.startswith("/")
        or any(seg in ("", ".", "..") for seg in segments)
    ):
        problems.add(path, "invalid file path (relative, '/'-separated, no '.' or '..' segments)")
        return None
    if path == PERMISSIONS_FILE:
        kind = "permissions"
    elif path == AUTH_FILE:
        kind = "auth"
    elif path == STORAGE_FILE:
        kind = "storage"
    elif path == LIMITS_FILE:
        kind = "limits"
    elif _SCHEMA_FILE.fullmatch(path):
        kind = "schema"
    elif _LOGIC_FILE.fullmatch(path):
        kind = "logic"
    else:
        problems.add(path, f"unexpected file (allowed: {ALLOWED})")
        return None
    if not isinstance(content, str):
        problems.add(path, "file content must be text")
        return None
    if len(content.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        problems.add(path, f"file is larger than {MAX_FILE_BYTES} bytes")
        return None
    return kind


def compile_auth(text: str | None, problems: Problems) -> dict[str, Any]:
    """`config/auth.yaml` with its defaults (`docs/project-files.md`, `docs/security.md`)."""
    auth = copy.deepcopy(DEFAULT_AUTH)
    if text is None:
        return auth
    file = AUTH_FILE
    data = load_yaml(text, file, problems)
    if data is None:
        return auth
    if not isinstance(data, YamlMap):
        problems.add(file, "the auth file must be a mapping", 1)
        return auth
    check_keys(data, ("signup", "tokens", "cors"), file, problems, "auth file")
    sections = {}
    for key, allowed in (
        ("signup", ("enabled", "roles")),
        ("tokens", ("accessTtlSeconds", "refreshTtlSeconds")),
        ("cors", ("origins",)),
    ):
        section = data.get(key, YamlMap())
        if not isinstance(section, YamlMap):
            problems.add(file, f"`{key}` must be a mapping", data.line_of(key))
            section = YamlMap()
        check_keys(section, allowed, file, problems, key)
        sections[key] = section
    signup = sections["signup"]
    if "enabled" in signup:
        if isinstance(signup["enabled"], bool):
            auth["signup"]["enabled"] = signup["enabled"]
        else:
            problems.add(file, "signup.enabled must be true or false", signup.line_of("enabled"))
    if "roles" in signup:
        roles = signup["roles"]
        if isinstance(roles, list) and all(isinstance(r, str) and ROLE.fullmatch(r) for r in roles):
            auth["signup"]["roles"] = sorted(set(roles))
        else:
            problems.add(file, "signup.roles must be a list of role names", signup.line_of("roles"))
    tokens = sections["tokens"]
    for key, (low, high) in _TTL_BOUNDS.items():
        if key in tokens:
            value = tokens[key]
            if type(value) is int and low <= value <= high:
                auth["tokens"][key] = value
            else:
                problems.add(
                    file,
                    f"tokens.{key} must be an integer from {low} to {high}",
                    tokens.line_of(key),
                )
    if auth["tokens"]["refreshTtlSeconds"] < auth["tokens"]["accessTtlSeconds"]:
        problems.add(file, "tokens.refreshTtlSeconds must not be shorter than accessTtlSeconds")
    cors = sections["cors"]
    if "origins" in cors:
        origins = cors["origins"]
        line = cors.line_of("origins")
        if not isinstance(origins, list):
            problems.add(file, "cors.origins must be a list of origins", line)
        else:
            bad = [o for o in origins if not isinstance(o, str) or not _valid_origin(o)]
            if bad:
                problems.add(
                    file,
                    f"cors.origins: {bad[0]!r} is not an origin like https://app.example.com "
                    "(lowercase, no path) or '*'",
                    line,
                )
            else:
                auth["cors"]["origins"] = sorted(set(origins))
    return auth


def _valid_origin(origin: str) -> bool:
    return origin == "*" or _ORIGIN.fullmatch(origin) is not None


def load_project_dir(path: Path) -> dict[str, str]:
    """Read the publishable files of a project directory (relative posix paths → text).

    Other files (README, seed/, ...) are ignored; files reached through a symlink pointing out
    of the directory are skipped.
    """
    root = path.resolve()
    if not root.is_dir():
        raise PublishError([{"file": str(path), "message": "not a directory"}])
    candidates = [root / name for name in (PERMISSIONS_FILE, AUTH_FILE, STORAGE_FILE, LIMITS_FILE)]
    candidates += sorted((root / "schema").glob("*.yaml"))
    candidates += sorted((root / "logics").rglob("*.sql"))
    files: dict[str, str] = {}
    problems = Problems()
    for file in candidates:
        if not file.is_file() or not file.resolve().is_relative_to(root):
            continue
        rel = file.relative_to(root).as_posix()
        try:
            files[rel] = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problems.add(rel, "file is not valid UTF-8")
    problems.raise_if_any()
    return files
