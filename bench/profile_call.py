"""CPU per `POST /call` request, driven straight through the ASGI app (no HTTP, no load tool).

    .venv/bin/python -m bench.profile_call [--requests 5000] [--call s1|s2|upload_sign]
                                           [--profile] [--sort cumulative|tottime|file]

Steadier than req/s on a shared machine, and the way to see where a request's CPU goes:
`--profile` prints cProfile's top functions. `--call upload_sign` (S8's storage call) and
`--call s2` (S2's CRUD select with an end-user token) are measured alternating with S1 in the
same process, and both are printed. Uses a throwaway PostgreSQL database seeded like the bench's
(bench/project) and an in-memory KV store; the registry is SQLite in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import os
import pstats
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.setup import SEED, STORE_SECRET, USER, USER_NOTES
from bridge import logs
from bridge.app import App, create_app
from tenancy.keyring import Keyring
from tenancy.releases.compile.compiler import load_project_dir
from tenancy.settings import load_settings

PG = os.environ.get("STK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PROJECT = Path(__file__).parent / "project"
S1_BODY = b'{"path":"logics/items/get","params":{"id":42}}'
S2_BODY = (
    b'{"path":"db/notes/select","params":{"where":{"pinned":false},'
    b'"orderBy":{"created_at":"desc"},"limit":10}}'
)
ROUNDS = 5  # --call upload_sign: alternating rounds of each call
TOKEN = "profile-admin-token-0123456789abcdef"


async def main(requests: int, call: str, profile: bool, sort: str = "cumulative") -> None:
    async with database() as url, serving() as app:
        await measure(app, url, requests, call, profile, sort)


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    """A throwaway PostgreSQL database seeded like the bench's: its URL, dropped on exit."""
    name = f"stk_profile_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = PG.rpartition("/")[0] + "/" + name
    try:
        tenant = await asyncpg.connect(url)
        await tenant.execute(SEED.read_text())
        await tenant.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def serving(keyring: Keyring | None = None, **overrides: object) -> AsyncIterator[App]:
    """The real app, started, with a SQLite registry in a temp dir and an in-memory KV store;
    `overrides` are further settings (`redis_url=...`), `keyring` the master keys (default: new
    ones). Access lines go to memory."""
    data = Path(tempfile.mkdtemp())
    values: dict[str, Any] = {
        "data_dir": data,
        "kv_url": "memory://",
        "host_suffix": "api.example.com",
        "log_format": "json",
        **overrides,
    }
    settings = load_settings(**values)
    logs.configure("info", "json", settings.log_flush_ms / 1000)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(io.StringIO())  # the production JSON path, written to memory
    keys = keyring or Keyring.parse(Keyring.generate_entry("p"))
    app = create_app(settings, keys, [TOKEN], migrate=True)
    async with app.lifespan():
        yield app


