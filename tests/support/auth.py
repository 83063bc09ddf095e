"""The end-user auth scenario, built with `support.world.World` (home project `alpha`):

- `alpha` (envs prod + dev): prod lets users sign up (extra role `writer`), access TTL 120 s,
  CORS origin `https://app.alpha.test`; dev keeps signup disabled, CORS `http://localhost:5173`.
- `beta` (prod): signup enabled, no CORS.
- `gamma` (prod): no `config/auth.yaml` at all (the defaults: signup disabled, no origins).

Each env serves `logics/whoami` (authenticated; answers `:auth.sub`) and `logics/writers`
(role `writer`) from its own empty SQLite database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from support.bridge import running_bridge
from support.services import registry_database
from support.world import World, empty_sqlite

LOGICS = {
    "logics/whoami.sql": "---\nauth: authenticated\n---\nSELECT :auth.sub AS sub\n",
    "logics/writers.sql": "---\nroles: [writer]\n---\nSELECT 1 AS ok\n",
}
ALPHA_PROD_AUTH = """
signup: {enabled: true, roles: [writer]}
tokens: {accessTtlSeconds: 120, refreshTtlSeconds: 3600}
cors: {origins: ["https://app.alpha.test"]}
"""
ALPHA_DEV_AUTH = 'cors: {origins: ["http://localhost:5173"]}\n'
BETA_AUTH = "signup: {enabled: true}\n"
RELEASES = {
    ("alpha", "prod"): ALPHA_PROD_AUTH,
    ("alpha", "dev"): ALPHA_DEV_AUTH,
    ("beta", "prod"): BETA_AUTH,
    ("gamma", "prod"): None,
}


def auth_files(auth: str | None) -> dict[str, str]:
    """The scenario's logics, with `config/auth.yaml` when `auth` is not None."""
    return dict(LOGICS) | ({"config/auth.yaml": auth} if auth is not None else {})


async def publish_auth(world: World, project: str, env: str, auth: str | None) -> None:
    """(Re)publish one env of the scenario on its own empty SQLite database."""
    url = empty_sqlite(world.bridge.data_dir / f"{project}-{env}.db")
    await world.tenant(project, env, url, auth_files(auth))


async def whoami(world: World, headers: dict[str, str]) -> httpx.Response:
    """`logics/whoami` with exactly `headers` (no Host unless they carry one)."""
    return await world.call("logics/whoami", headers=headers)


@asynccontextmanager
async def auth_world(
    data_dir: Path, registry: str = "sqlite", **settings: Any
) -> AsyncIterator[World]:
    """The three tenants on a Bridge whose registry is SQLite or PostgreSQL (`settings` as
    `STK_*` overrides)."""
    async with (
        registry_database(registry) as url,
        running_bridge(data_dir, url, **settings) as bridge,
    ):
        world = World(bridge, home="alpha")
        for project, envs in (("alpha", ["prod", "dev"]), ("beta", ["prod"]), ("gamma", ["prod"])):
            await world.project(project, envs=envs)
        for (project, env), auth in RELEASES.items():
            await publish_auth(world, project, env, auth)
        yield world
