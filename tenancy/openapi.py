"""A tenant's own OpenAPI 3.1 document, generated from its compiled release (`docs/api.md`
"OpenAPI").

It describes the API as one caller may use it: the `/call` routes some rule lets the caller's
roles reach (tables with the columns those rules grant, logics, storage ops), the end-user auth
endpoints and the error envelope. It depends only on the release (immutable, named by its hash)
and the role set, so it is built once per (release, roles) at first use and kept in the `openapi`
cache; a request only looks it up (docs/decisions.md "Per-tenant OpenAPI").

`POST /call` is one HTTP operation whose body names the route, and OpenAPI has one operation per
path and method: each route is a variant of the request body (`oneOf`, discriminated by `path`),
and `x-santokit-routes` maps each route to its params and result schemas for code generators.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from tenancy.cache import Cache
from tenancy.crud.query import MAX_IN
from tenancy.releases.model import Column, Logic, Release, Rule, Table
from tenancy.storage.model import StorageModel
from tenancy.storage.params import OPS as STORAGE_OPS
from tenancy.storage.params import PARAMS as STORAGE_PARAMS
from tenancy.storage.params import rule_op
from tenancy.types import (
    INT64_MAX,
    PARAM_SCHEMAS,
    UNORDERED,
    nullable,
    value_schema,
)

OPENAPI_VERSION = "3.1.0"
CRUD_OPS = ("select", "insert", "update", "delete")
REF = "#/components/schemas/"


@dataclass(frozen=True, slots=True)
class Document:
    """The encoded document and its strong ETag (a hash of the bytes)."""

    body: bytes
    etag: str


# Process-wide (a document depends on the release's content, the roles and `max_rows` only),
# never stale; bounded far above live releases * distinct role sets.
DOCUMENTS: Cache[Document] = Cache("openapi", None, max_entries=4096)


def document(release: Release, roles: frozenset[str], *, max_rows: int) -> Document:
    """The cached document of `release` for a caller with `roles`, built on first use."""
    key = (release.id, tuple(sorted(roles)), max_rows)
    found = DOCUMENTS.lookup(key)
    if found is None:
        body = orjson.dumps(build(release, roles, max_rows=max_rows), option=orjson.OPT_SORT_KEYS)
        found = Document(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        DOCUMENTS.put(key, found)
    return found


# ---- the fixed parts -------------------------------------------------------------------------

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "requestId"],
            "additionalProperties": False,
            "properties": {
                "code": {
                    "type": "string",
                    "description": "BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, "
                    "TOO_MANY_REQUESTS, SERVICE_UNAVAILABLE, TIMEOUT, ... (docs/api.md)",
                },
                "message": {"type": "string"},
                "requestId": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}

ERROR_TEXT = {
    "400": "Malformed request, unknown name, wrong type, constraint broken",
    "401": "A credential is required, or the one given is invalid or expired",
    "403": "Not allowed: role, column, condition, another tenant's credential, or Origin",
    "404": "Unknown route, table, logic, bucket, project or env; no release",
    "409": "Unique violation or concurrent-transaction conflict",
    "413": "Body larger than the server's limit",
    "415": "A POST whose Content-Type is not application/json",
    "429": "Too many requests for this tenant; see Retry-After",
    "503": "Tenant database, registry or store unavailable, or the tenant is at capacity",
    "504": "The tenant's statement timeout fired",
}


def error_responses(*statuses: str) -> dict[str, Any]:
    """Every data-plane route can answer 400 (hints), 403 (an origin the release refuses), 404
    (tenant, release), 429 and 503 (admission, `docs/api.md`), besides `statuses`."""
    return {
        status: {"$ref": f"#/components/responses/Error{status}"}
        for status in sorted({"400", "403", "404", "429", "503", *statuses})
    }


def _error_response(status: str) -> dict[str, Any]:
    return {
        "description": ERROR_TEXT[status],
        "content": {"application/json": {"schema": {"$ref": REF + "Error"}}},
    }


def _json_body(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _object(
    properties: dict[str, Any], required: Iterable[str] = (), **extra: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    needed = sorted(required)
    if needed:
        schema["required"] = needed
    schema.update(extra)
    return schema


USER = _object(
    {
        "id": {"type": "string"},
        "email": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}},
    },
    ["id", "email", "roles"],
)
SESSION = _object(
    {
        "access_token": {"type": "string"},
        "token_type": {"const": "Bearer"},
        "expires_in": {"type": "integer"},
        "refresh_token": {"type": "string"},
        "user": {"$ref": REF + "User"},
    },
    ["access_token", "token_type", "expires_in", "refresh_token", "user"],
)
CREDENTIALS = _object(
    {"email": {"type": "string"}, "password": {"type": "string"}}, ["email", "password"]
)
REFRESH = _object({"refresh_token": {"type": "string"}}, ["refresh_token"])
JWKS = {
    "type": "object",
    "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
}


def _auth_paths(release: Release) -> dict[str, Any]:
    def post(summary: str, body: str, ok: str, answer: dict[str, Any] | None, *errors: str) -> Any:
        responses: dict[str, Any] = {ok: _json_body(answer) if answer else {"description": "OK"}}
        return {
            "post": {
                "tags": ["auth"],
                "summary": summary,
                "parameters": TENANT_PARAMETERS,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": REF + body}}},
                },
                "responses": responses | error_responses("413", "415", *errors),
            }
        }

    paths: dict[str, Any] = {}
    if release.auth.signup_enabled:
        signed_up = _object({"user": {"$ref": REF + "User"}}, ["user"])
        paths["/auth/signup"] = post(
            "Create an end-user account", "Credentials", "201", signed_up, "409"
        )
    paths["/auth/login"] = post(
        "Sign in: an access token and a refresh token", "Credentials", "200", _ref("Session"), "401"
    )
    paths["/auth/refresh"] = post(
        "Exchange a refresh token for new tokens (rotation)",
        "RefreshToken",
        "200",
        _ref("Session"),
        "401",
    )
    paths["/auth/logout"] = post("Revoke a refresh token's family", "RefreshToken", "204", None)
    paths["/auth/me"] = {
        "get": {
            "tags": ["auth"],
            "summary": "The signed-in end user",
            "parameters": TENANT_PARAMETERS,
            "security": [{"bearer": []}],
            "responses": {"200": _json_body(_ref("User"))} | error_responses("401", "403"),
        }
    }
    paths["/.well-known/jwks.json"] = {
        "get": {
            "tags": ["auth"],
            "summary": "The public keys end-user tokens are signed with",
            "parameters": TENANT_PARAMETERS,
            "security": [{}],
            "responses": {"200": _json_body(JWKS)} | error_responses(),
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "tags": ["meta"],
            "summary": "This document, as the caller may use the API (ETag, If-None-Match)",
            "parameters": TENANT_PARAMETERS,
            "responses": {
                "200": _json_body({"type": "object"}),
                "304": {"description": "Not modified (If-None-Match matched the ETag)"},
            }
            | error_responses("401", "403"),
        }
    }
    return paths


TENANT_PARAMETERS = [
    {"$ref": "#/components/parameters/Project"},
    {"$ref": "#/components/parameters/Env"},
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


# ---- tables ------------------------------------------------------------------------------------


def _granted(table: Table, rule: Rule | None) -> list[Column]:
    if rule is None:
        return []
    return [c for c in table.columns.values() if rule.columns is None or c.name in rule.columns]


def _read(column: Column) -> dict[str, Any]:
    schema = value_schema(column.type, column.items)
    return nullable(schema) if column.nullable else schema


def _write(column: Column) -> dict[str, Any]:
    schema = value_schema(column.type, column.items, write=True)
    return nullable(schema) if column.nullable else schema


def _where_value(column: Column) -> dict[str, Any]:
    """A column's entry in `where` (`docs/crud.md` "where")."""
    null: dict[str, Any] = {"type": "null"}
    operators: dict[str, Any]
    if column.type in UNORDERED:
        operators = {"$eq": null, "$ne": null, "$null": {"type": "boolean"}}
        return {"anyOf": [null, _object(operators, minProperties=1)]}
    scalar = value_schema(column.type, column.items, write=True)
    listed: dict[str, Any] = {"type": "array", "items": scalar, "minItems": 1, "maxItems": MAX_IN}
    operators = {
        "$eq": {"anyOf": [scalar, null]},
        "$ne": {"anyOf": [scalar, null]},
        "$gt": scalar,
        "$gte": scalar,
        "$lt": scalar,
        "$lte": scalar,
        "$in": listed,
        "$nin": listed,
        "$null": {"type": "boolean"},
    }
    if column.type == "string":
        operators |= {"$like": {"type": "string"}, "$ilike": {"type": "string"}}
    return {"anyOf": [scalar, null, _object(operators, minProperties=1)]}


