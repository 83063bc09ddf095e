"""`config/permissions.yaml` → canonical rules per table and op (`docs/crud.md`).

Conditions are classified here, at publish time, so the request path only ever sees a row filter
(column = value terms for SQL) or a request gate (CEL source to compile once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tenancy.releases.compile.conditions import classify
from tenancy.releases.compile.schema import CompiledSchema
from tenancy.releases.compile.sources import Problems, YamlList, YamlMap, check_keys, load_yaml
from tenancy.types import UNORDERED, items_of, literal_problem

OPS = ("select", "insert", "update", "delete")
ROLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")
_RULE_KEYS = ("roles", "columns", "condition")


def compile_permissions(
    file: str, text: str | None, schema: CompiledSchema, problems: Problems
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Validate the permissions file against the compiled tables; return rules by table and op."""
    tables = schema.tables
    if text is None:
        return {}
    data = load_yaml(text, file, problems)
    if data is None:
        return {}
    if not isinstance(data, YamlMap):
        problems.add(file, "the permissions file must be a mapping with `tables`", 1)
        return {}
    check_keys(data, ("tables",), file, problems, "permissions file")
    raw_tables = data.get("tables", YamlMap())
    if not isinstance(raw_tables, YamlMap):
        problems.add(file, "`tables` must be a mapping of table → ops", data.line_of("tables"))
        return {}
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for table, ops in raw_tables.items():
        line = raw_tables.line_of(table)
        if table not in tables:
            if table not in schema.broken:
                problems.add(file, f"permissions for unknown table '{table}'", line)
            continue
        if not isinstance(ops, YamlMap):
            problems.add(file, f"permissions of '{table}' must be a mapping of op → rules", line)
            continue
        check_keys(ops, OPS, file, problems, f"permissions of '{table}'")
        ctx = _TableContext(
            file,
            problems,
            {c["name"]: c for c in tables[table]["columns"]},
            {b.split(".", 1)[1] for b in schema.broken if b.startswith(f"{table}.")},
        )
        out[table] = {}
        for op in OPS:
            if op not in ops:
                continue
            rules = ops[op]
            if isinstance(rules, YamlMap):
                rules = YamlList([rules], ops.line_of(op))
            if not isinstance(rules, YamlList):
                problems.add(
                    file, f"'{table}.{op}' must be a rule or a list of rules", ops.line_of(op)
                )
                continue
            compiled = [
                _compile_rule(ctx, f"{table}.{op}", op, rule, rules.line_of(i))
                for i, rule in enumerate(rules)
            ]
            out[table][op] = [rule for rule in compiled if rule is not None]
    return out


@dataclass(frozen=True)
class _TableContext:
    file: str
    problems: Problems
    columns: dict[str, dict[str, Any]]
    broken: set[str]  # columns whose definition already had a problem

    def add(self, message: str, line: int) -> None:
        self.problems.add(self.file, message, line)


def compile_roles(value: Any, where: str, file: str, line: int, problems: Problems) -> list[str]:
    """A non-empty list of role names, sorted and deduplicated (order has no meaning)."""
    if not isinstance(value, list) or not value:
        problems.add(file, f"{where}: `roles` must be a non-empty list of role names", line)
        return []
    bad = [r for r in value if not isinstance(r, str) or not ROLE.fullmatch(r)]
    if bad:
        problems.add(file, f"{where}: invalid role name {bad[0]!r}", line)
    return sorted({r for r in value if isinstance(r, str)})


def _compile_rule(
    ctx: _TableContext, where: str, op: str, raw: Any, line: int
) -> dict[str, Any] | None:
    if not isinstance(raw, YamlMap):
        ctx.add(f"{where}: a rule must be a mapping with `roles`", line)
        return None
    check_keys(raw, _RULE_KEYS, ctx.file, ctx.problems, f"rule of '{where}'")
    roles = compile_roles(raw.get("roles"), where, ctx.file, raw.line_of("roles"), ctx.problems)
    rule: dict[str, Any] = {
        "roles": roles,
        "columns": _compile_columns(ctx, where, op, raw),
        "filters": [],
        "gate": None,
    }
    if "condition" in raw:
        cond_line = raw.line_of("condition")
        result = classify(raw["condition"], resource_allowed=True)
        for message in result.problems:
            ctx.add(f"{where}: {message}", cond_line)
        for term in result.filters:
            filter_problem = _filter_problem(ctx, term)
            if filter_problem:
                ctx.add(f"{where}: {filter_problem}", cond_line)
        rule["filters"] = list(result.filters)
        rule["gate"] = result.gate
    return rule


def _compile_columns(ctx: _TableContext, where: str, op: str, raw: YamlMap) -> list[str] | None:
    if "columns" not in raw:
        return None
    value, line = raw["columns"], raw.line_of("columns")
    if op == "delete":
        ctx.add(f"{where}: `columns` has no meaning for delete", line)
        return None
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        ctx.add(f"{where}: `columns` must be a non-empty list of column names", line)
        return None
    if value == ["*"]:
        return None
    for col in value:
        if col == "*":
            ctx.add(f"{where}: '*' must be the only entry of `columns`", line)
        elif col not in ctx.columns and col not in ctx.broken:
            ctx.add(f"{where}: unknown column '{col}'", line)
    if len(set(value)) != len(value):
        ctx.add(f"{where}: `columns` lists a column twice", line)
    return list(value)


def _filter_problem(ctx: _TableContext, term: dict[str, Any]) -> str | None:
    """Why a row-filter term cannot be bound; a literal gets the request path's own check."""
    name, value = term["column"], term["value"]
    column = ctx.columns.get(name)
    if column is None:
        return None if name in ctx.broken else f"condition uses unknown column '{name}'"
    if column["type"] in UNORDERED:
        return (
            f"unsupported condition: a row filter cannot compare {column['type']} column '{name}'"
        )
    if value["kind"] != "literal":
        return None
    literal = value["value"]
    if literal is None:
        return None if column["nullable"] else f"condition compares non-nullable '{name}' with null"
    problem = literal_problem(literal, column["type"], items_of(column["items"]))
    if problem:
        return f"condition compares {column['type']} column '{name}' with {literal!r}: {problem}"
    return None
