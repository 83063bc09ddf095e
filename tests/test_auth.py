"""End-user accounts (`docs/security.md`): signup, login, refresh, logout, me, over real HTTP on
SQLite and PostgreSQL registries. Tenants are described in `support/auth.py`."""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from sqlalchemy import select

from tenancy.registry.models import EndUser, RefreshToken, Secret

from support.auth import auth_world, publish_auth, whoami
from support.world import PASSWORD, World, bearer, host, new_email

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    async with auth_world(tmp_path_factory.mktemp(f"auth-{request.param}"), request.param) as w:
        yield w


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()["error"]
    assert body["requestId"] == r.headers["x-request-id"]
    return body


# --- the happy path -------------------------------------------------------------------------


async def test_signup_login_me_refresh_logout(world: World) -> None:
    email = new_email()
    r = await world.signup(email)
    assert r.status_code == 201, r.text
    user = r.json()["user"]
    assert set(r.json()) == {"user"}
    assert user["email"] == email and user["roles"] == ["authenticated", "writer"]

    r = await world.login(email)
    assert r.status_code == 200, r.text
    login = r.json()
    assert set(login) == {"access_token", "token_type", "expires_in", "refresh_token", "user"}
    assert login["token_type"] == "Bearer" and login["expires_in"] == 120
    assert login["user"] == user

    r = await world.client.get("/auth/me", headers=bearer(login["access_token"], "alpha"))
    assert r.status_code == 200, r.text
    assert r.json() == user

    r = await world.post("/auth/refresh", {"refresh_token": login["refresh_token"]})
    assert r.status_code == 200, r.text
    pair = r.json()
    assert set(pair) == set(login) and pair["user"] == user
    assert pair["refresh_token"] != login["refresh_token"]
    assert pair["access_token"] != login["access_token"]
    r = await world.client.get("/auth/me", headers=bearer(pair["access_token"], "alpha"))
    assert r.status_code == 200 and r.json()["id"] == user["id"]

    r = await world.post("/auth/logout", {"refresh_token": pair["refresh_token"]})
    assert r.status_code == 204 and r.content == b""
    r = await world.post("/auth/refresh", {"refresh_token": pair["refresh_token"]})
    assert error(r, 401)["message"] == "Invalid refresh token"


async def test_the_token_carries_the_tenant_and_roles(world: World) -> None:
    login = await world.session()
    header = jwt.get_unverified_header(login["access_token"])
    claims = jwt.decode(login["access_token"], options={"verify_signature": False})
    assert header["alg"] == "EdDSA" and header["typ"] == "JWT" and header["kid"]
    assert claims["sub"] == login["user"]["id"]
    assert (claims["project_id"], claims["env_id"]) == ("alpha", "prod")
    assert claims["iss"] == claims["aud"] == "stk:alpha:prod"
    assert claims["roles"] == ["authenticated", "writer"]
    assert claims["exp"] - claims["iat"] == 120 and claims["jti"]


async def test_the_token_authenticates_calls_and_binds_auth_sub(world: World) -> None:
    login = await world.session()
    r = await whoami(world, bearer(login["access_token"], "alpha"))
    assert r.status_code == 200, r.text
    assert r.json() == {"data": [{"sub": login["user"]["id"]}]}
    # No hint at all: the verified token names the tenant.
    r = await whoami(world, {"Host": "api.example.com", **bearer(login["access_token"])})
    assert r.status_code == 200 and r.json()["data"][0]["sub"] == login["user"]["id"]
    # Signup roles reach the role gate; beta users have none of them.
    r = await world.client.post(
        "/call", json={"path": "logics/writers"}, headers=bearer(login["access_token"], "alpha")
    )
    assert r.status_code == 200, r.text
    beta = await world.session("beta")
    r = await world.client.post(
        "/call", json={"path": "logics/writers"}, headers=bearer(beta["access_token"], "beta")
    )
    assert error(r, 403)
    r = await whoami(world, host("alpha"))
    assert error(r, 401)


# --- signup rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("project", "env"), [("gamma", None), ("alpha", "dev")], ids=["no-auth-yaml", "disabled-env"]
)
async def test_signup_disabled_is_403(world: World, project: str, env: str | None) -> None:
    headers = {"X-Santokit-Env": env} if env else {}
    r = await world.signup(new_email(), project=project, **headers)
    assert error(r, 403)["code"] == "FORBIDDEN"