@dataclass(frozen=True, slots=True)
class RouteDoc:
    summary: str
    params: dict[str, Any]
    result: dict[str, Any]


class _Builder:
    def __init__(self, release: Release, roles: frozenset[str], max_rows: int) -> None:
        self.release = release
        self.roles = roles
        self.max_rows = max_rows
        self.schemas: dict[str, Any] = {}
        self.routes: dict[str, RouteDoc] = {}

    def add(self, path: str, summary: str, params: dict[str, Any], result: dict[str, Any]) -> None:
        base = path.replace("/", ".")
        self.schemas[base + ".params"] = params
        self.schemas[base + ".result"] = result
        self.routes[path] = RouteDoc(summary, _ref(base + ".params"), _ref(base + ".result"))

    def where(self, columns: Iterable[Column], *, required: bool) -> dict[str, Any]:
        """A `where` over `columns`; each column type's operators are one shared schema."""
        props = {}
        for column in columns:
            kind = "unordered" if column.type in UNORDERED else column.type
            name = f"where.{kind}"
            if name not in self.schemas:
                self.schemas[name] = _where_value(column)
            props[column.name] = _ref(name)
        return _object(props, minProperties=1) if required else _object(props)

    def tables(self) -> None:
        for table in self.release.tables.values():
            rules = {op: self.release.rule_for(table.name, op, self.roles) for op in CRUD_OPS}
            readable = _granted(table, rules["select"])
            if rules["select"] is not None:
                self.schemas[f"db.{table.name}.row"] = self.row(table, readable)
                self.select(table, readable)
            if rules["insert"] is not None:
                self.insert(table, rules["insert"], readable)
            # update and delete filter on the id and the readable columns (`docs/crud.md`)
            filterable = [
                c for c in table.columns.values() if c.name == table.id_column or c in readable
            ]
            affected = _ref("Affected")
            if rules["update"] is not None:
                writable = [
                    c for c in _granted(table, rules["update"]) if c.name != table.id_column
                ]
                data = _object({c.name: _write(c) for c in writable}, minProperties=1)
                params = _object(
                    {"data": data, "where": self.where(filterable, required=True)},
                    ["data", "where"],
                )
                self.add(
                    f"db/{table.name}/update", f"Update rows of {table.name}", params, affected
                )
            if rules["delete"] is not None:
                params = _object({"where": self.where(filterable, required=True)}, ["where"])
                self.add(
                    f"db/{table.name}/delete", f"Delete rows of {table.name}", params, affected
                )

    def row(self, table: Table, readable: list[Column]) -> dict[str, Any]:
        props = {c.name: _read(c) for c in readable}
        names = {c.name for c in readable}
        for name, fk in table.relations.items():
            assert fk.references is not None
            target = fk.references.table
            if fk.name in names and self.release.rule_for(target, "select", self.roles):
                props[name] = {
                    "anyOf": [_ref(f"db.{target}.row"), {"type": "null"}],
                    "description": f"The referenced {target} row, present when expanded",
                }
        return _object(
            props,
            names,
            description=f"A row of {table.name}: the columns the caller may read (a `select` "
            "param narrows them)",
        )

    def select(self, table: Table, readable: list[Column]) -> None:
        names = [c.name for c in readable]
        orderable = [c.name for c in readable if c.type not in UNORDERED]
        relations = [
            name
            for name, fk in table.relations.items()
            if fk.name in names
            and fk.references is not None
            and self.release.rule_for(fk.references.table, "select", self.roles)
        ]
        props: dict[str, Any] = {
            "where": self.where(readable, required=False),
            "select": {
                "type": "array",
                "items": {"enum": names},
                "minItems": 1,
            },
            "orderBy": _object({n: {"enum": ["asc", "desc", "ASC", "DESC"]} for n in orderable}),
            "limit": {"type": "integer", "minimum": 0, "maximum": self.max_rows},
            "offset": {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
        }
        if relations:
            props["expand"] = {"type": "array", "items": {"enum": relations}}
        rows = {"type": "array", "items": _ref(f"db.{table.name}.row")}
        self.add(f"db/{table.name}/select", f"Read rows of {table.name}", _object(props), rows)

    def insert(self, table: Table, rule: Rule, readable: list[Column]) -> None:
        writable = [
            c
            for c in table.columns.values()
            if (c.name == table.id_column and table.id_generate == "client")
            or (c.name != table.id_column and c in _granted(table, rule))
        ]
        required = [
            c.name
            for c in writable
            if not c.nullable
            and not c.has_default
            and (c.name != table.id_column or table.id_generate == "client")
        ]
        data = _object({c.name: _write(c) for c in writable}, required)
        params = _object({"data": data}, ["data"])
        shown = [c for c in table.columns.values() if c.name == table.id_column or c in readable]
        result = _object(
            {c.name: _read(c) for c in shown},
            [table.id_column],
            description="The inserted row: its id and the columns the caller may read",
        )
        self.add(f"db/{table.name}/insert", f"Insert a row into {table.name}", params, result)

    def logics(self) -> None:
        for logic in self.release.logics.values():
            if not _reaches(logic, self.roles):
                continue
            props = {}
            for p in logic.params.values():
                schema = dict(PARAM_SCHEMAS[p.type])
                if p.has_default:
                    schema["default"] = p.default
                props[p.name] = schema
            required = [p.name for p in logic.params.values() if p.required and not p.has_default]
            result = {
                "anyOf": [
                    {"type": "array", "items": {"type": "object"}},
                    _ref("Affected"),
                ],
                "description": "Rows when the statement returns a result set, else the count",
            }
            summary = logic.description or f"Logic {logic.name}"
            self.add(f"logics/{logic.name}", summary, _object(props, required), result)

    def storage(self, storage: StorageModel) -> None:
        for bucket in storage.buckets:
            for op in STORAGE_OPS:
                rule = rule_op(op)
                if not any(p.rule_for(rule, self.roles) for p in storage.policies):
                    continue
                required, optional = STORAGE_PARAMS[op]
                props = {name: STORAGE_PARAM_SCHEMAS[name] for name in required + optional}
                self.add(
                    f"storage/{bucket}/{op}",
                    f"Storage {op} in bucket {bucket}",
                    _object(props, required),
                    STORAGE_RESULTS[op],
                )


def _reaches(logic: Logic, roles: frozenset[str]) -> bool:
    """Whether `Logic.check_access` lets a caller with `roles` in (its gate may still refuse)."""
    if logic.auth == "authenticated" and "authenticated" not in roles:
        return False
    return not logic.roles or bool(logic.roles & roles)


_URL = {"type": "string", "format": "uri"}
_EXPIRES = {"type": "string", "format": "date-time"}
_SIGNED = _object(
    {"url": _URL, "method": {"const": "PUT"}, "expiresAt": _EXPIRES},
    ["url", "method", "expiresAt"],
)
STORAGE_PARAM_SCHEMAS: dict[str, Any] = {
    "key": {"type": "string"},
    "contentType": {"type": "string"},
    "contentLength": {"type": "integer", "minimum": 0},
    "expiresIn": {"type": "integer", "minimum": 1},
    "uploadId": {"type": "string"},
    "partNumber": {"type": "integer", "minimum": 1, "maximum": 10_000},
    "parts": {
        "type": "array",
        "items": _object(
            {"partNumber": {"type": "integer"}, "etag": {"type": "string"}},
            ["partNumber", "etag"],
        ),
    },
}
STORAGE_RESULTS: dict[str, Any] = {
    "upload_sign": _object(
        {
            "url": _URL,
            "method": {"const": "PUT"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "expiresAt": _EXPIRES,
        },
        ["url", "method", "headers", "expiresAt"],
    ),
    "download_sign": _object(
        {"url": _URL, "method": {"const": "GET"}, "expiresAt": _EXPIRES},
        ["url", "method", "expiresAt"],
    ),
    "delete": _object({}),
    "multipart_create": _object({"uploadId": {"type": "string"}}, ["uploadId"]),
    "multipart_sign_part": _SIGNED,
    "multipart_complete": _object(
        {"key": {"type": "string"}, "etag": {"type": "string"}}, ["key", "etag"]
    ),
    "multipart_abort": _object({}),
}


# ---- the document ------------------------------------------------------------------------------


def build(release: Release, roles: frozenset[str], *, max_rows: int) -> dict[str, Any]:
    """The document as JSON-ready values (see the module docstring)."""
    builder = _Builder(release, roles, max_rows)
    builder.tables()
    builder.logics()
    builder.storage(release.storage)
    schemas: dict[str, Any] = {
        "Error": ERROR_SCHEMA,
        "User": USER,
        "Session": SESSION,
        "Credentials": CREDENTIALS,
        "RefreshToken": REFRESH,
        "Affected": _object(
            {"affected": {"type": "integer", "minimum": 0}},
            ["affected"],
            description="How many rows the statement touched",
        ),
        **builder.schemas,
    }
    paths = _auth_paths(release)
    if builder.routes:
        paths["/call"] = _call_path(builder.routes)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Santokit tenant API",
            "version": release.id[:12],
            "description": "This tenant's API as the caller's roles may use it "
            f"({', '.join(sorted(roles))}). Rules with conditions may still refuse a call (403).",
        },
        "servers": [{"url": ".", "description": "where this document was served"}],
        "security": [{}, {"apiKey": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {f"Error{s}": _error_response(s) for s in ERROR_TEXT},
            "parameters": {
                "Project": {
                    "name": "X-Santokit-Project",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "The project, when the Host does not name it",
                },
                "Env": {
                    "name": "X-Santokit-Env",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "The env, when not the project's default",
                },
            },
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Santokit-API-Key"},
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An end user's access token from /auth/login",
                },
            },
        },
    }


def _call_path(routes: dict[str, RouteDoc]) -> dict[str, Any]:
    requests = [
        _object(
            {"path": {"const": path}, "params": route.params},
            ["path"],
            title=path,
            description=route.summary,
        )
        for path, route in routes.items()
    ]
    data = {"anyOf": [route.result for route in routes.values()]}
    return {
        "post": {
            "tags": ["call"],
            "operationId": "call",
            "summary": "Run one route: a table operation, a logic or a storage operation",
            "parameters": TENANT_PARAMETERS,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"oneOf": requests}}},
            },
            "responses": {"200": _json_body(_object({"data": data}, ["data"]))}
            | error_responses("401", "409", "413", "415", "504"),
            "x-santokit-routes": {
                path: {"summary": route.summary, "params": route.params, "result": route.result}
                for path, route in routes.items()
            },
        }
    }
