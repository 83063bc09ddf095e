"""Who may call which admin route (`docs/admin.md`, "Scoped admin tokens").

One rule per route, looked up by the route's name when the route is built: a route without a rule
cannot be registered, so a new route is never open by omission. Global admin tokens (settings) may
call everything; a scoped token needs one of the rule's scopes and, when bound to a project, the
project the call is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tenancy.audit import Actor

ProjectFrom = Literal["path", "query", "none"]


@dataclass(frozen=True, slots=True)
class Rule:
    """`scopes`: any one of them grants the call; empty: global admin tokens only. `project`:
    where the call names its project (path parameter, `?project=` filter, or nowhere)."""

    scopes: frozenset[str]
    project: ProjectFrom = "path"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated admin caller: `scopes` None for a global token; `project` None when not
    bound to one project."""

    actor: Actor
    project: str | None = None
    scopes: frozenset[str] | None = None

    @property
    def is_global(self) -> bool:
        return self.scopes is None


def _rule(*scopes: str, project: ProjectFrom = "path") -> Rule:
    return Rule(frozenset(scopes), project)


GLOBAL = _rule(project="none")
ANY = ("deploy", "keys", "secrets", "read")

RULES: dict[str, Rule] = {
    # projects and envs: the fleet's shape is the operator's
    "create_project": GLOBAL,
    "list_projects": _rule(*ANY, project="none"),  # a bound token sees its own project only
    "get_project": _rule(*ANY),
    "project_status": _rule("read"),
    "patch_project": GLOBAL,
    "delete_project": GLOBAL,
    "create_env": GLOBAL,
    "delete_env": GLOBAL,
    # connections and secrets
    "put_connection": _rule("secrets"),
    "delete_connection": _rule("secrets"),
    "list_connections": _rule("secrets", "read"),
    "put_secret": _rule("secrets"),
    "delete_secret": _rule("secrets"),
    "list_secrets": _rule("secrets", "read"),
    "rotate_dek": _rule("secrets"),
    # releases
    "publish": _rule("deploy"),
    "rollback": _rule("deploy"),
    "promote": _rule("deploy"),
    "history": _rule("deploy", "read"),
    "current": _rule("deploy", "read"),
    # API keys and signing keys
    "create_api_key": _rule("keys"),
    "revoke_api_key": _rule("keys"),
    "list_api_keys": _rule("keys", "read"),
    "rotate_signing_keys": _rule("keys"),
    # the master keyring and admin tokens
    "rewrap": GLOBAL,
    "key_status": GLOBAL,
    "create_admin_token": GLOBAL,
    "list_admin_tokens": GLOBAL,
    "revoke_admin_token": GLOBAL,
    # read-only views
    "audit_log": _rule("read", project="query"),
    "usage": _rule("read"),
    # the admin API's own description: no project's data, any admin caller may read it
    "admin_openapi": _rule(*ANY, project="none"),
    # a tenant's API as some roles see it (`stk-bridge types`): the project's, for its tokens
    "tenant_openapi": _rule(*ANY),
}


def rule_for(route_name: str) -> Rule:
    try:
        return RULES[route_name]
    except KeyError:
        raise RuntimeError(
            f"admin route {route_name!r} has no access rule in bridge/routes/admin/access.py"
        ) from None
