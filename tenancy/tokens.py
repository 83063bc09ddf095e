"""End-user access tokens (`docs/security.md`): Ed25519 JWTs signed per (project, env).

Private keys are sealed in the registry as secrets of kind `signing` (name = kid). Kids are
ULIDs, so the newest one is the current signer and the one before it still verifies: rotation
adds a key and keeps exactly one previous. Decrypted keys live only in this process's cache.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenancy.cache import Cache, StaleOnError, registry_policy
from tenancy.errors import Forbidden, ServiceUnavailable, Unauthorized
from tenancy.ids import is_env_id, is_project_id, new_ulid
from tenancy.principal import Principal, Tenant
from tenancy.registry.models import Secret, utcnow
from tenancy.releases.compile.compiler import ACCESS_TTL_MAX
from tenancy.vault import Vault, VaultError

log = logging.getLogger("stk.tokens")

KIND = "signing"
ALGORITHM = "EdDSA"
LEEWAY_SECONDS = 30
KEPT_KEYS = 2  # current + previous
# A kid we do not know may be a key another replica just made: reload, but at most this often.
RELOAD_AFTER_SECONDS = 1.0
INVALID = "Invalid token"
_REQUIRED = ["exp", "iat", "iss", "aud", "sub"]


# The previous key verifies until every token it signed has expired: the longest access TTL a
# release may set (the compiler's bound), plus the leeway (`docs/security.md`).
PREVIOUS_KEY_GRACE_SECONDS = ACCESS_TTL_MAX + LEEWAY_SECONDS


def _retired(key: SigningKey, current: SigningKey) -> bool:
    return key is not current and time.time() > current.created + PREVIOUS_KEY_GRACE_SECONDS


def issuer(tenant: Tenant) -> str:
    """Both `iss` and `aud`: a token names the one tenant it was made for."""
    return f"stk:{tenant.project}:{tenant.env}"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey = field(repr=False)
    public: Ed25519PublicKey = field(repr=False)
    created: float = 0.0  # epoch seconds; for the current key, when it replaced the previous

    def jwk(self) -> dict[str, str]:
        raw = self.public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": x,
            "kid": self.kid,
            "alg": ALGORITHM,
            "use": "sig",
        }


@dataclass(frozen=True, slots=True)
class KeySet:
    """One tenant's keys by kid; `current` signs, every key verifies."""

    keys: Mapping[str, SigningKey]
    loaded_at: float

    @property
    def current(self) -> SigningKey:
        return self.keys[max(self.keys)]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [self.keys[kid].jwk() for kid in sorted(self.keys, reverse=True)]}


async def add_key(session: AsyncSession, vault: Vault, project: str, env: str) -> str:
    """A new current key in the caller's transaction; keys older than the previous one go."""
    kid = new_ulid()
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    meta: dict[str, object] = {"alg": ALGORITHM, "createdAt": utcnow().isoformat()}
    await vault.put(session, project, env, KIND, kid, raw, meta)
    kids = sorted(await _kids(session, project, env), reverse=True)
    stale = kids[KEPT_KEYS:]
    if stale:
        await session.execute(
            delete(Secret).where(
                Secret.project == project,
                Secret.env == env,
                Secret.kind == KIND,
                Secret.name.in_(stale),
            )
        )
    return kid


async def _kids(session: AsyncSession, project: str, env: str) -> list[str]:
    query = select(Secret.name).where(
        Secret.project == project, Secret.env == env, Secret.kind == KIND
    )
    return list((await session.scalars(query)).all())


ACCEPTED_MAX = 4096


@dataclass(frozen=True, slots=True)
class _Accepted:
    tenant: Tenant
    keys: KeySet
    expires: float
    principal: Principal


