"""Permissions of one CRUD call: which rule, which columns, whether its condition holds.

Denials follow `docs/crud.md`: no rule → 401 for an anonymous caller, 403 otherwise; a column or a
condition the rule does not grant → 403.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from tenancy.crud.operations import Cond
from tenancy.crud.views import View, grant
from tenancy.errors import Forbidden, Unauthorized
from tenancy.principal import Principal
from tenancy.releases.model import Column, Release, Rule, Table
from tenancy.types import Invalid, canonical


def deny(principal: Principal, message: str) -> NoReturn:
    if principal.is_anonymous:
        raise Unauthorized("Authentication required")
    raise Forbidden(message)


def rule_for(release: Release, table: Table, op: str, principal: Principal) -> tuple[Rule, View]:
    """The caller's rule for (table, op) and what it grants (cached per role set)."""
    found = grant(release, table, op, principal.roles)
    if found.rule is None or found.view is None:
        deny(principal, f"Not allowed to {op} '{table.name}'")
    return found.rule, found.view


def check_columns(granted: frozenset[str], columns: Iterable[Column], use: str) -> None:
    for column in columns:
        if column.name not in granted:
            raise Forbidden(f"Column '{column.name}' is not allowed in {use}")


def gate_allows(rule: Rule, principal: Principal, params: Mapping[str, Any]) -> bool:
    return rule.gate is None or rule.gate.allows(principal, params)


def check_gate(rule: Rule, principal: Principal, params: Mapping[str, Any], what: str) -> None:
    if not gate_allows(rule, principal, params):
        raise Forbidden(f"Condition of {what} is not met")


def row_filters(rule: Rule, table: Table, principal: Principal) -> tuple[Cond, ...]:
    """The rule's row filter as conditions to AND into the WHERE.

    A value that cannot be a value of the column (a key id compared with a uuid column) matches
    no row. `request.params.<p>` has no scalar to bind in auto-CRUD, so it matches no row either.
    """
    conds = []
    for term in rule.filters:
        column = table.columns[term.column]
        if term.kind == "param":
            conds.append(Cond(column, "false"))
            continue
        value = principal.sub if term.kind == "auth.sub" else term.value
        if value is None:
            conds.append(Cond(column, "null"))
            continue
        try:
            conds.append(Cond(column, "=", canonical(column, value)))
        except Invalid:
            conds.append(Cond(column, "false"))
    return tuple(conds)


def satisfies(filters: tuple[Cond, ...], values: Mapping[str, Any], *, partial: bool) -> bool:
    """Whether written values meet a row filter. `partial` (update): unwritten columns pass."""
    for cond in filters:
        name = cond.column.name
        if name not in values:
            if partial:
                continue
            actual = _default_of(cond.column)
        else:
            actual = values[name]
        if cond.op == "null":
            ok = actual is None
        else:
            ok = cond.op == "=" and actual is not None and actual == cond.value
        if not ok:
            return False
    return True


def _default_of(column: Column) -> Any:
    """The value an insert leaves in an unwritten column, as far as the schema knows it."""
    if not column.has_default or column.default_now or column.default is None:
        return None
    try:
        return canonical(column, column.default)
    except Invalid:
        return None
