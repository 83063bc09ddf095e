"""Registry schema: the control-plane state of every tenant.

Secret values (connection URLs, named secrets, signing keys) are stored only as `v1.` ciphertexts
under the project's data key; the data key itself only wrapped by a master key.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both engines (SQLite would otherwise hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    default_env: Mapped[str] = mapped_column(String(31))
    limits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ProjectHost(Base):
    """Custom hosts, one row each so a host can belong to only one project."""

    __tablename__ = "project_hosts"

    host: Mapped[str] = mapped_column(String(253), primary_key=True)
    project: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)


class Env(Base):
    __tablename__ = "envs"

    project: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(31), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DataKey(Base):
    """The project's data key, wrapped by master key `kid`. Deleting this row crypto-shreds."""

    __tablename__ = "data_keys"

    project: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    kid: Mapped[str] = mapped_column(String(32), index=True)
    wrapped: Mapped[str] = mapped_column(Text)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Secret(Base):
    """A sealed value. `kind` is `connection`, `secret` or `signing`; `name` is unique per kind."""

    __tablename__ = "secrets"
    __table_args__ = (
        ForeignKeyConstraint(["project", "env"], ["envs.project", "envs.id"], ondelete="CASCADE"),
    )

    project: Mapped[str] = mapped_column(String(63), primary_key=True)
    env: Mapped[str] = mapped_column(String(31), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        ForeignKeyConstraint(["project", "env"], ["envs.project", "envs.id"], ondelete="CASCADE"),
        Index("ix_api_keys_project_env", "project", "env"),
    )

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    project: Mapped[str] = mapped_column(String(63))
    env: Mapped[str] = mapped_column(String(31))
    name: Mapped[str] = mapped_column(String(128))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="active")
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class EndUser(Base):
    __tablename__ = "end_users"
    __table_args__ = (
        ForeignKeyConstraint(["project", "env"], ["envs.project", "envs.id"], ondelete="CASCADE"),
        UniqueConstraint("project", "env", "email_lower", name="uq_end_users_email"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    project: Mapped[str] = mapped_column(String(63))
    env: Mapped[str] = mapped_column(String(31))
    email: Mapped[str] = mapped_column(String(320))
    email_lower: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(Text)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RefreshToken(Base):
    """Only the SHA-256 of an opaque refresh token is stored. Tokens rotated from one login share
    a `family`, so replaying a consumed one can revoke the whole chain."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        ForeignKeyConstraint(["project", "env"], ["envs.project", "envs.id"], ondelete="CASCADE"),
        Index("ix_refresh_tokens_family", "family"),
        Index("ix_refresh_tokens_user_id", "user_id"),
    )

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(63))
    env: Mapped[str] = mapped_column(String(31))
    user_id: Mapped[str] = mapped_column(ForeignKey("end_users.id", ondelete="CASCADE"))
    family: Mapped[str] = mapped_column(String(26))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AdminToken(Base):
    """A scoped admin token (`docs/admin.md`): only the SHA-256 of its secret is kept. `project`
    NULL means every project; a project's tokens go with it (a new project of the same id does
    not inherit them)."""

    __tablename__ = "admin_tokens"

    token_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    project: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class UsageCounter(Base):
    """Usage totals per (project, env, UTC day, metric), added to by every replica's flushes
    (`tenancy/usage.py`). No foreign key: like the audit log, usage outlives its project."""

    __tablename__ = "usage"

    project: Mapped[str] = mapped_column(String(63), primary_key=True)
    env: Mapped[str] = mapped_column(String(31), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    metric: Mapped[str] = mapped_column(String(48), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditEntry(Base):
    """Append-only. No foreign key: entries outlive the projects they describe."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_project_id", "project", "id"),
        Index("ix_audit_log_ts", "ts"),
    )

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    project: Mapped[str | None] = mapped_column(String(63), nullable=True)
    env: Mapped[str | None] = mapped_column(String(31), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PublishIntent(Base):
    """A release pointer move under way (`tenancy/outbox.py`): written before the manifest moves,
    marked audited in the transaction that writes its audit entry, deleted once announced. No
    foreign key: an intent of a project deleted meanwhile is simply dropped by the drain."""

    __tablename__ = "publish_outbox"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    project: Mapped[str] = mapped_column(String(63))
    env: Mapped[str] = mapped_column(String(31))
    # The move's `publishedAt` in the manifest: how a drain tells whether the move happened.
    published_at: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    audited: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
