"""Sealed values in the registry: the one place that combines the keyring, data keys and sealing.

A project's data key is unwrapped only here, only in memory. Deleting the `data_keys` row
crypto-shreds every value of the project (`docs/tenancy.md` I6).
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tenancy import sealing
from tenancy.errors import ServiceUnavailable
from tenancy.keyring import Keyring, KeyringError, new_dek
from tenancy.registry.models import DataKey, Secret

# A sealed row and its project's data key: built once, run with the values bound (a cold
# tenant's first request waits for it; `docs/decisions.md`, cold tenants).
_SEALED = (
    select(Secret, DataKey)
    .outerjoin(DataKey, DataKey.project == Secret.project)
    .where(
        Secret.project == bindparam("project"),
        Secret.env == bindparam("env"),
        Secret.kind == bindparam("kind"),
        Secret.name == bindparam("name"),
    )
)


class VaultError(ServiceUnavailable):
    """A value that cannot be decrypted: a wrong key, a moved or tampered ciphertext.

    A 503 when nothing handles it (an admin call on such a project): the keyring, not the
    caller, is at fault. Messages name projects, kids and secret names, never material.
    """


def aad_name(kind: str, name: str) -> str:
    """Named secrets keep their bare NAME (it cannot contain ':'); other kinds are prefixed."""
    return name if kind == "secret" else f"{kind}:{name}"


class Vault:
    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    async def create_dek(self, session: AsyncSession, project: str) -> None:
        kid, wrapped = self.keyring.wrap_dek(project, new_dek())
        session.add(DataKey(project=project, kid=kid, wrapped=wrapped))

    async def dek(self, session: AsyncSession, project: str) -> bytes:
        return self._unwrap(project, await session.get(DataKey, project))

    def _unwrap(self, project: str, row: DataKey | None) -> bytes:
        if row is None:
            raise VaultError(f"project {project} has no data key")
        try:
            return self.keyring.unwrap_dek(project, row.kid, row.wrapped)
        except KeyringError as exc:
            raise VaultError(f"data key of {project} does not unwrap: {exc}") from None

    async def put(
        self,
        session: AsyncSession,
        project: str,
        env: str,
        kind: str,
        name: str,
        value: bytes,
        meta: dict[str, object] | None = None,
    ) -> Secret:
        dek = await self.dek(session, project)
        row = await session.get(Secret, (project, env, kind, name))
        if row is None:
            row = Secret(project=project, env=env, kind=kind, name=name, version=1)
            session.add(row)
        else:
            row.version += 1
        # The version is in the associated data: an older ciphertext does not open as this one.
        row.ciphertext = sealing.seal(dek, project, env, aad_name(kind, name), row.version, value)
        row.meta = dict(meta or {})
        await session.flush()
        return row

    async def open(self, session: AsyncSession, row: Secret, dek: bytes | None = None) -> bytes:
        dek = dek if dek is not None else await self.dek(session, row.project)
        try:
            return sealing.unseal(
                dek,
                row.project,
                row.env,
                aad_name(row.kind, row.name),
                row.version,
                row.ciphertext,
            )
        except sealing.SealError:
            raise VaultError(
                f"{row.kind} {row.name} of {row.project}/{row.env} does not decrypt"
            ) from None

    async def read(
        self, session: AsyncSession, project: str, env: str, kind: str, name: str
    ) -> tuple[Secret, bytes] | None:
        """A sealed row and its plaintext, None when there is no such row.

        Row and data key come from one statement, so they agree without a transaction (a
        rotation re-seals every row and re-wraps the key in one): the request path reads the
        registry in autocommit (`docs/decisions.md`, cold tenants)."""
        values = {"project": project, "env": env, "kind": kind, "name": name}
        found = (await session.execute(_SEALED, values)).first()
        if found is None:
            return None
        row, key = found
        return row, await self.open(session, row, self._unwrap(project, key))

    async def rewrap_all(self, session: AsyncSession) -> int:
        """Re-wrap every data key under the active master key; secrets are untouched."""
        count = 0
        for row in (await session.scalars(select(DataKey))).all():
            if row.kid == self.keyring.active_kid:
                continue
            try:
                row.kid, row.wrapped = self.keyring.rewrap_dek(row.project, row.kid, row.wrapped)
            except KeyringError as exc:
                raise VaultError(f"nothing re-wrapped: {exc}") from None
            count += 1
        return count

    async def rotate_dek(self, session: AsyncSession, project: str) -> int:
        """Re-encrypt the project's values under a fresh data key, in the caller's transaction."""
        old = await self.dek(session, project)
        fresh = new_dek()
        rows = (await session.scalars(select(Secret).where(Secret.project == project))).all()
        for row in rows:
            plain = await self.open(session, row, old)
            name = aad_name(row.kind, row.name)
            row.ciphertext = sealing.seal(fresh, project, row.env, name, row.version, plain)
        key = await session.get(DataKey, project)
        assert key is not None
        key.kid, key.wrapped = self.keyring.wrap_dek(project, fresh)
        key.generation += 1
        return len(rows)

    async def shred(self, session: AsyncSession, project: str) -> None:
        await session.execute(delete(DataKey).where(DataKey.project == project))

    async def status(self, session: AsyncSession) -> dict[str, int]:
        kids = (await session.scalars(select(DataKey.kid))).all()
        counts = Counter(kids)
        return {kid: counts.get(kid, 0) for kid in {*self.keyring.kids, *counts}}