async def measure(app: App, url: str, requests: int, call: str, profile: bool, sort: str) -> None:
    key, key_id = await register(app, url)
    bodies = {"s1": S1_BODY}
    credentials = {"s1": (b"x-santokit-api-key", key.encode())}
    if call == "upload_sign":
        bodies[call] = upload_sign_body(key_id)
        credentials[call] = credentials["s1"]
    elif call == "s2":
        bodies[call] = S2_BODY
        token = await end_user(app, url)
        credentials[call] = (b"authorization", b"Bearer " + token.encode())
    for name, body in bodies.items():
        for _ in range(300):  # warm: pool open, statement prepared, caches filled
            await one(app, request_headers(credentials[name], body), body)
    spent = dict.fromkeys(bodies, 0.0)
    profiler = cProfile.Profile() if profile else None
    rounds = ROUNDS if len(bodies) > 1 else 1
    for _ in range(rounds):
        for name, body in bodies.items():
            headers = request_headers(credentials[name], body)
            watch = profiler if name == call else None
            started = time.process_time()
            if watch is not None:
                watch.enable()
            for _ in range(requests // rounds):
                await one(app, headers, body)
            if watch is not None:
                watch.disable()
            spent[name] += time.process_time() - started
    for name in bodies:
        per = spent[name] / (requests // rounds * rounds) * 1e6
        print(f"{name}: {per:.1f} µs CPU per request ({requests} requests, in process)")
    if len(bodies) > 1:
        print(f"ratio {call} / s1: {spent[call] / spent['s1']:.2f}")
    if profiler and sort == "file":
        by_file(pstats.Stats(profiler), requests // rounds * rounds)
    elif profiler:
        pstats.Stats(profiler).sort_stats(sort).print_stats(40)


def upload_sign_body(key_id: str) -> bytes:
    """S8's storage call, under the key's own folder (the bench project's storage policy)."""
    return (
        b'{"path":"storage/files/upload_sign","params":{"key":"uploads/%s/p.png",'
        b'"contentType":"image/png","contentLength":1234}}' % key_id.encode()
    )


def by_file(stats: pstats.Stats, requests: int) -> None:
    """Own time and calls per request, summed per source file: which layer a request's CPU goes
    to, steadier across runs than one function's share."""
    spent: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for (path, _, _), (_, ncalls, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        name = path.split("site-packages/")[-1].split("python3.11/")[-1]
        name = name.removeprefix(str(Path(__file__).parent.parent) + "/")
        spent[name] += tottime
        calls[name] += ncalls
    total = sum(spent.values())
    for name, seconds in spent.most_common(40):
        share = 100 * seconds / total
        print(f"{share:5.1f} %  {calls[name] / requests:6.1f} calls/request  {name}")


def request_headers(
    credential: tuple[bytes, bytes], body: bytes, project: str = "shop"
) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", f"{project}.api.example.com".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        credential,
    ]


async def register(
    app: Any,
    url: str,
    project: str = "shop",
    files: dict[str, str] | None = None,
    limits: dict[str, int] | None = None,
) -> tuple[str, str]:
    """A tenant (`shop`) with S1's logic and S8's storage (dummy store keys), its env `prod`:
    (API key, key id). `files` are added to (or replace) the bench project's; `limits` are the
    project's admin limits (`docs/admin.md`)."""
    transport = httpx.ASGITransport(app=app)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://x", headers=auth) as c:
        base = "/admin/v1/projects"
        (await c.post(base, json={"id": project})).raise_for_status()
        if limits:
            (await c.patch(f"{base}/{project}", json={"limits": limits})).raise_for_status()
        env = f"{base}/{project}/envs/prod"
        (await c.put(f"{env}/connections/main", json={"url": url})).raise_for_status()
        published = {**load_project_dir(PROJECT), **(files or {})}
        (await c.post(f"{env}/releases", json={"files": published})).raise_for_status()
        secret = {"value": STORE_SECRET}
        (await c.put(f"{env}/secrets/BENCH_S3", json=secret)).raise_for_status()
        made = await c.post(f"{env}/api-keys", json={"name": "p", "roles": ["writer"]})
        answer = made.raise_for_status().json()
        return str(answer["apiKey"]), str(answer["keyId"])


async def end_user(app: Any, url: str) -> str:
    """S2's end user (signup + login, as bench/setup.py does) with their notes: the access token."""
    transport = httpx.ASGITransport(app=app)
    headers = {"Host": "shop.api.example.com"}
    async with httpx.AsyncClient(transport=transport, base_url="http://x", headers=headers) as c:
        (await c.post("/auth/signup", json=USER)).raise_for_status()
        answer = (await c.post("/auth/login", json=USER)).raise_for_status().json()
    tenant = await asyncpg.connect(url)
    await tenant.execute(
        "INSERT INTO notes (id, owner_id, title, pinned, created_at) "
        "SELECT 'u' || lpad(i::text, 25, '0'), $1, 'mine ' || i, i % 4 = 0, "
        "timestamptz '2024-06-01' + i * interval '1 minute' "
        f"FROM generate_series(1, {USER_NOTES}) AS i",
        answer["user"]["id"],
    )
    await tenant.close()
    return str(answer["access_token"])


async def one(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> dict[str, Any]:
    """One `POST /call` through the app (200 or AssertionError): its scope, as the app left it
    (`scope["stk"]` is the request's state)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/call",
        "raw_path": b"/call",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
        # As `stk-bridge serve`'s protocol marks it: the body's deadline is the server's.
        "extensions": {"stk.read_deadline": {}},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent
    return scope


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--call", choices=("s1", "s2", "upload_sign"), default="s1")
    parser.add_argument("--profile", action="store_true", help="cProfile the --call requests")
    parser.add_argument("--sort", choices=("cumulative", "tottime", "file"), default="cumulative")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.call, args.profile, args.sort))
