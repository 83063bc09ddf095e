"""End-user token verification and signing keys (`docs/security.md`, `docs/tenancy.md` step 4):
forged,
expired, misdirected and cross-tenant tokens; rotation; the JWKS; keys sealed at rest.

Forged tokens are signed with the tenant's real private key where the attack needs one (it is
read from the running Bridge's key cache), so only the property under test is wrong.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from sqlalchemy import select

from tenancy import tokens
from tenancy.principal import Tenant
from tenancy.registry.models import Secret

from support.auth import auth_world, whoami
from support.world import World, bearer

pytestmark = pytest.mark.asyncio(loop_scope="module")
ALPHA = Tenant("alpha", "prod")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    async with auth_world(tmp_path_factory.mktemp(f"tokens-{request.param}"), request.param) as w:
        yield w


async def me(world: World, token: str, project: str | None = "alpha", **headers: str) -> Any:
    return await world.client.get("/auth/me", headers={**bearer(token, project), **headers})


def expect(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    if status >= 400:
        code = {401: "UNAUTHORIZED", 403: "FORBIDDEN"}[status]
        assert r.json()["error"]["code"] == code


async def current_key(world: World, tenant: Tenant = ALPHA) -> tokens.SigningKey:
    return (await world.bridge.rt.directory.signing.ensure(tenant)).current


def claims_for(sub: str, tenant: Tenant = ALPHA, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    name = f"stk:{tenant.project}:{tenant.env}"
    claims = {
        "sub": sub,
        "project_id": tenant.project,
        "env_id": tenant.env,
        "roles": ["authenticated"],
        "iat": now,
        "exp": now + 120,
        "jti": "j1",
        "iss": name,
        "aud": name,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def signed(key: tokens.SigningKey, claims: dict[str, Any], kid: str | None = None) -> str:
    return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": kid or key.kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """By hand: PyJWT refuses to use a public key as an HMAC secret, an attacker would not."""
    header = b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(mac)}"


# --- a real token works; the same claims under every broken form do not ---------------------


async def test_a_valid_token_verifies(world: World) -> None:
    login = await world.session()
    expect(await me(world, login["access_token"]), 200)
    key = await current_key(world)
    expect(await me(world, signed(key, claims_for(login["user"]["id"]))), 200)


def forgeries() -> list[Any]:
    """(name, build(key, sub) → token). Each breaks exactly one rule."""

    def now() -> int:  # read when each token is built, not when tests are collected
        return int(time.time())

    def public_pem(key: tokens.SigningKey) -> bytes:
        return key.public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def rs256(key: tokens.SigningKey, sub: str) -> str:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(claims_for(sub), other, algorithm="RS256", headers={"kid": key.kid})

    def tampered(key: tokens.SigningKey, sub: str) -> str:
        header, _, signature = signed(key, claims_for(sub)).split(".")
        body = b64(json.dumps(claims_for(sub, roles=["authenticated", "admin"])).encode())
        return f"{header}.{body}.{signature}"

    def unknown_kid(key: tokens.SigningKey, sub: str) -> str:
        return signed(key, claims_for(sub), kid="01UNKNOWNKID0000000000000")

    def foreign_key(key: tokens.SigningKey, sub: str) -> str:
        other = tokens.SigningKey(
            key.kid, Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate().public_key()
        )
        return signed(other, claims_for(sub))

    cases = {
        "alg-none": lambda k, s: jwt.encode(claims_for(s), None, algorithm="none"),
        "hs256-public-key-pem": lambda k, s: hs256(claims_for(s), public_pem(k), k.kid),
        "hs256-public-key-raw": lambda k, s: hs256(
            claims_for(s), k.public.public_bytes(Encoding.Raw, PublicFormat.Raw), k.kid
        ),
        "rs256": rs256,
        "unknown-kid": unknown_kid,
        "no-kid": lambda k, s: jwt.encode(claims_for(s), k.private, algorithm="EdDSA"),
        "foreign-key": foreign_key,
        "tampered-payload": tampered,
        "expired": lambda k, s: signed(k, claims_for(s, iat=now() - 600, exp=now() - 31)),
        "issued-in-the-future": lambda k, s: signed(k, claims_for(s, iat=now() + 120)),
        "no-exp": lambda k, s: signed(k, claims_for(s, exp=None)),
        "no-iat": lambda k, s: signed(k, claims_for(s, iat=None)),
        "wrong-iss": lambda k, s: signed(k, claims_for(s, iss="stk:beta:prod")),
        "wrong-aud": lambda k, s: signed(k, claims_for(s, aud="stk:alpha:dev")),
        "no-aud": lambda k, s: signed(k, claims_for(s, aud=None)),
        "no-sub": lambda k, s: signed(k, {**claims_for(s), "sub": ""}),
        "roles-not-a-list": lambda k, s: signed(k, claims_for(s, roles="admin")),
        "garbage": lambda k, s: "not.a.token",
        # Issue 9 row 10: NumericDate claims as strings (PyJWT alone took them via int()).
        "exp-a-numeric-string": lambda k, s: signed(k, claims_for(s, exp=str(now() + 120))),
        "iat-a-numeric-string": lambda k, s: signed(k, claims_for(s, iat=str(now()))),
        "nbf-a-numeric-string": lambda k, s: signed(k, claims_for(s, nbf=str(now() - 5))),
        "exp-a-boolean": lambda k, s: signed(k, claims_for(s, exp=True)),
    }
    return [pytest.param(build, id=name) for name, build in cases.items()]


@pytest.mark.parametrize("build", forgeries())
async def test_forged_tokens_are_401(world: World, build: Any) -> None:
    login = await world.session()
    token = build(await current_key(world), login["user"]["id"])
    expect(await me(world, token), 401)
    expect(await whoami(world, {"Host": "api.example.com", **bearer(token)}), 401)


async def test_leeway_is_thirty_seconds(world: World) -> None:
    login = await world.session()
    key = await current_key(world)
    now = int(time.time())
    sub = login["user"]["id"]
    expect(await me(world, signed(key, claims_for(sub, iat=now - 600, exp=now - 20))), 200)
    expect(await me(world, signed(key, claims_for(sub, iat=now + 20))), 200)


# --- tokens and tenants (I3) ----------------------------------------------------------------


async def test_a_valid_token_of_another_project_is_403(world: World) -> None:
    token = (await world.session())["access_token"]
    expect(await me(world, token, "beta"), 403)
    expect(await me(world, token, None, **{"X-Santokit-Project": "beta"}), 403)
    expect(await me(world, token, "alpha", **{"X-Santokit-Env": "dev"}), 403)
    expect(await whoami(world, bearer(token, "beta")), 403)


async def test_a_forged_project_claim_is_401(world: World) -> None:
    """Signed by alpha's key, claiming beta: beta's keys do not know it, alpha's reject it."""
    login = await world.session()
    await current_key(world, Tenant("beta", "prod"))  # beta has keys too
    key = await current_key(world)
    beta = Tenant("beta", "prod")
    for claims in (
        claims_for(login["user"]["id"], beta),
        claims_for(login["user"]["id"], project_id="beta"),
    ):
        token = signed(key, claims)
        for project in ("beta", "alpha", None):
            expect(await me(world, token, project), 401)


