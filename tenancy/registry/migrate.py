"""Registry schema upgrades through Alembic, usable from an installed package (no alembic.ini)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from tenancy.keyring import Keyring

LOCK_KEY = 0x5354_4B42  # "STKB": the registry migration lock


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(
    engine: AsyncEngine, revision: str = "head", keyring: Keyring | None = None
) -> None:
    """Upgrade on a connection of `engine`, so SQLite in-memory and tests share it. `keyring`
    lets a revision re-seal stored values (0004); one that needs it and has none stops."""

    def run(connection: object) -> None:
        config = alembic_config(str(engine.url))
        config.attributes["connection"] = connection
        config.attributes["keyring"] = keyring
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting together must not race each other through the same revision.
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        else:
            # The sqlite3 module opens a transaction only before DML, so DDL would commit on its
            # own: begin explicitly, and a revision that fails leaves nothing half-applied.
            await connection.exec_driver_sql("BEGIN")
        await connection.run_sync(run)
