"""The runtime form of a release: built once per bundle, then only looked up per request.

Everything a request needs is precomputed in `Release.load`: gates compiled, bind plans resolved,
param checks chosen. A request does dictionary lookups, type checks and one gate evaluation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from tenancy.errors import BadRequest, Forbidden, Unauthorized
from tenancy.limits import CallerLimits
from tenancy.principal import Principal
from tenancy.releases.gates import Gate
from tenancy.storage.model import StorageModel
from tenancy.types import PARAM_CHECKS, ArrayItems, Engine, items_of, json_param

FORMAT = 1


# ---- tables and permissions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reference:
    table: str
    column: str
    relation: str | None
    on_delete: str
    on_update: str


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    nullable: bool
    unique: bool
    items: ArrayItems | None = None
    default_now: bool = False
    has_default: bool = False
    default: Any = None
    references: Reference | None = None


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    connection: str
    id_column: str
    id_generate: str
    columns: Mapping[str, Column]  # in declared order, id column first
    indexes: tuple[Index, ...]
    relations: Mapping[str, Column]  # `as` name → the referencing column


@dataclass(frozen=True, slots=True)
class RowFilter:
    """`column = value`; kind `literal` (value), `auth.sub`, or `param` (value = param name)."""

    column: str
    kind: Literal["literal", "auth.sub", "param"]
    value: Any = None


@dataclass(frozen=True, slots=True)
class Rule:
    roles: frozenset[str]
    columns: tuple[str, ...] | None  # None = every column
    filters: tuple[RowFilter, ...]
    gate: Gate | None


# ---- logics ---------------------------------------------------------------------------------

_PARAM, _JSON, _SUB, _ROLES, _TYPE, _IP = range(6)
_SYSTEM = {"auth.sub": _SUB, "auth.roles": _ROLES, "auth.type": _TYPE, "client.ip": _IP}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: str
    required: bool
    has_default: bool = False
    default: Any = None


@dataclass(frozen=True, slots=True)
class Logic:
    name: str
    auth: Literal["public", "authenticated"]
    roles: frozenset[str]
    connection: str
    params: Mapping[str, Param]
    gate: Gate | None
    sql: Mapping[str, str]  # engine → statement with $N / ?N
    binds: tuple[str, ...]  # bind names by number
    description: str | None = None
    read_only: bool = False  # the compiler proved it (releases before it say nothing: False)
    _plan: tuple[tuple[int, str], ...] = field(default=(), repr=False, compare=False)

    def check_access(self, principal: Principal) -> None:
        """Call-time step 2: 401 for an anonymous caller who needs more, 403 otherwise."""
        if self.auth == "authenticated" and principal.is_anonymous:
            raise Unauthorized("Authentication required")
        if self.roles and not self.roles & principal.roles:
            if principal.is_anonymous:
                raise Unauthorized("Authentication required")
            raise Forbidden(f"Not allowed to call logic '{self.name}'")

    def resolve_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Call-time step 3: reject unknown names, apply defaults, check types. `null` = absent."""
        for name in params:
            if name not in self.params:
                raise BadRequest(f"Unknown param: {str(name)[:64]}")
        values: dict[str, Any] = {}
        for name, param in self.params.items():
            value = params.get(name)
            if value is None:
                if param.has_default:
                    values[name] = param.default
                elif param.required:
                    raise BadRequest(f"Missing required param: {name}")
                continue
            if not PARAM_CHECKS[param.type](value):
                raise BadRequest(f"Invalid type for param: {name}")
            values[name] = float(value) if param.type == "float" else value
        return values

    def bind_args(
        self,
        params: Mapping[str, Any],
        principal: Principal,
        client_ip: str,
        *,
        engine: Engine = "postgresql",
    ) -> list[Any]:
        """Call-time steps 3 and 4, then the bound values in `binds` order.

        Raises BadRequest (params) or Forbidden (condition false). `json` params are bound as
        JSON text that PostgreSQL json/jsonb parameters take as JSON (`tenancy.types.json_param`);
        on SQLite `auth.roles` is JSON text too.
        """
        values = self.resolve_params(params)
        if self.gate is not None and not self.gate.allows(principal, values):
            raise Forbidden(f"Condition of logic '{self.name}' is not met")
        args: list[Any] = []
        for kind, name in self._plan:
            if kind == _PARAM:
                args.append(values.get(name))
            elif kind == _JSON:
                value = values.get(name)
                args.append(None if value is None else json_param(value, engine))
            elif kind == _SUB:
                args.append(principal.sub)
            elif kind == _ROLES:
                roles = sorted(principal.roles)
                args.append(orjson.dumps(roles).decode() if engine == "sqlite" else roles)
            elif kind == _TYPE:
                args.append(principal.type)
            else:
                args.append(client_ip)
        return args


