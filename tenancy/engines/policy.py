"""Which tenant connection URLs may be registered (`docs/security.md`, connection URLs).

A tenant's URL is run with the Bridge's own network position and file access, so a URL naming
the registry database (every tenant's users and sealed secrets), a unix socket (local trust
authentication), a file outside the tenant-data directory, or an address the operator did not
allow is refused with 400 before anything connects. Checked at registration (admin API and
`dev`); the connection check's answers are made uniform in the drivers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tenancy.engines import sqlite
from tenancy.errors import BadRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PG_PORT = 5432
_HOST_NAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"
)
RESOLVE_TIMEOUT_S = 2.0
# Query parameters a tenant URL may carry. Others (host=, passfile=, sslkey=...) name sockets or
# local files: they would reopen what this policy closes.
PG_PARAMETERS = frozenset({"sslmode", "target_session_attrs", "user", "password"})


@dataclass(frozen=True, slots=True)
class PgTarget:
    """Where a PostgreSQL URL connects: (host, port) pairs and the database name."""

    hosts: tuple[tuple[str, int], ...]
    database: str


def pg_target(url: str, *, strict: bool = True) -> PgTarget:
    """Parse a `postgresql://` URL as asyncpg would; 400 for what the policy cannot judge.
    `strict=False` reads the operator's registry URL: any parameter, the user as database."""
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
    except ValueError:
        raise BadRequest("Invalid connection URL") from None
    unknown = sorted(set(query) - PG_PARAMETERS)
    if unknown and strict:
        # Never the name: a malformed URL can put part of its password there.
        raise BadRequest("Connection URL parameters allowed: " + ", ".join(sorted(PG_PARAMETERS)))
    database = unquote(parts.path.lstrip("/"))
    if not database and not strict:
        database = unquote(parts.netloc.rpartition("@")[0].partition(":")[0])
    if not database:
        raise BadRequest("A PostgreSQL connection URL must name its database")
    hosts = []
    for spec in parts.netloc.rpartition("@")[2].split(","):
        host, port = _host_port(spec)
        if not host or host.startswith(("/", "@")):
            raise BadRequest("Connections over a unix socket are not allowed: name a TCP host")
        hosts.append((host.lower().rstrip("."), port))
    return PgTarget(tuple(hosts), database)


def _host_port(spec: str) -> tuple[str, int]:
    spec = unquote(spec)
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = rest.removeprefix(":")
    elif spec.count(":") == 1:
        host, _, port = spec.partition(":")
    else:
        host, port = spec, ""
    if not port:
        return host, PG_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadRequest("Invalid port in connection URL")
    return host, int(port)


def parse_allow(text: str | None) -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
    """`STK_TENANT_DB_ALLOW`: comma-separated CIDRs, addresses and host names."""
    networks: list[IPNetwork] = []
    names: set[str] = set()
    for entry in (e.strip() for e in (text or "").split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            if not _HOST_NAME.fullmatch(entry):
                raise ValueError(
                    f"{entry!r} is neither a CIDR, an address nor a host name"
                ) from None
            names.add(entry.lower().rstrip("."))
    return tuple(networks), frozenset(names)


def _local(address: IPAddress) -> bool:
    """This machine, whichever spelling: loopback or the unspecified address."""
    return address.is_loopback or address.is_unspecified


async def _addresses(host: str, port: int) -> frozenset[IPAddress]:
    """Resolved addresses; none when the name does not resolve (it cannot connect either)."""
    try:
        return frozenset({ipaddress.ip_address(host)})
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return frozenset()
    return frozenset(ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos)


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    registry_url: str
    tenant_data_dir: Path
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_names: frozenset[str] = frozenset()

    async def check(self, url: str, engine: str) -> None:
        """Raise 400 unless `url` (of `engine`, already known valid) may be registered."""
        if engine == "sqlite":
            self._check_file(sqlite.path_of(url))
        else:
            await self._check_server(pg_target(url))

    def _check_file(self, path: str) -> None:
        resolved = Path(path).resolve()  # symlinks followed: a link to the registry is the registry
        registry = self._registry_file()
        if registry is not None and resolved == registry:
            raise BadRequest("The connection URL points at the Bridge's registry")
        if not resolved.is_relative_to(self.tenant_data_dir.resolve()):
            raise BadRequest(
                "A SQLite database must be a file in the tenant-data directory"
                " (STK_TENANT_DATA_DIR)"
            )

    def _registry_file(self) -> Path | None:
        if not self.registry_url.startswith("sqlite"):
            return None
        path = unquote(self.registry_url.partition(":///")[2].partition("?")[0])
        return Path(path).resolve() if path and path != ":memory:" else None

    async def _check_server(self, target: PgTarget) -> None:
        resolved = [(host, port, await _addresses(host, port)) for host, port in target.hosts]
        if self.allow_networks or self.allow_names:
            for host, _, addresses in resolved:
                if not self._allowed(host, addresses):
                    raise BadRequest(
                        "The host is not an allowed tenant database host (STK_TENANT_DB_ALLOW)"
                    )
        registry = await self._registry_server()
        if registry is None or registry[1] != target.database:
            return
        for _, port, addresses in resolved:
            for r_port, r_addresses in registry[0]:
                if port == r_port and _same_server(addresses, r_addresses):
                    raise BadRequest("The connection URL points at the Bridge's registry")

    def _allowed(self, host: str, addresses: Iterable[IPAddress]) -> bool:
        if host in self.allow_names:
            return True
        found = list(addresses)
        return bool(found) and all(
            any(a in network for network in self.allow_networks) for a in found
        )

    async def _registry_server(
        self,
    ) -> tuple[list[tuple[int, frozenset[IPAddress]]], str] | None:
        if not self.registry_url.startswith("postgresql"):
            return None
        try:
            target = pg_target(self.registry_url.replace("+asyncpg", "", 1), strict=False)
        except BadRequest:  # the registry on a socket: tenant sockets are refused anyway
            return None
        servers = [(port, await _addresses(host, port)) for host, port in target.hosts]
        return servers, target.database


def _same_server(a: frozenset[IPAddress], b: frozenset[IPAddress]) -> bool:
    return bool(a & b) or (any(map(_local, a)) and any(map(_local, b)))
