"""`logics/**/*.sql` → canonical logics: front matter as data, SQL with bindings as positions.

`docs/logics.md` lists the publish-time checks; every problem names the .sql file and its line.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from tenancy import ids
from tenancy.releases.compile.conditions import classify
from tenancy.releases.compile.logic_sql import SYSTEM_VARIABLES, is_read_only, scan_sql
from tenancy.releases.compile.permissions import compile_roles
from tenancy.releases.compile.sources import Problems, YamlMap, check_keys, load_yaml
from tenancy.types import PARAM_CHECKS, PARAM_TYPES

LOGIC_NAME = re.compile(r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*$")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_FRONT_KEYS = ("auth", "roles", "connection", "params", "condition", "description")
_PARAM_KEYS = ("type", "required", "default")
_RESERVED_PARAMS = frozenset({"auth", "client"})  # prefixes of the system variables


def logic_name(path: str) -> str | None:
    """`logics/admin/users.sql` → `admin/users`, or None when the name is not routable."""
    name = path.removeprefix("logics/").removesuffix(".sql")
    return name if LOGIC_NAME.fullmatch(name) else None


def compile_logic(
    file: str, text: str, problems: Problems, connections: Collection[str] | None
) -> dict[str, Any] | None:
    """Compile one logic file, or record its problems and return None."""
    before = len(problems.items)
    text = text.removeprefix("\ufeff")
    lines = text.splitlines(keepends=True)
    front: Any = None
    body, first_line = text, 1
    if lines and lines[0].strip() == "---":
        close = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if close is None:
            problems.add(file, "front matter opened with --- is never closed", 1)
            return None
        front = load_yaml("".join(lines[1:close]), file, problems, line_offset=1)
        body, first_line = "".join(lines[close + 1 :]), close + 2
    front_failed = len(problems.items) != before  # then params are unknown: skip binding checks
    if front is None:
        front = YamlMap()
    if not isinstance(front, YamlMap):
        problems.add(file, "front matter must be a YAML mapping", 2)
        front = YamlMap()
    check_keys(front, _FRONT_KEYS, file, problems, "front matter")
    logic = _front_matter(file, front, problems, connections)
    raw_params = front.get("params")
    declared = set(raw_params) if isinstance(raw_params, dict) else set()  # even invalid ones
    scanned = scan_sql(body, first_line=first_line)
    for line, message in scanned.problems:
        problems.add(file, message, line)
    for binding in scanned.bindings:
        if "." in binding.name:
            if binding.name not in SYSTEM_VARIABLES:
                known = ", ".join(sorted(SYSTEM_VARIABLES))
                problems.add(
                    file,
                    f"unknown system variable ':{binding.name}' (known: {known})",
                    binding.line,
                )
        elif binding.name not in declared and not front_failed:
            problems.add(file, f"undeclared param ':{binding.name}'", binding.line)
    if len(problems.items) != before:
        return None
    logic["sql"], binds = scanned.render(body)
    logic["binds"] = list(binds)
    # Retried once after a broken connection only when provably read-only (docs/logics.md).
    logic["readOnly"] = is_read_only(body, scanned)
    return logic


def _front_matter(
    file: str, front: YamlMap, problems: Problems, connections: Collection[str] | None
) -> dict[str, Any]:
    auth = front.get("auth", "authenticated")
    if auth not in ("public", "authenticated"):
        problems.add(file, "auth must be public or authenticated", front.line_of("auth"))
    roles: list[str] = []
    if "roles" in front:
        roles = compile_roles(
            front["roles"], "front matter", file, front.line_of("roles"), problems
        )
    connection = front.get("connection", "main")
    if not ids.is_alias(connection):
        problems.add(file, f"invalid connection alias {connection!r}", front.line_of("connection"))
    elif connections is not None and connection not in connections:
        problems.add(
            file,
            f"connection '{connection}' is not configured for this env",
            front.line_of("connection"),
        )
    description = front.get("description")
    if description is not None and not isinstance(description, str):
        problems.add(file, "description must be a string", front.line_of("description"))
    params = _params(file, front, problems)
    condition = None
    if "condition" in front:
        result = classify(front["condition"], resource_allowed=False, declared_params=params)
        for message in result.problems:
            problems.add(file, message, front.line_of("condition"))
        condition = result.gate
    return {
        "auth": auth,
        "roles": roles,
        "connection": connection,
        "params": params,
        "condition": condition,
        "description": description,
    }


def _params(file: str, front: YamlMap, problems: Problems) -> dict[str, dict[str, Any]]:
    raw = front.get("params", YamlMap())
    if not isinstance(raw, YamlMap):
        problems.add(
            file, "params must be a mapping of name → {type, ...}", front.line_of("params")
        )
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, spec in raw.items():
        line = raw.line_of(name)
        if not PARAM_NAME.fullmatch(name) or name in _RESERVED_PARAMS:
            problems.add(file, f"invalid param name '{name}'", line)
            continue
        if not isinstance(spec, YamlMap):
            problems.add(file, f"param '{name}' must be a mapping with `type`", line)
            continue
        check_keys(spec, _PARAM_KEYS, file, problems, f"param '{name}'")
        param_type = spec.get("type")
        if param_type not in PARAM_TYPES:
            problems.add(
                file,
                f"param '{name}': type must be one of {', '.join(PARAM_TYPES)}",
                spec.line_of("type"),
            )
            continue
        required = spec.get("required", False)
        if not isinstance(required, bool):
            problems.add(
                file, f"param '{name}': required must be true or false", spec.line_of("required")
            )
        param: dict[str, Any] = {"type": param_type, "required": required is True}
        if spec.get("default") is not None:
            default = spec["default"]
            if required is True:
                problems.add(
                    file,
                    f"param '{name}': a required param cannot have a default",
                    spec.line_of("default"),
                )
            elif not PARAM_CHECKS[param_type](default):
                problems.add(
                    file,
                    f"param '{name}': default must be of type {param_type}",
                    spec.line_of("default"),
                )
            else:
                param["default"] = float(default) if param_type == "float" else default
        out[name] = param
    return out
