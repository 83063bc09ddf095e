"""The data-plane pipeline (`docs/api.md` pipeline order), after the HTTP layer has parsed the body
and extracted the hints: route grammar → admission (tenant → release → rate limits) → the call
(logic | CRUD | storage) under the tenant's concurrency slot.

`admit` is shared by `/call`, `/auth/*` and CORS. Each step records what it learned on the
request's `RequestState`, which the access log, metrics and CORS read: nothing is resolved twice.
The HTTP layer only encodes what these return.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from tenancy.crud import Statement, answer, attach, plan_call, render
from tenancy.crud.operations import Select
from tenancy.engines import QueryResult
from tenancy.errors import BadRequest, Forbidden, NotFound, StkError, TooManyRequests
from tenancy.limits import Buckets, RateState
from tenancy.pools import PoolKey
from tenancy.principal import Principal, Tenant
from tenancy.registry.records import ProjectRecord
from tenancy.releases.model import Release
from tenancy.resolution import BasePath, Hints, Located, Resolved, locate, resolve
from tenancy.runtime import Runtime

log = logging.getLogger("stk.call")

# --- route grammar (`docs/api.md`): checked before any tenant lookup --------------------------

PATH_CHARS = re.compile(r"^[A-Za-z0-9_/-]+$")
CRUD_OPS = frozenset({"select", "insert", "update", "delete"})

Params = dict[str, Any]
# JSON-ready `data` of the answer: rows, one row, or `{"affected": n}`.
Data = list[dict[str, Any]] | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # a key of KINDS
    name: str  # table, logic or bucket name
    op: str  # the operation, or "" for logics

    @property
    def template(self) -> str:
        return f"{self.kind}/{self.name}/{self.op}" if self.op else f"{self.kind}/{self.name}"


@functools.lru_cache(maxsize=4096)
def parse_route(path: str) -> Route:
    """404 for an unknown prefix, 400 for a malformed path: no I/O. A pure function of a string
    that a tenant's clients repeat: remembered (bounded; refusals are not)."""
    head, _, rest = path.partition("/")
    kind = KINDS.get(head)
    if kind is None:
        raise NotFound("Unknown route")
    if not PATH_CHARS.fullmatch(path) or "" in path.split("/"):
        raise BadRequest("Malformed path")
    name, op = kind.grammar(rest)
    return Route(head, name, op)


# --- admission ---------------------------------------------------------------------------------


@dataclass(slots=True)
class RequestState:
    """One request's facts, each recorded by the step that learned it."""

    request_id: str
    base: BasePath | None = None  # the path-based base URL, found by the HTTP layer
    route: Route | None = None
    located: Located | None = None
    resolved: Resolved | None = None
    release: Release | None = None
    rate: RateState | None = None  # the rate limits' verdict: the RateLimit headers

    # The access log's fields (`docs/operations.md`).
    @property
    def project(self) -> str | None:
        return self.resolved.tenant.project if self.resolved is not None else None

    @property
    def env(self) -> str | None:
        return self.resolved.tenant.env if self.resolved is not None else None

    @property
    def auth_type(self) -> str | None:
        return self.resolved.principal.type if self.resolved is not None else None

    @property
    def release_id(self) -> str | None:
        return self.release.id if self.release is not None else None


class Admission(NamedTuple):
    """A request let in: who calls, for which tenant, under which release and limits."""

    tenant: Tenant
    principal: Principal
    project: ProjectRecord
    release: Release
    address: str  # the client's, through trusted proxies only (`bridge.state`)


async def admit(rt: Runtime, hints: Hints, state: RequestState, address: str) -> Admission:
    """Tenant (400/401/403/404) → release (404/503) → origin (403) → rate limits (429).

    A browser's request from an origin the tenant's release does not allow is refused before it
    is counted or does any work (`docs/api.md`, CORS)."""
    directory = rt.directory
    state.located = located = await locate(hints, directory, rt.settings.host_suffix, state.base)
    state.resolved = resolved = await resolve(located, hints, directory)
    state.release = release = await directory.release(resolved.tenant)
    if hints.origin is not None and not origin_allowed(release.cors_origins, hints.origin):
        raise Forbidden("Origin not allowed")
    tenant, principal = resolved.tenant, resolved.principal
    rate = rt.limits.admit(tenant, resolved.project.limits, release.limits, principal, address)
    if rate is not None:
        if isinstance(rate, Buckets):  # no lease held here: Redis counts it
            rate = await rt.limits.rate.ask(rate)
        state.rate = rate
        if rate[2]:  # the wait: refused
            raise TooManyRequests("Rate limit exceeded", retry_after=rate[2])
    return Admission(tenant, principal, resolved.project, release, address)


def origin_allowed(origins: frozenset[str], origin: str) -> bool:
    """Exact match (scheme, host and port as the browser sends them), or `"*"`."""
    return origin in origins or "*" in origins


async def cors_origins(
    rt: Runtime, state: RequestState, hints: Callable[[], Hints]
) -> frozenset[str]:
    """The origins allowed to read this request's answer (`docs/api.md` CORS).

    Those of the admitted env's release; when admission stopped before a tenant was resolved (an
    expired token, say) or never ran (a bad body, a preflight), those of every env of the project
    the hints name (or of the env they name, if it exists), so the browser can still read the
    error. The hints
    are located at most once per request. Raises as resolution does when they name no project.
    """
    if state.resolved is not None:
        release = state.release or await rt.directory.release(state.resolved.tenant)
        return release.cors_origins
    located = state.located
    if located is None:
        located = await locate(hints(), rt.directory, rt.settings.host_suffix, state.base)
        state.located = located
    # An env the project does not have is judged by the project's envs, so an app can read the
    # 404 of a mistyped env; an unknown or disabled project allows no origin (it raises).
    project = Located(located.project, None, located.record).require()
    envs = (located.env,) if located.env in project.envs else project.envs
    origins: set[str] = set()
    for env in envs:
        try:
            origins |= (await rt.directory.release(Tenant(project.id, env))).cors_origins
        except StkError:
            continue
    return frozenset(origins)