async def test_a_token_for_an_unknown_user_does_not_reach_me(world: World) -> None:
    key = await current_key(world)
    expect(await me(world, signed(key, claims_for("01NOSUCHUSER00000000000000"))), 401)


# --- keys: rotation, JWKS, storage ----------------------------------------------------------


async def rotate(world: World, env: str = "prod") -> str:
    r = await world.admin("POST", f"/projects/alpha/envs/{env}/signing-keys/rotate")
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"kid"}
    return str(r.json()["kid"])


async def jwks(world: World, project: str = "alpha") -> dict[str, dict[str, Any]]:
    r = await world.client.get(
        "/.well-known/jwks.json", headers={"Host": f"{project}.api.example.com"}
    )
    assert r.status_code == 200, r.text
    return {k["kid"]: k for k in r.json()["keys"]}


async def test_rotation_keeps_the_previous_key_verifying(world: World) -> None:
    old = await world.session()
    old_kid = jwt.get_unverified_header(old["access_token"])["kid"]
    new_kid = await rotate(world)
    assert new_kid != old_kid
    expect(await me(world, old["access_token"]), 200)
    fresh = await world.session()
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] == new_kid
    keys = await jwks(world)
    assert set(keys) == {old_kid, new_kid}
    for kid, token in ((old_kid, old["access_token"]), (new_kid, fresh["access_token"])):
        public = jwt.PyJWK(keys[kid]).key
        assert jwt.decode(token, public, algorithms=["EdDSA"], audience="stk:alpha:prod")
    # A second rotation retires the oldest key: only current + previous verify.
    newest = await rotate(world)
    assert set(await jwks(world)) == {new_kid, newest}
    expect(await me(world, old["access_token"]), 401)
    expect(await me(world, fresh["access_token"]), 200)
    r = await world.admin("GET", "/audit?project=alpha&action=signingkey.rotate")
    kids = [item["detail"]["kid"] for item in r.json()["items"]]
    assert kids[:2] == [newest, new_kid]
    assert all(item["env"] == "prod" for item in r.json()["items"])


async def test_rotate_unknown_tenant_is_404(world: World) -> None:
    r = await world.admin("POST", "/projects/alpha/envs/nope/signing-keys/rotate")
    assert r.status_code == 404
    r = await world.admin("POST", "/projects/nope/envs/prod/signing-keys/rotate")
    assert r.status_code == 404
    r = await world.client.post("/admin/v1/projects/alpha/envs/prod/signing-keys/rotate")
    assert r.status_code == 401


