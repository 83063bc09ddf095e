"""Tenant resolution (`docs/tenancy.md`): request hints and credentials → (Tenant, Principal).

Two steps, both pure functions of the hints plus lookups behind the `Lookups` protocol: `locate`
reads the hints alone (CORS needs no more), `resolve` adds the credential. Their answer is fixed
for the rest of the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

from tenancy import credentials
from tenancy.errors import BadRequest, Forbidden, NotFound, Unauthorized
from tenancy.ids import is_env_id, is_hostname, is_project_id
from tenancy.principal import ANONYMOUS, Principal, Tenant
from tenancy.registry.records import ApiKeyRecord, ProjectRecord

NOT_FOUND = "Project or environment not found"


class Hints(NamedTuple):
    """What the request says about its tenant, already extracted from headers."""

    host: str | None = None
    project: str | None = None
    env: str | None = None
    api_key: str | None = None
    bearer: str | None = None
    origin: str | None = None  # a browser's `Origin`: not a tenant hint, checked on admission


@dataclass(frozen=True, slots=True)
class BasePath:
    """The project (and env) a path-based base URL names: `/p/<project>[/<env>]/...`
    (`docs/tenancy.md`, path-based base URLs). Extracted by the HTTP layer, unchecked."""

    project: str
    env: str | None = None


class Located(NamedTuple):
    """What the hints alone name, before any credential is looked at: the project (and its record,
    None when unknown) and the env. Shared by resolution and CORS, so neither looks twice."""

    project: str | None
    env: str | None
    record: ProjectRecord | None

    def require(self) -> ProjectRecord:
        """The named project as a request without credential resolves it: 400 when the hints
        name none; 404 when it is unknown, disabled, or has no env of the name given."""
        if self.project is None:
            raise BadRequest("Project could not be resolved")
        record = self.record
        if record is None or not record.active or (self.env and self.env not in record.envs):
            raise NotFound(NOT_FOUND)
        return record


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """An active API key as resolution checks it, derived once per cached key (`docs/tenancy.md`):
    its secret's SHA-256 as bytes, and the tenant and caller it stands for."""

    digest: bytes
    tenant: Tenant
    principal: Principal

    @staticmethod
    def of(record: ApiKeyRecord) -> ActiveKey | None:
        """None for a revoked key: it resolves like an unknown one."""
        if record.status != "active":
            return None
        roles = frozenset((*record.roles, "authenticated", "public"))
        return ActiveKey(
            credentials.stored_digest(record.secret_hash),
            Tenant(record.project, record.env),
            Principal("api_key", record.key_id, roles),
        )


class Resolved(NamedTuple):
    tenant: Tenant
    principal: Principal
    project: ProjectRecord


class Lookups(Protocol):
    async def project(self, project_id: str) -> ProjectRecord | None: ...

    async def project_for_host(self, host: str) -> str | None: ...

    async def api_key(self, key_id: str) -> ActiveKey | None: ...

    async def verify_bearer(self, project_id: str | None, token: str) -> tuple[Tenant, Principal]:
        """Verify with `project_id`'s keys (the claimed project's if None), decoding the token
        once; raise Unauthorized, or Forbidden for another project's valid token."""
        ...


def host_hint(host: str | None, suffix: str | None) -> str | None:
    """`shop.api.example.com[:port]` → `shop` (exactly one label before the suffix)."""
    if not host or not suffix:
        return None
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower().rstrip(".")
    label, dot, rest = name.partition(".")
    if dot and rest == suffix and label:
        return label
    return None


async def locate(
    hints: Hints, lookups: Lookups, host_suffix: str | None, base: BasePath | None = None
) -> Located:
    """The hints alone (no credential), the path-based base URL among them: malformed or
    conflicting hints are 400 here."""
    from_host = host_hint(hints.host, host_suffix)
    if from_host is None and hints.host:
        from_host = await _custom_host(hints.host, lookups)
    if hints.project is not None and not is_project_id(hints.project):
        raise BadRequest("Invalid project id in X-Santokit-Project")
    if from_host is not None and not is_project_id(from_host):
        raise BadRequest("Invalid project id in Host")
    from_path = base.project if base is not None else None
    if from_path is not None and not is_project_id(from_path):
        raise BadRequest("Invalid project id in path")
    if len({p for p in (from_host, hints.project, from_path) if p}) > 1:
        raise BadRequest("Conflicting project hints")
    if hints.env is not None and not is_env_id(hints.env):
        raise BadRequest("Invalid env id in X-Santokit-Env")
    path_env = base.env if base is not None else None
    if path_env is not None and not is_env_id(path_env):
        raise BadRequest("Invalid env id in path")
    if path_env and hints.env and path_env != hints.env:
        raise BadRequest("Conflicting env hints")
    hint = from_host or hints.project or from_path
    env = hints.env or path_env
    return Located(hint, env, await lookups.project(hint) if hint else None)


async def resolve(located: Located, hints: Hints, lookups: Lookups) -> Resolved:
    """`located` plus the request's credential (API key, else bearer token, else anonymous)."""
    hint = located.project
    if hints.api_key is not None:
        tenant, principal = await _by_api_key(hints.api_key, lookups)
        if (hint and hint != tenant.project) or (located.env and located.env != tenant.env):
            raise Forbidden("API key is not valid for this project or environment")
    elif hints.bearer is not None:
        tenant, principal = await lookups.verify_bearer(hint, hints.bearer)
        if located.env and located.env != tenant.env:
            raise Forbidden("Token is not valid for this project or environment")
    else:
        project = located.require()
        return Resolved(Tenant(project.id, located.env or project.default_env), ANONYMOUS, project)

    found = located.record if tenant.project == hint else await lookups.project(tenant.project)
    if found is None or not found.active or tenant.env not in found.envs:
        raise NotFound(NOT_FOUND)
    return Resolved(tenant, principal, found)


async def _by_api_key(text: str, lookups: Lookups) -> tuple[Tenant, Principal]:
    parsed = credentials.parse_api_key(text)
    if parsed is None:
        raise Unauthorized("Invalid API key")
    key_id, secret = parsed
    key = await lookups.api_key(key_id)
    if key is None or not credentials.secret_matches(secret, key.digest):
        raise Unauthorized("Invalid API key")
    return key.tenant, key.principal


async def _custom_host(host: str, lookups: Lookups) -> str | None:
    """Only well-formed names are looked up: garbage is no hint, and never reaches the registry."""
    name = host.rsplit(":", 1)[0].lower().rstrip(".") if not host.endswith("]") else host
    return await lookups.project_for_host(name) if is_hostname(name) else None