# ---- the release ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthSettings:
    signup_enabled: bool
    signup_roles: tuple[str, ...]
    access_ttl_seconds: int
    refresh_ttl_seconds: int


@dataclass(frozen=True, slots=True)
class Release:
    id: str
    tables: Mapping[str, Table]
    permissions: Mapping[str, Mapping[str, tuple[Rule, ...]]]
    logics: Mapping[str, Logic]
    auth: AuthSettings
    cors_origins: frozenset[str]
    storage: StorageModel  # empty when the project has no config/storage.yaml
    limits: CallerLimits  # all unset when the project has no config/limits.yaml

    @classmethod
    def load(cls, body: bytes) -> Release:
        """Build the runtime model of a compiled release (trusted: the compiler produced it)."""
        doc = orjson.loads(body)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unsupported release format {doc.get('format')!r}")
        auth = doc["auth"]
        return cls(
            id=hashlib.sha256(body).hexdigest(),
            tables={name: _table(name, t) for name, t in doc["tables"].items()},
            permissions={
                table: {op: tuple(_rule(r) for r in rules) for op, rules in ops.items()}
                for table, ops in doc["permissions"].items()
            },
            logics={name: _logic(name, spec) for name, spec in doc["logics"].items()},
            auth=AuthSettings(
                signup_enabled=auth["signup"]["enabled"],
                signup_roles=tuple(auth["signup"]["roles"]),
                access_ttl_seconds=auth["tokens"]["accessTtlSeconds"],
                refresh_ttl_seconds=auth["tokens"]["refreshTtlSeconds"],
            ),
            cors_origins=frozenset(auth["cors"]["origins"]),
            storage=StorageModel.from_compiled(doc.get("storage")),
            limits=CallerLimits.from_compiled(doc.get("limits")),
        )

    def rule_for(self, table: str, op: str, roles: frozenset[str]) -> Rule | None:
        """The first rule of (table, op) whose roles intersect the caller's (`docs/crud.md`)."""
        for rule in self.permissions.get(table, {}).get(op, ()):
            if rule.roles & roles:
                return rule
        return None


def _column(doc: dict[str, Any]) -> Column:
    default = doc["default"]
    ref = doc["references"]
    return Column(
        name=doc["name"],
        type=doc["type"],
        nullable=doc["nullable"],
        unique=doc["unique"],
        items=items_of(doc["items"]),
        default_now=default is not None and default["kind"] == "now",
        has_default=default is not None,
        default=default.get("value") if default is not None else None,
        references=None
        if ref is None
        else Reference(ref["table"], ref["column"], ref["as"], ref["onDelete"], ref["onUpdate"]),
    )


def _table(name: str, doc: dict[str, Any]) -> Table:
    columns = {c["name"]: _column(c) for c in doc["columns"]}
    return Table(
        name=name,
        connection=doc["connection"],
        id_column=doc["id"]["name"],
        id_generate=doc["id"]["generate"],
        columns=columns,
        indexes=tuple(Index(i["name"], tuple(i["columns"]), i["unique"]) for i in doc["indexes"]),
        relations={
            c.references.relation: c
            for c in columns.values()
            if c.references is not None and c.references.relation is not None
        },
    )


def _rule(doc: dict[str, Any]) -> Rule:
    filters = []
    for term in doc["filters"]:
        value = term["value"]
        kind = value["kind"]
        arg = value.get("value") if kind == "literal" else value.get("name")
        filters.append(RowFilter(term["column"], kind, arg))
    return Rule(
        roles=frozenset(doc["roles"]),
        columns=None if doc["columns"] is None else tuple(doc["columns"]),
        filters=tuple(filters),
        gate=None if doc["gate"] is None else Gate(doc["gate"]),
    )


def _logic(name: str, doc: dict[str, Any]) -> Logic:
    params = {
        pname: Param(pname, p["type"], p["required"], "default" in p, p.get("default"))
        for pname, p in doc["params"].items()
    }
    plan = tuple(
        (_SYSTEM[bind], bind)
        if bind in _SYSTEM
        else (_JSON if params[bind].type == "json" else _PARAM, bind)
        for bind in doc["binds"]
    )
    return Logic(
        name=name,
        auth=doc["auth"],
        roles=frozenset(doc["roles"]),
        connection=doc["connection"],
        params=params,
        gate=None if doc["condition"] is None else Gate(doc["condition"]),
        sql=dict(doc["sql"]),
        binds=tuple(doc["binds"]),
        description=doc["description"],
        read_only=doc.get("readOnly", False),
        _plan=plan,
    )