async def test_duplicate_email_is_409_case_insensitively(world: World) -> None:
    email = new_email()
    assert (await world.signup(email)).status_code == 201
    r = await world.signup(email.upper())
    assert error(r, 409)["code"] == "CONFLICT"
    # Users belong to one tenant: the same address is free elsewhere.
    assert (await world.signup(email, project="beta")).status_code == 201
    r = await world.login(email.upper().replace("@EXAMPLE", "@example"))
    assert r.status_code == 200, r.text
    assert r.json()["user"]["email"] == email


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@example.com", "password": "7-chars"},
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@localhost", "password": PASSWORD},
        {"email": "a b@example.com", "password": PASSWORD},
        {"email": "", "password": PASSWORD},
        {"email": f"{'a' * 320}@example.com", "password": PASSWORD},
        {"email": "a@example.com", "password": "x" * 1025},
        {"email": "a@example.com", "password": 12345678},
        {"email": "a@example.com"},
        {"email": "a@example.com", "password": PASSWORD, "roles": ["admin"]},
    ],
    ids=[
        "short-password",
        "no-at",
        "no-dot",
        "space",
        "empty",
        "too-long-email",
        "too-long-password",
        "number-password",
        "missing-password",
        "extra-field",
    ],
)
async def test_invalid_signup_is_400(world: World, body: dict[str, Any]) -> None:
    r = await world.post("/auth/signup", body)
    assert error(r, 400)["code"] == "BAD_REQUEST"


async def test_eight_characters_are_enough(world: World) -> None:
    email = new_email()
    assert (await world.signup(email, "8-chars!")).status_code == 201
    assert (await world.login(email, "8-chars!")).status_code == 200


async def test_passwords_are_stored_as_argon2id(world: World) -> None:
    email = new_email()
    user = (await world.signup(email)).json()["user"]
    async with world.bridge.rt.sessions() as session:
        row = await session.get(EndUser, user["id"])
    assert row is not None and row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash


# --- login failures -------------------------------------------------------------------------


def without_request_id(r: httpx.Response) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = r.json()
    assert body["error"].pop("requestId") == r.headers["x-request-id"]
    return r.status_code, body


async def _timed_login(world: World, email: str, password: str) -> float:
    started = time.perf_counter()
    r = await world.login(email, password)
    assert r.status_code == 401
    return time.perf_counter() - started


async def test_unknown_email_and_wrong_password_look_the_same(world: World) -> None:
    email = new_email()
    assert (await world.signup(email)).status_code == 201
    unknown = await world.login(new_email())
    wrong = await world.login(email, "wrong password")
    assert without_request_id(unknown) == without_request_id(wrong)
    assert without_request_id(wrong)[0] == 401
    other_tenant = await world.login(email, project="beta")
    assert without_request_id(other_tenant) == without_request_id(wrong)
    # Both pay for one argon2 verification: without the dummy hash the unknown email would
    # answer many times faster. Medians of a few tries, loose bounds for a noisy machine.
    unknown_s = statistics.median(
        [await _timed_login(world, new_email(), PASSWORD) for _ in range(5)]
    )
    wrong_s = statistics.median([await _timed_login(world, email, "nope-nope") for _ in range(5)])
    assert 0.25 < unknown_s / wrong_s < 4, (unknown_s, wrong_s)


# --- refresh tokens -------------------------------------------------------------------------


async def refresh(world: World, token: str, project: str = "alpha") -> httpx.Response:
    return await world.post("/auth/refresh", {"refresh_token": token}, project)


async def test_refresh_tokens_are_single_use_and_reuse_revokes_the_chain(world: World) -> None:
    login = await world.session()
    parallel = (await world.login(login["user"]["email"])).json()["refresh_token"]
    first = login["refresh_token"]
    r = await refresh(world, first)
    assert r.status_code == 200, r.text
    second = r.json()["refresh_token"]
    r = await refresh(world, first)  # replayed: someone else holds the chain
    assert error(r, 401)["message"] == "Invalid refresh token"
    r = await refresh(world, second)
    assert error(r, 401)
    # Another session (login) of the same user is untouched.
    assert (await refresh(world, parallel)).status_code == 200


async def test_concurrent_refreshes_with_one_token_let_only_one_win(world: World) -> None:
    token = (await world.session())["refresh_token"]
    answers = await asyncio.gather(refresh(world, token), refresh(world, token))
    assert sorted(r.status_code for r in answers) == [200, 401]
    winner = next(r for r in answers if r.status_code == 200).json()["refresh_token"]
    assert (await refresh(world, winner)).status_code == 401  # the race was a reuse


