"""Registry revisions that change stored data, run on a registry holding the old format."""

from __future__ import annotations

import pytest
from alembic import command
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tenancy import sealing
from tenancy.keyring import Keyring, new_dek
from tenancy.registry import migrate
from tenancy.registry.db import create_registry_engine, session_factory
from tenancy.registry.models import DataKey, Env, Project, Secret, utcnow
from tenancy.vault import Vault, aad_name

KEYS = "k1:" + "A" * 43
VALUES = {("connection", "main"): b"postgresql://u:p@db/app", ("secret", "STRIPE"): b"sk_live"}


def _sealed_v1(dek: bytes, project: str, env: str, name: str, plain: bytes) -> str:
    """A value as the Bridge sealed it before revision 0004 (no version in the data)."""
    aad = f"stk:secret:v1:{project}:{env}:{name}".encode()
    return sealing._encrypt(AESGCM(dek), aad, plain)


async def _old_registry(url: str, keyring: Keyring) -> None:
    """A registry at revision 0002 with one project whose values are in the v1 format."""
    engine = create_registry_engine(url)
    try:
        await migrate.upgrade(engine, "0002")
        dek = new_dek()
        kid, wrapped = keyring.wrap_dek("shop", dek)
        now = utcnow()
        async with engine.begin() as conn:
            await conn.execute(
                insert(Project).values(
                    id="shop",
                    status="active",
                    default_env="prod",
                    limits={},
                    created_at=now,
                    updated_at=now,
                )
            )
            await conn.execute(insert(Env).values(project="shop", id="prod", created_at=now))
            await conn.execute(
                insert(DataKey).values(
                    project="shop", kid=kid, wrapped=wrapped, generation=1, updated_at=now
                )
            )
            for (kind, name), plain in VALUES.items():
                token = _sealed_v1(dek, "shop", "prod", aad_name(kind, name), plain)
                await conn.execute(
                    insert(Secret).values(
                        project="shop",
                        env="prod",
                        kind=kind,
                        name=name,
                        version=3,
                        ciphertext=token,
                        meta={},
                        updated_at=now,
                    )
                )
    finally:
        await engine.dispose()


async def _downgrade(engine: AsyncEngine, revision: str, keyring: Keyring) -> None:
    def run(connection: object) -> None:
        config = migrate.alembic_config(str(engine.url))
        config.attributes.update(connection=connection, keyring=keyring)
        command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def test_0004_reseals_old_values_with_their_version(registry_url: str) -> None:
    keyring = Keyring.parse(KEYS)
    await _old_registry(registry_url, keyring)
    engine = create_registry_engine(registry_url)
    try:
        with pytest.raises(RuntimeError, match="STK_MASTER_KEYS"):
            await migrate.upgrade(engine)  # values to re-seal and no keyring: nothing changes
        await migrate.upgrade(engine, keyring=keyring)
        vault = Vault(keyring)
        async with session_factory(engine)() as session:
            rows = (await session.scalars(select(Secret))).all()
            assert {(r.kind, r.name): await vault.open(session, r) for r in rows} == VALUES
            assert all(r.ciphertext.startswith("v2.") and r.version == 3 for r in rows)
        await _downgrade(engine, "0002", keyring)  # and back
        async with session_factory(engine)() as session:
            rows = (await session.scalars(select(Secret))).all()
            assert all(r.ciphertext.startswith("v1.") for r in rows)
    finally:
        await engine.dispose()
