"""What one rule grants of one table, computed on first use and kept per release.

A release is immutable and named by its content hash, so (release id, table, op, rule position)
names the same grant in every Release object built from it. Caching it spares each request the
walk over the table's columns and the quoting of the SELECT / RETURNING lists, which is most of
the CPU a simple call would otherwise spend building its statement (docs/decisions.md).

Which rule a caller gets is as fixed: (release id, table, op, role set) names it, so `grant`
keeps the rule and its view per role set, and a call looks both up once.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenancy.cache import Cache
from tenancy.crud.sql import column_list
from tenancy.releases.model import Column, Release, Rule, Table


@dataclass(frozen=True, slots=True)
class View:
    columns: tuple[Column, ...]  # granted columns, table order
    names: frozenset[str]
    listing: str  # `columns` quoted, for SELECT
    returning: tuple[Column, ...]  # the id and `columns`, for insert RETURNING
    returning_listing: str


# Process-wide (a view depends on the release's content only), never stale (a release never
# changes); bounded far above live releases * tables * rules.
VIEWS: Cache[View] = Cache("view", None, max_entries=8192)


@dataclass(frozen=True, slots=True)
class Grant:
    """The first rule of (table, op) matching a role set, and its view; both None: no rule."""

    rule: Rule | None
    view: View | None


# Process-wide like VIEWS; a role set is a caller's frozenset (kept with the cached principal).
GRANTS: Cache[Grant] = Cache("grant", None, max_entries=8192)


def grant(release: Release, table: Table, op: str, roles: frozenset[str]) -> Grant:
    key = (release.id, table.name, op, roles)
    found = GRANTS.lookup(key)
    if found is None:
        rule = release.rule_for(table.name, op, roles)
        found = Grant(rule, None if rule is None else view(release, table, op, rule))
        GRANTS.put(key, found)
    return found


def view(release: Release, table: Table, op: str, rule: Rule) -> View:
    rules = release.permissions[table.name][op]
    position = next(i for i, candidate in enumerate(rules) if candidate is rule)
    key = (release.id, table.name, op, position)
    found = VIEWS.lookup(key)
    if found is None:
        found = _build(table, rule)
        VIEWS.put(key, found)
    return found


def _build(table: Table, rule: Rule) -> View:
    granted = rule.columns
    columns = tuple(c for c in table.columns.values() if granted is None or c.name in granted)
    names = frozenset(c.name for c in columns)
    returning = tuple(
        c for c in table.columns.values() if c.name == table.id_column or c.name in names
    )
    return View(
        columns=columns,
        names=names,
        listing=column_list(columns),
        returning=returning,
        returning_listing=column_list(returning),
    )
