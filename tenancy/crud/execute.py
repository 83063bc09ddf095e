"""An Operation's answer: one more statement per expanded relation, rows made JSON-ready."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tenancy.crud.operations import Expand, Insert, Operation, Select
from tenancy.crud.sql import Statement, render_expand
from tenancy.engines import QueryResult
from tenancy.releases.model import Column
from tenancy.types import Engine, decoders

Run = Callable[[Statement], Awaitable[QueryResult]]


async def attach(rows: list[dict[str, Any]], plan: Select, engine: Engine, run: Run) -> None:
    """Each relation `plan` expands, onto the rows of its statement (as stored, before `answer`
    decodes them): one more statement per relation."""
    for expand in plan.expand:
        await _expand(rows, expand, engine, run)


def answer(plan: Operation, result: QueryResult, engine: Engine) -> Any:
    """`{"data": ...}` of `docs/api.md` from `plan`'s statement (its expansions attached):
    rows for select, the row for insert, else the affected count."""
    if isinstance(plan, Select):
        rows = result.rows or []
        _decode(rows, plan.columns, engine)
        if plan.hidden:
            for row in rows:
                for column in plan.hidden:
                    del row[column.name]
        return rows
    if isinstance(plan, Insert):
        rows = result.rows or [{}]
        _decode(rows, plan.returning, engine)
        return rows[0]
    return {"affected": result.affected or 0}


async def _expand(rows: list[dict[str, Any]], expand: Expand, engine: Engine, run: Run) -> None:
    """Attach the referenced rows: one query over every key at once, never one per row.

    Rows are matched on the values as stored (before decoding), which both sides share.
    """
    fk, key, name = expand.fk.name, expand.key.name, expand.name
    keys = list(dict.fromkeys(row[fk] for row in rows if row[fk] is not None))
    targets: dict[Any, dict[str, Any]] = {}
    if keys:
        result = await run(render_expand(expand, keys, engine))
        shown = any(column.name == key for column in expand.columns)
        for target in result.rows or []:
            targets[target[key] if shown else target.pop(key)] = target
        _decode(list(targets.values()), expand.columns, engine)
    for row in rows:
        value = row[fk]
        row[name] = None if value is None else targets.get(value)


def _decode(rows: list[dict[str, Any]], columns: Sequence[Column], engine: Engine) -> None:
    if not rows:
        return
    needed = decoders(columns, engine)
    if not needed:
        return
    for row in rows:
        for name, decode in needed:
            value = row[name]
            if value is not None:
                row[name] = decode(value)
