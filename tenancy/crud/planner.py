"""One CRUD call → an Operation, in the route pipeline order of `docs/api.md`.

rule lookup (401/403) → params and shape (400) → column permissions (403) → conditions (403).
Nothing here does I/O, so every 4xx of a call is decided before its database is touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenancy.crud import access
from tenancy.crud.operations import Cond, Delete, Expand, Insert, Operation, Select, Update
from tenancy.crud.query import check_params, parse_data, parse_select, parse_where
from tenancy.crud.row_ids import GENERATORS
from tenancy.crud.sql import column_list
from tenancy.crud.views import View, grant
from tenancy.errors import BadRequest, Forbidden
from tenancy.principal import Principal
from tenancy.releases.model import Column, Release, Rule, Table


def plan_call(
    release: Release,
    table: Table,
    op: str,
    params: Mapping[str, Any],
    principal: Principal,
    *,
    max_rows: int,
) -> Operation:
    rule, granted = access.rule_for(release, table, op, principal)
    if op == "select":
        return _select(release, table, rule, granted, params, principal, max_rows)
    if op == "insert":
        return _insert(release, table, rule, granted, params, principal)
    if op == "update":
        return _update(release, table, rule, granted, params, principal)
    if op == "delete":
        return _delete(release, table, rule, params, principal)
    raise BadRequest(f"Unknown operation: {op}")


def _select(
    release: Release,
    table: Table,
    rule: Rule,
    granted: View,
    params: Mapping[str, Any],
    principal: Principal,
    max_rows: int,
) -> Select:
    query = parse_select(table, params, max_rows)
    names = granted.names
    columns = granted.columns if query.columns is None else query.columns
    if columns is not granted.columns:  # the granted list needs no check
        access.check_columns(names, columns, "select")
    # Checked only when given: most selects name few of these (each check is a call).
    if query.where:
        access.check_columns(names, [cond.column for cond in query.where], "where")
    if query.order:
        access.check_columns(names, [column for column, _ in query.order], "orderBy")
    if not query.expand:
        if rule.gate is not None:
            access.check_gate(rule, principal, params, f"select on '{table.name}'")
        filters = access.row_filters(rule, table, principal)
        return Select(
            table,
            columns,
            (),
            granted.listing if columns is granted.columns else column_list(columns),
            query.where + filters if filters else query.where,
            query.order,
            query.limit,
            query.offset,
            (),
        )
    access.check_columns(names, query.expand, "expand")
    targets = [_target(release, fk, principal) for fk in query.expand]
    access.check_gate(rule, principal, params, f"select on '{table.name}'")
    for target, target_rule, _ in targets:
        access.check_gate(target_rule, principal, params, f"select on '{target.name}'")
    shown = {column.name for column in columns}
    hidden = tuple(fk for fk in query.expand if fk.name not in shown)
    return Select(
        table=table,
        columns=columns,
        hidden=hidden,
        listing=granted.listing
        if columns is granted.columns and not hidden
        else column_list(columns + hidden),
        where=query.where + access.row_filters(rule, table, principal),
        order=query.order,
        limit=query.limit,
        offset=query.offset,
        expand=tuple(
            _expand(fk, target, target_rule, target_view, principal)
            for fk, (target, target_rule, target_view) in zip(query.expand, targets, strict=True)
        ),
    )


def _target(release: Release, fk: Column, principal: Principal) -> tuple[Table, Rule, View]:
    assert fk.references is not None, "relations are referencing columns"
    target = release.tables[fk.references.table]  # on the same connection: checked at publish
    found = grant(release, target, "select", principal.roles)
    if found.rule is None or found.view is None:
        raise Forbidden(f"Not allowed to select '{target.name}' (expand)")
    return target, found.rule, found.view


def _expand(fk: Column, target: Table, rule: Rule, granted: View, principal: Principal) -> Expand:
    assert fk.references is not None
    key = target.columns[fk.references.column]
    fetched = granted.columns if key.name in granted.names else (*granted.columns, key)
    return Expand(
        name=fk.references.relation or fk.name,
        fk=fk,
        target=target,
        key=key,
        columns=granted.columns,
        listing=granted.listing if fetched is granted.columns else column_list(fetched),
        filters=access.row_filters(rule, target, principal),
    )


def _insert(
    release: Release,
    table: Table,
    rule: Rule,
    granted: View,
    params: Mapping[str, Any],
    principal: Principal,
) -> Insert:
    check_params("insert", params)
    values = parse_data(table, params, insert=True)
    written = [table.columns[name] for name in values if name != table.id_column]
    access.check_columns(granted.names, written, "insert")
    access.check_gate(rule, principal, params, f"insert on '{table.name}'")
    if not access.satisfies(access.row_filters(rule, table, principal), values, partial=False):
        raise Forbidden(f"Condition of insert on '{table.name}' is not met by the row")
    generate = GENERATORS.get(table.id_generate)
    if generate is not None:
        values = {table.id_column: generate(), **values}
    readable = _readable(release, table, principal, params)
    if readable is None:
        returning: tuple[Column, ...] = (table.columns[table.id_column],)
        returning_listing = column_list(returning)
    else:
        returning, returning_listing = readable.returning, readable.returning_listing
    return Insert(
        table=table,
        values=tuple((table.columns[name], value) for name, value in values.items()),
        returning=returning,
        returning_listing=returning_listing,
    )


def _readable(
    release: Release, table: Table, principal: Principal, params: Mapping[str, Any]
) -> View | None:
    """What the caller's select rule shows of the table this request, if anything."""
    found = grant(release, table, "select", principal.roles)
    if found.rule is None or not access.gate_allows(found.rule, principal, params):
        return None
    return found.view


def _check_where_columns(
    release: Release,
    table: Table,
    principal: Principal,
    params: Mapping[str, Any],
    where: tuple[Cond, ...],
    op: str,
) -> None:
    """Update/delete may filter on the id and on what the caller could select, nothing else:
    a where over a hidden column would reveal it through the affected count."""
    others = [cond.column for cond in where if cond.column.name != table.id_column]
    if others:
        readable = _readable(release, table, principal, params)
        granted = frozenset() if readable is None else readable.names
        access.check_columns(granted, others, f"where of {op}")


def _update(
    release: Release,
    table: Table,
    rule: Rule,
    granted: View,
    params: Mapping[str, Any],
    principal: Principal,
) -> Update:
    check_params("update", params)
    values = parse_data(table, params, insert=False)
    where = parse_where(table, params.get("where"), required=True)
    written = [table.columns[name] for name in values]
    access.check_columns(granted.names, written, "update")
    _check_where_columns(release, table, principal, params, where, "update")
    access.check_gate(rule, principal, params, f"update on '{table.name}'")
    filters = access.row_filters(rule, table, principal)
    if not access.satisfies(filters, values, partial=True):
        raise Forbidden(f"Condition of update on '{table.name}' is not met by the new values")
    return Update(
        table=table,
        values=tuple((column, values[column.name]) for column in written),
        where=where + filters,
    )


def _delete(
    release: Release,
    table: Table,
    rule: Rule,
    params: Mapping[str, Any],
    principal: Principal,
) -> Delete:
    check_params("delete", params)
    where = parse_where(table, params.get("where"), required=True)
    _check_where_columns(release, table, principal, params, where, "delete")
    access.check_gate(rule, principal, params, f"delete on '{table.name}'")
    return Delete(table=table, where=where + access.row_filters(rule, table, principal))
