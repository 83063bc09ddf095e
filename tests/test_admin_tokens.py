"""Scoped admin tokens (`docs/admin.md`, "Scoped admin tokens"): every admin route enforces
scope and project, the audit log names the token, revocation reaches every replica within 1 s.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from support.bridge import ADMIN_TOKEN, Bridge
from support.processes import Server, free_port, master_keys, poll, start, stk_env, stop, wait_ready
from support.services import asyncpg_url

A = "/admin/v1"
SCOPES = ("deploy", "keys", "secrets", "read")
GLOBAL: frozenset[str] = frozenset()  # global admin tokens only

# What each admin route needs, written down independently of `bridge/routes/admin/access.py`.
# Every route of the app must be listed: a new route fails `test_every_admin_route_is_listed`
# until its rule is decided here and there.
NEEDS: dict[str, frozenset[str]] = {
    "create_project": GLOBAL,
    "list_projects": frozenset(SCOPES),
    "get_project": frozenset(SCOPES),
    "project_status": frozenset({"read"}),
    "patch_project": GLOBAL,
    "delete_project": GLOBAL,
    "create_env": GLOBAL,
    "delete_env": GLOBAL,
    "put_connection": frozenset({"secrets"}),
    "delete_connection": frozenset({"secrets"}),
    "list_connections": frozenset({"secrets", "read"}),
    "put_secret": frozenset({"secrets"}),
    "delete_secret": frozenset({"secrets"}),
    "list_secrets": frozenset({"secrets", "read"}),
    "rotate_dek": frozenset({"secrets"}),
    "publish": frozenset({"deploy"}),
    "rollback": frozenset({"deploy"}),
    "promote": frozenset({"deploy"}),
    "history": frozenset({"deploy", "read"}),
    "current": frozenset({"deploy", "read"}),
    "create_api_key": frozenset({"keys"}),
    "revoke_api_key": frozenset({"keys"}),
    "list_api_keys": frozenset({"keys", "read"}),
    "rotate_signing_keys": frozenset({"keys"}),
    "rewrap": GLOBAL,
    "key_status": GLOBAL,
    "create_admin_token": GLOBAL,
    "list_admin_tokens": GLOBAL,
    "revoke_admin_token": GLOBAL,
    "audit_log": frozenset({"read"}),
    "usage": frozenset({"read"}),
    "admin_openapi": frozenset(SCOPES),
    "tenant_openapi": frozenset(SCOPES),
}
# Routes that name no project in their path: how a bound token is kept to its own project.
PROJECT_IN_QUERY = {"audit_log"}


def app_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every route of the app with its full path, through included routers (newer FastAPI keeps
    them nested, with the prefix on the inclusion)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            inner = prefix + route.include_context.prefix
            yield from app_routes(route.original_router.routes, inner)


def admin_routes(b: Bridge) -> list[tuple[str, str, str]]:
    """Every admin route of the running app as (name, method, path template)."""
    return [
        (route.name, method, path)
        for path, route in app_routes(b.app.api.routes)
        if path.startswith(A)
        for method in sorted(route.methods)
    ]


def concrete(template: str, project: str) -> str:
    values = {"project": project, "env": "prod", "alias": "main", "name": "S", "key_id": "0" * 16}
    return re.sub(r"\{([a-z_]+)\}", lambda m: values.get(m[1], "x"), template)


async def new_token(b: Bridge, project: str | None, *scopes: str) -> dict[str, Any]:
    body = {"name": f"ci {project}", "project": project, "scopes": list(scopes)}
    answer: dict[str, Any] = await b.admin_json("POST", "/tokens", 201, json=body)
    return answer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def two_projects(b: Bridge) -> None:
    for project in ("alpha", "beta"):
        await b.admin_json("POST", "/projects", 201, json={"id": project})


async def test_every_admin_route_is_listed(bridge: Bridge) -> None:
    names = {name for name, _, _ in admin_routes(bridge)}
    assert names == set(NEEDS), (names - set(NEEDS), set(NEEDS) - names)


async def test_every_route_enforces_scope_and_project(bridge: Bridge) -> None:
    b = bridge
    await two_projects(b)
    single = {s: (await new_token(b, "alpha", s))["token"] for s in SCOPES}
    everything = (await new_token(b, "alpha", *SCOPES))["token"]
    fleet_read = (await new_token(b, None, "read"))["token"]
    routes = admin_routes(b)
    assert len(routes) >= 30

    for name, method, template in routes:
        needs = NEEDS[name]
        names_project = "{project}" in template

        async def ask(
            token: str | None,
            project: str,
            params: dict[str, str] | None = None,
            method: str = method,
            template: str = template,
        ) -> httpx.Response:
            headers = bearer(token) if token else {}
            return await b.client.request(
                method, concrete(template, project), headers=headers, json={}, params=params
            )

        where = (name, method, template)
        assert (await ask(None, "alpha")).status_code == 401, where
        assert (await ask("stka_" + "0" * 16 + "." + "A" * 43, "alpha")).status_code == 401, where

        for scope, token in single.items():
            r = await ask(token, "alpha")
            if scope in needs:
                assert r.status_code not in (401, 403), (*where, scope, r.text)
            else:
                assert r.status_code == 403, (*where, scope, r.text)
                assert r.json()["error"]["code"] == "FORBIDDEN"

        # A token of project alpha gets 403 on project beta, whatever its scopes.
        if names_project:
            r = await ask(everything, "beta")
            assert r.status_code == 403, (*where, r.text)
        elif name in PROJECT_IN_QUERY:
            r = await ask(everything, "alpha", {"project": "beta"})
            assert r.status_code == 403, (*where, r.text)
        elif needs:
            r = await ask(everything, "alpha")
            assert r.status_code not in (401, 403), (*where, r.text)

        # A token for every project reads every project, and does no more than it may.
        if needs and "read" in needs:
            assert (await ask(fleet_read, "beta")).status_code not in (401, 403), where
        elif not needs:
            assert (await ask(fleet_read, "beta")).status_code == 403, where


async def test_bound_token_lists_and_audits_its_project_only(bridge: Bridge) -> None:
    b = bridge
    await two_projects(b)
    token = await new_token(b, "alpha", "read", "keys")
    headers = bearer(token["token"])

    listed = (await b.client.get(f"{A}/projects", headers=headers)).json()
    assert [p["id"] for p in listed["items"]] == ["alpha"]
    assert (await b.client.get(f"{A}/projects/alpha", headers=headers)).status_code == 200

    created = await b.client.post(
        f"{A}/projects/alpha/envs/prod/api-keys", headers=headers, json={"name": "web"}
    )
    assert created.status_code == 201, created.text
    # The audit log names the token that acted, by its public id.
    audit = (await b.client.get(f"{A}/audit", headers=headers)).json()["items"]
    assert {entry["project"] for entry in audit} == {"alpha"}
    acted = [e for e in audit if e["action"] == "apikey.create"]
    assert [e["actor"] for e in acted] == [f"token:{token['tokenId']}"]
    assert token["token"] not in str(audit)


async def test_create_list_revoke(bridge: Bridge) -> None:
    b = bridge
    await two_projects(b)
    created = await new_token(b, "alpha", "deploy", "deploy")
    assert created["token"].startswith("stka_" + created["tokenId"] + ".")
    assert created["scopes"] == ["deploy"] and created["project"] == "alpha"
    assert created["revokedAt"] is None
    fleet = await new_token(b, None, "read")
    assert fleet["project"] is None

    listed = await b.admin_json("GET", "/tokens")
    assert [t["tokenId"] for t in listed["items"]] == [created["tokenId"], fleet["tokenId"]]
    assert "token" not in listed["items"][0] and created["token"] not in str(listed)
    alpha = await b.admin_json("GET", "/tokens", params={"project": "alpha"})
    assert [t["tokenId"] for t in alpha["items"]] == [created["tokenId"]]

    history = f"{A}/projects/alpha/envs/prod/releases"
    headers = bearer(created["token"])
    assert (await b.client.get(history, headers=headers)).status_code == 200
    await b.admin("DELETE", f"/tokens/{created['tokenId']}", 204)
    refused = await b.client.get(history, headers=headers)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "UNAUTHORIZED"
    listed = await b.admin_json("GET", "/tokens", params={"project": "alpha"})
    assert listed["items"][0]["revokedAt"] is not None
    actions = [e["action"] for e in (await b.admin_json("GET", "/audit"))["items"]]
    assert actions[:2] == ["admintoken.revoke", "admintoken.create"]

    # A wrong secret for a real token id is refused like an unknown token.
    other = await new_token(b, "alpha", "read")
    forged = other["token"][:-4] + ("AAAA" if not other["token"].endswith("AAAA") else "BBBB")
    assert (await b.client.get(history, headers=bearer(forged))).status_code == 401

    # Deleting the project removes its tokens: a new project of that id does not inherit them.
    await b.admin("DELETE", "/projects/alpha", 204)
    await b.admin_json("POST", "/projects", 201, json={"id": "alpha"})
    assert (await b.client.get(history, headers=bearer(other["token"]))).status_code == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "x", "scopes": []}, 400),
        ({"name": "x", "scopes": ["admin"]}, 400),
        ({"name": "", "scopes": ["read"]}, 400),
        ({"name": "x", "scopes": "read"}, 400),
        ({"name": "x", "project": "nope", "scopes": ["read"]}, 404),
    ],
)
async def test_invalid_tokens_are_refused(
    bridge: Bridge, body: dict[str, Any], status: int
) -> None:
    await bridge.admin("POST", "/tokens", status, json=body)


async def test_scoped_token_cannot_make_tokens(bridge: Bridge) -> None:
    b = bridge
    await two_projects(b)
    fleet = await new_token(b, None, *SCOPES)
    body = {"name": "escalate", "scopes": ["read"]}
    r = await b.client.post(f"{A}/tokens", headers=bearer(fleet["token"]), json=body)
    assert r.status_code == 403
    assert (await b.admin("DELETE", "/tokens/unknown", 404)).json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.slow
def test_revocation_reaches_another_replica_within_a_second(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = stk_env(
        registry_url=asyncpg_url(pg_url),
        kv_url=redis_url,
        master_keys=master_keys(),
        admin_tokens=ADMIN_TOKEN,
        data_dir=str(tmp_path / "unused"),
    )
    servers: list[Server] = [start(["serve"], env, tmp_path, free_port()) for _ in range(2)]
    try:
        for server in servers:
            wait_ready(server, timeout=120)  # a busy machine imports slowly
        one, two = servers
        assert one.admin("POST", "/projects", json={"id": "alpha"}).status_code == 201
        created = one.admin(
            "POST", "/tokens", json={"project": "alpha", "name": "ci", "scopes": ["read"]}
        )
        assert created.status_code == 201, created.text
        token = created.json()

        def ask() -> httpx.Response:
            return httpx.get(
                f"{two.base}{A}/projects/alpha", headers=bearer(token["token"]), timeout=5
            )

        assert ask().status_code == 200  # replica 2 has the token cached now (TTL 30 s)
        revoked = one.admin("DELETE", f"/tokens/{token['tokenId']}")
        assert revoked.status_code == 204
        _, took = poll(lambda: (r := ask()).status_code == 401 and r, 3)
        assert took < 1.0, f"revocation reached replica 2 after {took:.2f}s"
    finally:
        for server in servers:
            stop(server)
