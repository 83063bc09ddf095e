"""registry baseline

Revision ID: 0001
Revises:
Create Date: 2026-11-27 15:13:43.619450
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "audit_log",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=True),
        sa.Column("env", sa.String(length=31), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_project_id", ["project", "id"], unique=False)
        batch_op.create_index("ix_audit_log_ts", ["ts"], unique=False)

    op.create_table(
        "projects",
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("default_env", sa.String(length=31), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
    )
    op.create_table(
        "data_keys",
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("kid", sa.String(length=32), nullable=False),
        sa.Column("wrapped", sa.Text(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project"],
            ["projects.id"],
            name=op.f("fk_data_keys_project_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project", name=op.f("pk_data_keys")),
    )
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_data_keys_kid"), ["kid"], unique=False)

    op.create_table(
        "envs",
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=31), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project"], ["projects.id"], name=op.f("fk_envs_project_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project", "id", name=op.f("pk_envs")),
    )
    op.create_table(
        "project_hosts",
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(
            ["project"],
            ["projects.id"],
            name=op.f("fk_project_hosts_project_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("host", name=op.f("pk_project_hosts")),
    )
    with op.batch_alter_table("project_hosts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_project_hosts_project"), ["project"], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("env", sa.String(length=31), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["project", "env"],
            ["envs.project", "envs.id"],
            name=op.f("fk_api_keys_project_envs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index("ix_api_keys_project_env", ["project", "env"], unique=False)

    op.create_table(
        "end_users",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("env", sa.String(length=31), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_lower", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project", "env"],
            ["envs.project", "envs.id"],
            name=op.f("fk_end_users_project_envs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_end_users")),
        sa.UniqueConstraint("project", "env", "email_lower", name="uq_end_users_email"),
    )
    op.create_table(
        "secrets",
        sa.Column("project", sa.String(length=63), nullable=False),
        sa.Column("env", sa.String(length=31), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project", "env"],
            ["envs.project", "envs.id"],
            name=op.f("fk_secrets_project_envs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project", "env", "kind", "name", name=op.f("pk_secrets")),
    )


def downgrade() -> None:

    op.drop_table("secrets")
    op.drop_table("end_users")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_project_env")

    op.drop_table("api_keys")
    with op.batch_alter_table("project_hosts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_hosts_project"))

    op.drop_table("project_hosts")
    op.drop_table("envs")
    with op.batch_alter_table("data_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_keys_kid"))

    op.drop_table("data_keys")
    op.drop_table("projects")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_ts")
        batch_op.drop_index("ix_audit_log_project_id")

    op.drop_table("audit_log")