# --- the call ----------------------------------------------------------------------------------


async def call(
    rt: Runtime, admission: Admission, route: Route, params: Params, client_ip: str
) -> Data:
    """Run an admitted `/call` under its tenant's concurrency slot (503 past it, `docs/tenancy.md`
    I7). A 5xx is logged with its reason and kept for the admin status view."""
    tenant = admission.tenant
    try:
        with rt.limits.slot(tenant, admission.project.limits):
            began = time.perf_counter()
            data = await KINDS[route.kind].run(rt, admission, route, params, client_ip)
            rt.usage.call(tenant, route.kind, route.op, data, time.perf_counter() - began)
    except StkError as exc:
        if exc.status >= 500:
            # The envelope's message is already safe to show; operators need it in the log.
            log.warning("tenant request failed: %s", exc.message)
            rt.last_errors.record(tenant, exc.message)
        raise
    if admission.principal.type == "api_key":
        rt.key_usage.touch(admission.principal.sub)
    return data


async def _logic(
    rt: Runtime, admission: Admission, route: Route, params: Params, client_ip: str
) -> Data:
    """`logics/<name>` (`docs/logics.md` call-time steps) on the tenant's own pool."""
    logic = admission.release.logics.get(route.name)
    if logic is None:
        raise NotFound(f"Unknown logic: {route.name}")
    principal, tenant = admission.principal, admission.tenant
    logic.check_access(principal)
    conn = await rt.directory.connection(tenant, logic.connection)
    args = logic.bind_args(params, principal, client_ip, engine=conn.engine)
    limits = admission.project.limits
    result = await rt.pools.query(
        PoolKey(tenant.project, tenant.env, conn.alias, conn.version),
        conn.url,
        logic.sql,
        args,
        pooler=conn.pooler,
        max_size=limits.max_pool_size,
        statement_timeout_ms=limits.statement_timeout_ms,
        # Retried once on a fresh connection after a broken one (`docs/tenancy.md`, failover).
        read_only=logic.read_only,
    )
    if result.rows is not None:
        return result.rows
    return {"affected": result.affected}


async def _crud(
    rt: Runtime, admission: Admission, route: Route, params: Params, client_ip: str
) -> Data:
    """`db/<table>/<op>` (`docs/crud.md`) on the tenant's own pool."""
    release, tenant = admission.release, admission.tenant
    table = release.tables.get(route.name)
    if table is None:
        raise NotFound(f"Unknown table: {route.name}")
    plan = plan_call(
        release, table, route.op, params, admission.principal, max_rows=rt.settings.select_max_rows
    )
    conn = await rt.directory.connection(tenant, table.connection)
    limits = admission.project.limits
    # A select (and its expansions) only reads: safe to retry once on a fresh connection after
    # a broken one (`docs/tenancy.md`, failover); writes never are.
    read_only = route.op == "select"
    query = functools.partial(
        rt.pools.query,
        PoolKey(tenant.project, tenant.env, conn.alias, conn.version),
        conn.url,
        pooler=conn.pooler,
        max_size=limits.max_pool_size,
        statement_timeout_ms=limits.statement_timeout_ms,
        read_only=read_only,
    )
    statement = render(plan, conn.engine)
    result = await query(statement.sql, statement.args)
    if isinstance(plan, Select) and plan.expand and result.rows:

        async def run(statement: Statement) -> QueryResult:
            return await query(statement.sql, statement.args)

        await attach(result.rows, plan, conn.engine, run)
    data: Data = answer(plan, result, conn.engine)
    return data


async def _storage(
    rt: Runtime, admission: Admission, route: Route, params: Params, client_ip: str
) -> Data:
    """`storage/<bucket>/<op>` (`docs/storage.md`) with the tenant's own store credentials."""
    return await rt.storage.call(
        admission.release.storage,
        admission.tenant,
        admission.principal,
        route.name,
        route.op,
        params,
    )


# --- route kinds: a new kind is one entry here ---------------------------------------------------


def _logic_grammar(rest: str) -> tuple[str, str]:
    """`logics/<name>`: the name may itself contain `/`."""
    if not rest:
        raise BadRequest("Malformed path")
    return rest, ""


def _name_op(rest: str) -> tuple[str, str]:
    """`<name>/<op>`."""
    name, slash, op = rest.partition("/")
    if not slash or "/" in op:
        raise BadRequest("Malformed path")
    return name, op


def _crud_grammar(rest: str) -> tuple[str, str]:
    name, op = _name_op(rest)
    if op not in CRUD_OPS:
        raise BadRequest(f"Unknown operation: {op}")
    return name, op


Runner = Callable[[Runtime, Admission, Route, Params, str], Awaitable[Data]]


@dataclass(frozen=True, slots=True)
class RouteKind:
    """One `<kind>/...` family of `/call` paths: its grammar (→ name, op) and its step."""

    grammar: Callable[[str], tuple[str, str]]
    run: Runner


KINDS = {
    "db": RouteKind(_crud_grammar, _crud),
    "logics": RouteKind(_logic_grammar, _logic),
    "storage": RouteKind(_name_op, _storage),
}