class SigningKeys:
    """Tenant signing keys: cached decrypted, created on first need, issue and verify."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        vault: Vault,
        ttl: float,
        registry: StaleOnError | None = None,
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self.cache: Cache[KeySet] = Cache(
            "signingkey", ttl, stale_on_error=registry or registry_policy()
        )
        self._creating = asyncio.Lock()
        # Tokens already verified, with the key set that verified them: a repeat presentation
        # skips the signature check (the largest CPU cost of a user request) for as long as
        # that very key set is still the cached one and the token has not expired.
        self.accepted: Cache[_Accepted] = Cache("token", None, max_entries=ACCEPTED_MAX)

    @property
    def caches(self) -> tuple[Cache[KeySet], Cache[_Accepted]]:
        return self.cache, self.accepted

    async def keyset(self, tenant: Tenant) -> KeySet | None:
        return await self.cache.get((tenant.project, tenant.env), lambda: self._load(tenant))

    async def _load(self, tenant: Tenant) -> KeySet | None:
        async with self._sessions() as session:
            query = select(Secret).where(
                Secret.project == tenant.project, Secret.env == tenant.env, Secret.kind == KIND
            )
            rows = (await session.scalars(query)).all()
            if not rows:
                return None
            try:
                dek = await self._vault.dek(session, tenant.project)
                keys = {}
                for row in rows:
                    private = Ed25519PrivateKey.from_private_bytes(
                        await self._vault.open(session, row, dek)
                    )
                    created = datetime.fromisoformat(row.meta["createdAt"]).timestamp()
                    keys[row.name] = SigningKey(row.name, private, private.public_key(), created)
            except (VaultError, ValueError) as exc:
                log.error("signing key unusable: %s", exc)
                raise ServiceUnavailable("Token signing keys unavailable") from None
        return KeySet(keys, time.monotonic())

    async def ensure(self, tenant: Tenant) -> KeySet:
        """The tenant's keys, making the first one if it has none (its env must exist)."""
        keys = await self.keyset(tenant)
        if keys is not None:
            return keys
        async with self._creating:
            keys = await self.keyset(tenant)
            if keys is not None:
                return keys
            try:
                async with self._sessions() as session, session.begin():
                    if not await _kids(session, tenant.project, tenant.env):
                        await add_key(session, self._vault, tenant.project, tenant.env)
            except (SQLAlchemyError, OSError, VaultError) as exc:
                log.error("could not create a signing key: %s", type(exc).__name__)
                raise ServiceUnavailable("Token signing keys unavailable") from None
            self.cache.invalidate(tenant.project)
            keys = await self.keyset(tenant)
        if keys is None:
            raise ServiceUnavailable("Token signing keys unavailable")
        return keys

    async def issue(self, tenant: Tenant, sub: str, roles: Iterable[str], ttl: int) -> str:
        key = (await self.ensure(tenant)).current
        now = int(time.time())
        name = issuer(tenant)
        claims = {
            "sub": sub,
            "project_id": tenant.project,
            "env_id": tenant.env,
            "roles": sorted({*roles, "authenticated"}),
            "iat": now,
            "exp": now + ttl,
            "jti": new_ulid(),
            "iss": name,
            "aud": name,
        }
        headers = {"kid": key.kid, "typ": "JWT"}
        return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers=headers)

    async def verify(self, project: str | None, raw: str) -> tuple[Tenant, Principal]:
        """Verify with `project`'s keys, or the claimed project's when the request named none
        (the env comes from the claim and is then checked).

        A token that verifies under the project it claims, sent to another project, is 403
        (a valid credential of another tenant); anything unverifiable is 401.
        """
        # Remembered tokens are keyed by (project, token) like every tenant cache; without a
        # hint the token's own claim names the project, which costs the one decode anyway.
        token = None if project is not None else parse(raw)
        owner = project if token is None else token.claims.get("project_id")
        accepted = self.accepted.lookup((owner, raw)) if is_project_id(owner) else None
        if accepted is not None:
            current = self.cache.fresh((accepted.tenant.project, accepted.tenant.env))
            if current is accepted.keys and time.time() <= accepted.expires + LEEWAY_SECONDS:
                return accepted.tenant, accepted.principal
            self.accepted.discard((owner, raw))
        token = token or parse(raw)
        header, payload = token.header, token.claims
        kid, claimed, env = header.get("kid"), payload.get("project_id"), payload.get("env_id")
        if (
            header.get("alg") != ALGORITHM
            or not isinstance(kid, str)
            or not is_project_id(claimed)
            or not is_env_id(env)
        ):
            raise Unauthorized(INVALID)
        tenant = Tenant(str(claimed), str(env))
        await self._verified(tenant, kid, token)
        if project is not None and tenant.project != project:
            raise Forbidden("Token is not valid for this project or environment")
        sub, roles = payload.get("sub"), payload.get("roles")
        if (
            not isinstance(sub, str)
            or not sub
            or not isinstance(roles, list)
            or not all(isinstance(r, str) for r in roles)
        ):
            raise Unauthorized(INVALID)
        principal = Principal("user", sub, frozenset((*roles, "authenticated", "public")))
        keys = self.cache.fresh((tenant.project, env))
        if keys is not None:
            accepted = _Accepted(tenant, keys, float(payload["exp"]), principal)
            self.accepted.put((tenant.project, raw), accepted)
        return tenant, principal

    async def _verified(self, tenant: Tenant, kid: str, token: ParsedToken) -> None:
        """Raise 401 unless one of `tenant`'s keys signed `token` for `tenant`."""
        keys = await self.keyset(tenant)
        if (
            keys is not None
            and kid not in keys.keys
            and time.monotonic() - keys.loaded_at > RELOAD_AFTER_SECONDS
        ):
            self.cache.invalidate(tenant.project)
            keys = await self.keyset(tenant)
        key = keys.keys.get(kid) if keys is not None else None
        if key is None or (keys is not None and _retired(key, keys.current)):
            raise Unauthorized(INVALID)
        if not _EDDSA.verify(token.signing_input, key.public, token.signature):
            raise Unauthorized(INVALID)
        # We sign `iss` and `aud` as this one string (`issuer`), so equality is the whole check.
        name = issuer(tenant)
        if token.claims["iss"] != name or token.claims["aud"] != name:
            raise Unauthorized(INVALID)


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A bearer token decoded once per request, not yet trusted: its header and claims choose
    the keys that verify it, and the same bytes are then verified."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


# Checked while decoding, before any key is known: the time claims and the claims we require.
# Issuer and audience name the tenant, so they are checked once the keys have verified.
_PARSE_OPTIONS: jwt.types.Options = {
    "verify_signature": False,
    "verify_exp": True,
    "verify_iat": True,
    "verify_nbf": True,
    "verify_sub": True,
    "verify_jti": True,
    "require": _REQUIRED,
}
_EDDSA = jwt.get_algorithm_by_name(ALGORITHM)
_NUMERIC = ("exp", "nbf", "iat")


def parse(raw: str) -> ParsedToken:
    """PyJWT decodes (base64, JSON, claim checks); only the signature is left to `verify`."""
    try:
        decoded = jwt.decode_complete(raw, options=_PARSE_OPTIONS, leeway=LEEWAY_SECONDS)
    except jwt.PyJWTError:
        raise Unauthorized(INVALID) from None
    # PyJWT compares `int(claim)`, so "exp": "99999999999" passed; RFC 7519 says NumericDate.
    claims = decoded["payload"]
    for name in _NUMERIC:
        value = claims.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Unauthorized(INVALID)
    signing_input = raw.rpartition(".")[0].encode()
    return ParsedToken(decoded["header"], decoded["payload"], signing_input, decoded["signature"])
