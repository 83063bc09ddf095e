"""`GET /openapi.json` (`docs/api.md` "OpenAPI"): each tenant's own document, generated from its
release, filtered by the caller's roles, cached per (release, roles), revalidated by ETag; valid
OpenAPI 3.1, and the answers of the real routes match the schemas it gives them."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import pytest_asyncio
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tenancy.openapi import DOCUMENTS

from support.bridge import running_bridge
from support.world import World, bearer, demo_files, host, new_email, seeded_sqlite

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_bridge(tmp_path_factory.mktemp("openapi")) as bridge:
        world = World(bridge, home="demo")
        await world.demo("demo")
        # The demo without anything public: an anonymous caller may only sign up or in.
        files = {
            name: text
            for name, text in demo_files().items()
            if not name.startswith(("logics/public/", "config/storage"))
        }
        files["config/permissions.yaml"] = files["config/permissions.yaml"].replace(
            "roles: [public]", "roles: [authenticated]"
        )
        await world.project("closed")
        await world.tenant("closed", "prod", seeded_sqlite(bridge.data_dir / "c.db"), files)
        yield world


async def fetch(world: World, project: str = "demo", **headers: str) -> httpx.Response:
    return await world.client.get("/openapi.json", headers={**host(project), **headers})


async def doc_of(world: World, project: str = "demo", **headers: str) -> dict[str, Any]:
    r = await fetch(world, project, **headers)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    validate(doc)  # the OpenAPI 3.1 schema
    return doc


def routes(doc: dict[str, Any]) -> dict[str, Any]:
    call = doc["paths"].get("/call")
    return {} if call is None else dict(call["post"]["x-santokit-routes"])


def schema(doc: dict[str, Any], ref: dict[str, str]) -> dict[str, Any]:
    return dict(doc["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]])


def conforms(doc: dict[str, Any], ref: dict[str, str], value: Any) -> None:
    """`value` against a schema of the document, its `$ref`s resolved in it."""
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:doc", resource)
    jsonschema.Draft202012Validator({"$ref": "urn:doc" + ref["$ref"]}, registry=registry).validate(
        value
    )


async def user_token(world: World) -> str:
    session = await world.session("demo")
    return str(session["access_token"])


async def test_api_key_caller_sees_every_table_logic_and_storage(world: World) -> None:
    doc = await doc_of(world, **{"X-Santokit-Api-Key": world.keys["demo"]})
    found = routes(doc)
    for table in ("categories", "notebooks", "notes"):
        assert f"db/{table}/select" in found
    assert {"logics/admin/activity", "logics/notes/mine", "logics/public/stats"} <= set(found)
    assert "storage/uploads/upload_sign" in found  # admins may put public files
    # The admin rule grants every column of notes, owner_id included.
    row = doc["components"]["schemas"]["db.notes.row"]
    assert "owner_id" in row["properties"]
    assert row["properties"]["tags"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}}
    assert row["properties"]["created_at"] == {"type": "string", "format": "date-time"}
    activity = schema(doc, found["logics/admin/activity"]["params"])
    assert activity["properties"]["limit"]["type"] == "integer"
    assert activity["properties"]["limit"]["default"] == 10
    assert {"/auth/login", "/auth/signup", "/.well-known/jwks.json"} <= set(doc["paths"])


async def test_end_user_sees_only_what_its_rules_grant(world: World) -> None:
    doc = await doc_of(world, **bearer(await user_token(world)))
    found = routes(doc)
    assert "logics/admin/activity" not in found  # roles: [admin]
    assert "db/categories/delete" not in found
    assert "storage/uploads/upload_sign" in found
    row = doc["components"]["schemas"]["db.notes.row"]
    assert "owner_id" not in row["properties"]  # not among the granted columns
    select = schema(doc, found["db/notes/select"]["params"])
    assert "owner_id" not in select["properties"]["where"]["properties"]
    assert set(select["properties"]["expand"]["items"]["enum"]) == {"notebook", "category"}
    where = select["properties"]["where"]["properties"]
    assert "$like" in schema(doc, where["title"])["anyOf"][2]["properties"]
    assert "$gt" not in schema(doc, where["tags"])["anyOf"][1]["properties"]  # null tests only
    assert "tags" not in select["properties"]["orderBy"]["properties"]
    insert = schema(doc, found["db/notes/insert"]["params"])["properties"]["data"]
    assert set(insert["required"]) == {"notebook_id", "owner_id", "title"}
    assert "id" not in insert["properties"]  # generated by the server


async def test_anonymous_caller(world: World) -> None:
    doc = await doc_of(world)
    assert set(routes(doc)) == {
        "db/categories/select",
        "logics/public/stats",
        "storage/uploads/download_sign",
    }
    closed = await doc_of(world, "closed")
    assert "/call" not in closed["paths"]
    assert set(closed["paths"]) == {
        "/auth/signup",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/auth/me",
        "/.well-known/jwks.json",
        "/openapi.json",
    }


async def test_real_answers_match_the_document(world: World) -> None:
    token = await user_token(world)
    doc = await doc_of(world, **bearer(token))
    found = routes(doc)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("db/categories/select", {"orderBy": {"name": "asc"}}),
        ("db/notebooks/insert", {"data": {"owner_id": "x", "title": "t"}}),
        ("db/notes/select", {"expand": ["category"], "limit": 5}),
        ("logics/notes/mine", {}),
        ("logics/notes/pin", {"note_id": "nope"}),
        ("db/notebooks/update", {"data": {"title": "u"}, "where": {"title": "t"}}),
    ]
    me = (await world.client.get("/auth/me", headers=bearer(token, "demo"))).json()
    calls[1] = ("db/notebooks/insert", {"data": {"owner_id": me["id"], "title": "t"}})
    for path, params in calls:
        conforms(doc, found[path]["params"], params)
        r = await world.call(path, params, project="demo", headers=bearer(token))
        assert r.status_code == 200, (path, r.text)
        conforms(doc, found[path]["result"], r.json()["data"])
    # A wrong type the document forbids is refused by the server too.
    bad = {"where": {"pinned": "yes"}}
    with pytest.raises(jsonschema.ValidationError):
        conforms(doc, found["db/notes/select"]["params"], bad)
    r = await world.call("db/notes/select", bad, project="demo", headers=bearer(token))
    assert r.status_code == 400


async def test_built_once_per_release_and_roles_with_etag(world: World) -> None:
    first = await fetch(world)
    assert first.status_code == 200
    etag = first.headers["etag"]
    misses = DOCUMENTS.misses
    again = await fetch(world)
    assert again.headers["etag"] == etag and again.content == first.content
    assert DOCUMENTS.misses == misses  # served from the cache
    r = await fetch(world, **{"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    r = await fetch(world, **{"If-None-Match": '"other"'})
    assert r.status_code == 200
    keyed = await fetch(world, **{"X-Santokit-Api-Key": world.keys["demo"]})
    assert keyed.headers["etag"] != etag  # another role set, another document


async def test_admitted_like_call(world: World) -> None:
    r = await fetch(world, "nosuch")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = await fetch(world, **{"X-Santokit-Api-Key": "stk_bogus"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
    r = await world.client.get("/openapi.json", headers={"X-Santokit-Project": "demo"})
    assert r.status_code == 200


async def test_admin_gets_any_tenants_document(world: World) -> None:
    path = "/projects/demo/envs/prod/openapi.json"
    everything = await world.bridge.admin_json("GET", path)
    validate(everything)
    assert "logics/admin/activity" in routes(everything)
    anonymous = await world.bridge.admin_json("GET", path + "?roles=public")
    assert "logics/admin/activity" not in routes(anonymous)
    await world.bridge.admin("GET", "/projects/nosuch/envs/prod/openapi.json", 404)
    r = await world.client.get("/admin/v1" + path)
    assert r.status_code == 401


EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "openapi"


async def test_committed_examples_are_current(world: World) -> None:
    """docs/openapi/*.json are what the demo serves each kind of caller; regenerate them with
    `STK_WRITE_EXAMPLES=1 pytest tests/test_openapi_tenant.py -k committed`."""
    email = new_email()
    assert (await world.signup(email)).status_code == 201
    token = (await world.login(email)).json()["access_token"]
    callers = {
        "demo.api-key.json": {"X-Santokit-Api-Key": world.keys["demo"]},  # roles: [admin]
        "demo.end-user.json": bearer(token),  # signed up: roles [writer]
        "demo.anonymous.json": {},
    }
    for name, headers in callers.items():
        text = json.dumps(await doc_of(world, **headers), indent=2, sort_keys=True) + "\n"
        if os.environ.get("STK_WRITE_EXAMPLES") == "1":
            EXAMPLES.mkdir(exist_ok=True)
            (EXAMPLES / name).write_text(text)
        assert (EXAMPLES / name).read_text() == text, f"docs/openapi/{name} is out of date"


async def test_path_based_base_url_serves_the_same_document(world: World) -> None:
    by_host = await fetch(world)
    for path in ("/p/demo/openapi.json", "/p/demo/prod/openapi.json"):
        r = await world.client.get(path, headers={"Host": "api.example.com"})
        assert r.status_code == 200, r.text
        assert r.content == by_host.content and r.headers["etag"] == by_host.headers["etag"]
    r = await world.client.get("/p/closed/openapi.json", headers=host("demo"))
    assert r.status_code == 400  # the path and the Host name two projects
