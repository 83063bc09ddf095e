"""sealed secrets v2: the secret version bound into the associated data

Every stored value is opened with the associated data it was sealed under and sealed again with
its version in it (`tenancy/sealing.py`, `docs/security.md`). The master keyring is needed for
that: the Bridge passes it (`tenancy/registry/migrate.py`); a registry holding sealed values with
no keyring given stops here with a clear message and changes nothing.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02 01:30:00
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

from tenancy import sealing
from tenancy.keyring import Keyring
from tenancy.vault import aad_name

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_secrets = sa.table(
    "secrets",
    sa.column("project", sa.String),
    sa.column("env", sa.String),
    sa.column("kind", sa.String),
    sa.column("name", sa.String),
    sa.column("version", sa.Integer),
    sa.column("ciphertext", sa.Text),
)
_data_keys = sa.table(
    "data_keys", sa.column("project", sa.String), sa.column("kid"), sa.column("wrapped")
)
Reseal = Callable[[bytes, str, str, str, int, str], str]


def _v1_to_v2(dek: bytes, project: str, env: str, name: str, version: int, token: str) -> str:
    plain = sealing.unseal_v1(dek, project, env, name, token)
    return sealing.seal(dek, project, env, name, version, plain)


def _v2_to_v1(dek: bytes, project: str, env: str, name: str, version: int, token: str) -> str:
    plain = sealing.unseal(dek, project, env, name, version, token)
    # The v1 layout is the key-wrapping one with the old associated data.
    aad = f"stk:secret:v1:{project}:{env}:{name}".encode()
    return sealing._encrypt(sealing._secret_aead(dek, project, env), aad, plain)


def _reseal(prefix: str, convert: Reseal) -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_secrets).where(_secrets.c.ciphertext.startswith(prefix))).all()
    if not rows:
        return
    keyring = op.get_context().config.attributes.get("keyring")
    if not isinstance(keyring, Keyring):
        raise RuntimeError(
            "migration 0004 re-seals the registry's secrets and needs the master keys: "
            "set STK_MASTER_KEYS or STK_MASTER_KEYS_FILE"
        )
    deks: dict[str, bytes] = {}
    for key in bind.execute(sa.select(_data_keys)).all():
        deks[key.project] = keyring.unwrap_dek(key.project, key.kid, key.wrapped)
    for row in rows:
        dek = deks.get(row.project)
        if dek is None:  # crypto-shredded: nothing can open it, so there is nothing to re-seal
            continue
        name = aad_name(row.kind, row.name)
        ciphertext = convert(dek, row.project, row.env, name, row.version, row.ciphertext)
        bind.execute(
            sa.update(_secrets)
            .where(
                _secrets.c.project == row.project,
                _secrets.c.env == row.env,
                _secrets.c.kind == row.kind,
                _secrets.c.name == row.name,
            )
            .values(ciphertext=ciphertext)
        )


def upgrade() -> None:
    _reseal("v1.", _v1_to_v2)


def downgrade() -> None:
    _reseal("v2.", _v2_to_v1)