async def test_refresh_tokens_are_bound_to_their_tenant(world: World) -> None:
    token = (await world.session())["refresh_token"]
    assert error(await refresh(world, token, "beta"), 401)
    r = await world.post(
        "/auth/refresh", {"refresh_token": token}, "alpha", **{"X-Santokit-Env": "dev"}
    )
    assert error(r, 401)
    # Failed attempts elsewhere did not consume it.
    assert (await refresh(world, token)).status_code == 200


@pytest.mark.parametrize("token", ["", "garbage", "x" * 129])
async def test_unknown_refresh_tokens_are_401(world: World, token: str) -> None:
    assert error(await refresh(world, token), 401)["message"] == "Invalid refresh token"


async def test_logout_answers_204_for_anything_and_revokes_only_its_session(
    world: World,
) -> None:
    login = await world.session()
    kept = await world.login(login["user"]["email"])
    assert (await world.post("/auth/logout", {"refresh_token": "unknown"})).status_code == 204
    r = await world.post("/auth/logout", {"refresh_token": login["refresh_token"]}, "beta")
    assert r.status_code == 204
    assert (await refresh(world, login["refresh_token"])).status_code == 200  # not beta's
    assert (await refresh(world, kept.json()["refresh_token"])).status_code == 200


async def test_refresh_tokens_are_stored_hashed(world: World) -> None:
    login = await world.session()
    token = login["refresh_token"]
    async with world.bridge.rt.sessions() as session:
        rows = (
            await session.scalars(
                select(RefreshToken).where(RefreshToken.user_id == login["user"]["id"])
            )
        ).all()
    assert [r.token_hash for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert (rows[0].project, rows[0].env) == ("alpha", "prod")


# --- /auth/me -------------------------------------------------------------------------------


async def test_me_needs_an_end_user(world: World) -> None:
    assert error(await world.client.get("/auth/me", headers=host("alpha")), 401)
    r = await world.admin("POST", "/projects/alpha/envs/prod/api-keys", json={"name": "me"})
    key = r.json()["apiKey"]
    r = await world.client.get("/auth/me", headers={**host("alpha"), "X-Santokit-Api-Key": key})
    assert error(r, 403)


# --- deletion (I6) --------------------------------------------------------------------------


async def test_deleting_a_project_removes_its_users_sessions_and_keys(world: World) -> None:
    r = await world.admin("POST", "/projects", json={"id": "omega", "envs": ["prod", "qa"]})
    assert r.status_code == 201, r.text
    for env in ("prod", "qa"):
        await publish_auth(world, "omega", env, "signup: {enabled: true}\n")
    login = await world.session("omega")
    qa = {"X-Santokit-Env": "qa"}
    assert (await world.signup(new_email(), project="omega", **qa)).status_code == 201

    async def rows(model: Any, env: str | None = None) -> int:
        query = select(model).where(model.project == "omega")
        if env is not None:
            query = query.where(model.env == env)
        async with world.bridge.rt.sessions() as session:
            return len((await session.scalars(query)).all())

    assert await rows(EndUser) == 2 and await rows(RefreshToken) == 1
    assert await rows(Secret, "prod") == 2  # the connection and the signing key
    assert (await world.admin("DELETE", "/projects/omega/envs/qa")).status_code == 204
    assert await rows(EndUser) == 1
    assert (await world.admin("DELETE", "/projects/omega")).status_code == 204
    for model in (EndUser, RefreshToken, Secret):
        assert await rows(model) == 0, model
    r = await world.client.get("/auth/me", headers=bearer(login["access_token"]))
    assert r.status_code == 401


async def test_a_login_flood_on_one_tenant_is_shed_and_another_tenant_logs_in(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Issue 9 row 2: password hashing is a per-tenant bulkhead. One tenant's excess is refused
    at once (429, `Retry-After`); another tenant's login goes through meanwhile."""
    settings = {"password_hash_threads": 2, "password_hash_per_tenant": 1, "password_hash_queue": 2}
    async with auth_world(tmp_path_factory.mktemp("bulkhead"), **settings) as w:
        email = new_email()
        assert (await w.signup(email, project="beta")).status_code == 201
        flood = [w.login(new_email(), "wrong-password", project="alpha") for _ in range(12)]
        answers = await asyncio.gather(w.login(email, project="beta"), *flood)
    assert answers[0].status_code == 200, answers[0].text
    statuses = [r.status_code for r in answers[1:]]
    assert set(statuses) == {401, 429} and statuses.count(401) >= 3
    shed = next(r for r in answers[1:] if r.status_code == 429)
    assert shed.headers["Retry-After"] == "1"
    assert shed.json()["error"]["code"] == "TOO_MANY_REQUESTS"