async def test_an_env_without_a_key_answers_an_empty_set_and_makes_none(world: World) -> None:
    """Issue 9 row 9: an anonymous JWKS request used to create the env's first signing key."""
    r = await world.client.get(
        "/.well-known/jwks.json",
        headers={"Host": "gamma.api.example.com"},
    )
    assert r.status_code == 200 and r.json() == {"keys": []}
    async with world.bridge.rt.sessions() as session:
        query = select(Secret).where(Secret.project == "gamma", Secret.kind == "signing")
        assert (await session.scalars(query)).all() == []


async def test_each_tenant_env_has_its_own_keys(world: World) -> None:
    await current_key(world, Tenant("beta", "prod"))  # a tenant's first key: its first token
    alpha, beta = await jwks(world), await jwks(world, "beta")
    assert alpha and beta and not set(alpha) & set(beta)
    r = await world.client.get(
        "/.well-known/jwks.json", headers={"Host": "alpha.api.example.com", "X-Santokit-Env": "dev"}
    )
    assert r.status_code == 200 and not set(k["kid"] for k in r.json()["keys"]) & set(alpha)
    r = await world.client.get("/.well-known/jwks.json", headers={"Host": "nope.api.example.com"})
    assert r.status_code == 404


async def test_private_keys_are_sealed_at_rest(world: World) -> None:
    key = await current_key(world)
    raw = key.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    async with world.bridge.rt.sessions() as session:
        rows = (
            await session.scalars(
                select(Secret).where(Secret.project == "alpha", Secret.kind == "signing")
            )
        ).all()
    assert key.kid in {r.name for r in rows}
    for row in rows:
        assert row.ciphertext.startswith("v2.")
        assert b64(raw) not in row.ciphertext and raw.hex() not in row.ciphertext
    r = await world.admin("GET", "/projects/alpha/envs/prod/secrets")
    assert key.kid not in r.text


async def test_keys_survive_a_data_key_rotation(world: World) -> None:
    token = (await world.session())["access_token"]
    r = await world.admin("POST", "/projects/alpha/rotate-dek")
    assert r.status_code == 200 and r.json()["secrets"] >= 2
    expect(await me(world, token), 200)


async def test_a_key_made_by_another_replica_is_picked_up(world: World) -> None:
    """A replica that missed the invalidation reloads on an unknown kid (at most once a second)."""
    rt = world.bridge.rt
    user = (await world.session())["user"]["id"]  # this replica has alpha's keys cached
    async with rt.transaction() as session:  # another replica rotates: no local invalidation
        kid = await tokens.add_key(session, rt.vault, "alpha", "prod")
    other_replica = tokens.SigningKeys(rt.sessions, rt.vault, 30)
    token = await other_replica.issue(ALPHA, user, ["authenticated"], 60)
    assert jwt.get_unverified_header(token)["kid"] == kid
    await asyncio.sleep(tokens.RELOAD_AFTER_SECONDS + 0.1)
    expect(await me(world, token), 200)


@pytest.mark.parametrize("project", ["alpha", None])
async def test_a_token_is_decoded_once_per_request(
    world: World, monkeypatch: Any, project: str | None
) -> None:
    """Choosing the keys (project, kid, env claims) and verifying share one decode. A token
    already verified is not decoded at all when a hint names the project; without one, its own
    claim names the project of the cache key, which costs that one decode and no more."""
    login = await world.session()
    token = signed(await current_key(world), claims_for(login["user"]["id"]))
    decodes = 0
    load = jwt.api_jws.PyJWS._load

    def counting(self: jwt.PyJWS, raw: str | bytes) -> Any:
        nonlocal decodes
        decodes += 1
        return load(self, raw)

    monkeypatch.setattr(jwt.api_jws.PyJWS, "_load", counting)
    expect(await me(world, token, project), 200)
    assert decodes == 1
    expect(await me(world, token, project), 200)
    assert decodes == (1 if project else 2)


async def test_a_remembered_token_still_expires(world: World) -> None:
    """Verified tokens are remembered to skip the signature check; never past their expiry."""
    login = await world.session()
    now = int(time.time())
    # Valid for about one more second: expired 29 s ago, inside the 30 s leeway.
    token = signed(await current_key(world), claims_for(login["user"]["id"], exp=now - 29))
    expect(await me(world, token), 200)
    expect(await me(world, token), 200)  # served from the remembered verification
    await asyncio.sleep(1.6)
    expect(await me(world, token), 401)


async def test_the_previous_key_retires_once_its_tokens_must_have_expired(
    world: World, monkeypatch: Any
) -> None:
    old = (await world.session())["access_token"]
    await rotate(world)
    expect(await me(world, old), 200)
    # Past the grace (the longest access TTL + leeway since the rotation), the previous key
    # verifies nothing more, while the current one still does.
    monkeypatch.setattr(tokens, "PREVIOUS_KEY_GRACE_SECONDS", -1)
    world.bridge.rt.directory.signing.accepted.invalidate()
    expect(await me(world, old), 401)
    expect(await me(world, (await world.session())["access_token"]), 200)
