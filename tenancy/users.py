"""End-user accounts of one tenant (`docs/security.md`): signup, login, refresh, logout, me.

Passwords are hashed with argon2id off the event loop. Refresh tokens are opaque and stored only
as SHA-256; each refresh consumes one and issues its successor in the same family, and replaying
a consumed one revokes the family, so a stolen token is useful at most until its first reuse.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tenancy.errors import BadRequest, Conflict, Forbidden, Unauthorized
from tenancy.ids import new_ulid
from tenancy.limits import AuthGuard, HashBulkhead
from tenancy.principal import Principal, Tenant
from tenancy.registry.models import EndUser, RefreshToken, utcnow
from tenancy.releases.model import AuthSettings
from tenancy.tokens import SigningKeys

PASSWORD_MIN = 8
PASSWORD_MAX = 1024  # argon2 would take more, but nobody needs it and it bounds the work
EMAIL_MAX = 320
TOKEN_MAX = 128
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
# OWASP's argon2id baseline (19 MiB, t=2, p=1): affordable per login on a shared server.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
LOGIN_FAILED = "Invalid email or password"
REFRESH_FAILED = "Invalid refresh token"


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def _password_matches(stored: str | None, password: str) -> bool:
    """Without a user (`stored` None) a dummy hash is verified: it costs what a wrong password
    costs, so timing does not tell which emails exist. Blocking: run it in a thread."""
    try:
        return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    roles: tuple[str, ...]

    @classmethod
    def of(cls, row: EndUser) -> User:
        return cls(row.id, row.email, tuple(sorted({*row.roles, "authenticated"})))

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email, "roles": list(self.roles)}


class Accounts:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        signing: SigningKeys,
        hashing: HashBulkhead,
    ) -> None:
        self._sessions = sessions
        self._signing = signing
        self._hashing = hashing

    async def signup(
        self,
        tenant: Tenant,
        auth: AuthSettings,
        email: str,
        password: str,
        guard: AuthGuard | None = None,
    ) -> dict[str, Any]:
        """`guard` (absent for `dev`'s own bootstrap) backs off an email and an address that
        keep hitting taken emails (`docs/security.md`)."""
        if guard is not None:
            await guard.check(email)
        if not auth.signup_enabled:
            raise Forbidden("Signup is disabled for this environment")
        if len(email) > EMAIL_MAX or not _EMAIL.fullmatch(email):
            raise BadRequest("Invalid email")
        if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
            raise BadRequest(f"Password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
        async with self._hashing.slot(tenant):
            hashed = await self._hashing.compute(tenant, _HASHER.hash, password)
        row = EndUser(
            id=new_ulid(),
            project=tenant.project,
            env=tenant.env,
            email=email,
            email_lower=email.lower(),
            password_hash=hashed,
            roles=list(auth.signup_roles),
        )
        try:
            async with self._sessions() as session, session.begin():
                session.add(row)
        except IntegrityError:
            if guard is not None:
                await guard.failed(email)
            raise Conflict("Email already registered") from None
        return {"user": User.of(row).json()}

    async def login(
        self,
        tenant: Tenant,
        auth: AuthSettings,
        email: str,
        password: str,
        guard: AuthGuard | None = None,
    ) -> dict[str, Any]:
        """One answer for an unknown email and a wrong password, at the same cost; failures
        back off the email and the address (`guard`), before any hash is spent on them."""
        if guard is not None:
            await guard.check(email)
        row = None
        async with self._hashing.slot(tenant):  # before the query: excess costs nothing
            if len(email) <= EMAIL_MAX:
                async with self._sessions() as session:
                    row = await session.scalar(
                        select(EndUser).where(
                            EndUser.project == tenant.project,
                            EndUser.env == tenant.env,
                            EndUser.email_lower == email.lower(),
                        )
                    )
            stored = row.password_hash if row is not None else None
            ok = len(password) <= PASSWORD_MAX and await self._hashing.compute(
                tenant, _password_matches, stored, password
            )
        if row is None or not ok:
            if guard is not None:
                await guard.failed(email)
            raise Unauthorized(LOGIN_FAILED)
        if guard is not None:
            await guard.succeeded(email)
        user = User.of(row)
        access = await self._signing.issue(tenant, user.id, user.roles, auth.access_ttl_seconds)
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(RefreshToken).where(
                    RefreshToken.user_id == user.id, RefreshToken.expires_at < utcnow()
                )
            )
            refresh = _new_refresh(session, tenant, user.id, new_ulid(), auth)
        return _pair(access, refresh, auth, user)

    async def refresh(self, tenant: Tenant, auth: AuthSettings, token: str) -> dict[str, Any]:
        """Consume `token` and issue its successor; a replayed token revokes its family."""
        if len(token) > TOKEN_MAX:
            raise Unauthorized(REFRESH_FAILED)
        async with self._sessions() as session, session.begin():
            found = await _consume(session, tenant, _token_hash(token), utcnow())
            if found is not None:
                user = User.of(found[0])
                refresh = _new_refresh(session, tenant, user.id, found[1], auth)
        if found is None:  # after the block, so a replay's revocation is committed
            raise Unauthorized(REFRESH_FAILED)
        access = await self._signing.issue(tenant, user.id, user.roles, auth.access_ttl_seconds)
        return _pair(access, refresh, auth, user)

    async def logout(self, tenant: Tenant, token: str) -> None:
        """Ends the session (the token's family); unknown tokens are ignored, not reported."""
        if len(token) > TOKEN_MAX:
            return
        async with self._sessions() as session, session.begin():
            row = await session.get(RefreshToken, _token_hash(token))
            if row is not None and (row.project, row.env) == (tenant.project, tenant.env):
                await _revoke_family(session, row.family, utcnow())

    async def me(self, tenant: Tenant, principal: Principal) -> dict[str, Any]:
        if principal.is_anonymous:
            raise Unauthorized("Authentication required")
        if principal.type != "user":
            raise Forbidden("Only end users have a profile")
        async with self._sessions() as session:
            row = await session.get(EndUser, principal.sub)
        if row is None or (row.project, row.env) != (tenant.project, tenant.env):
            raise Unauthorized("User no longer exists")
        return User.of(row).json()


async def _consume(
    session: AsyncSession, tenant: Tenant, token_hash: str, now: datetime
) -> tuple[EndUser, str] | None:
    """The token's user and family if it was live, marking it used; revokes on replay."""
    row = await session.get(RefreshToken, token_hash)
    if row is None or (row.project, row.env) != (tenant.project, tenant.env):
        return None
    if row.revoked_at is not None or row.expires_at <= now:
        return None
    # Conditional, so two concurrent refreshes with one token cannot both win (both engines).
    result = await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == token_hash,
            RefreshToken.used_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(used_at=now)
    )
    if getattr(result, "rowcount", 0) != 1:
        await _revoke_family(session, row.family, now)
        return None
    user = await session.get(EndUser, row.user_id)
    return (user, row.family) if user is not None else None


async def _revoke_family(session: AsyncSession, family: str, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def _new_refresh(
    session: AsyncSession, tenant: Tenant, user_id: str, family: str, auth: AuthSettings
) -> str:
    token = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            token_hash=_token_hash(token),
            project=tenant.project,
            env=tenant.env,
            user_id=user_id,
            family=family,
            expires_at=utcnow() + timedelta(seconds=auth.refresh_ttl_seconds),
        )
    )
    return token


def _pair(access: str, refresh: str, auth: AuthSettings, user: User) -> dict[str, Any]:
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": auth.access_ttl_seconds,
        "refresh_token": refresh,
        "user": user.json(),
    }
