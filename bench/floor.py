"""The floor: the least our stack (FastAPI on uvicorn + asyncpg) can do for the same request.

`POST /call` parses the JSON body, picks the tenant's pool by `Host`, runs exactly the SQL the
Bridge runs for that route, and answers `{"data": ...}`. No tenant resolution, credentials,
permissions, limits or logging: that is the Bridge's overhead, measured as a ratio to this.

Served like `stk-bridge serve`: one uvicorn worker, uvloop, httptools, no access log, no proxy
headers. One raw asyncpg pool per tenant host, as large as the Bridge's per-tenant pools. The
pools skip asyncpg's reset query on release, as the Bridge's own pools do: otherwise the floor
would pay a second round trip per request that the Bridge does not.

Configured by the JSON file named in BENCH_FLOOR_CONFIG (written by the harness):
`{"tenants": {host: dsn}, "poolSize": n, "statementTimeoutMs": n,
  "routes": {path: {"sql": ..., "args": [arg, ...], "one": bool}}}` where an arg is a key path
into the body (`["params", "id"]`), `{"const": value}`, or `"ulid"` (a fresh id, as inserts get).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response
from ulid import ULID

Getter = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Route:
    sql: str
    args: tuple[Getter, ...]
    one: bool  # answer the first row (insert) rather than the list


def _getter(spec: Any) -> Getter:
    if spec == "ulid":
        return lambda _body: str(ULID())
    if isinstance(spec, dict):
        value = spec["const"]
        return lambda _body: value
    keys = tuple(spec)

    def get(body: Any) -> Any:
        for key in keys:
            body = body[key]
        return body

    return get


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's reset query (see the module docstring)."""


def create() -> FastAPI:
    config = orjson.loads(Path(os.environ["BENCH_FLOOR_CONFIG"]).read_bytes())
    routes = {
        path: Route(spec["sql"], tuple(_getter(a) for a in spec["args"]), spec.get("one", False))
        for path, spec in config["routes"].items()
    }
    pools: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        settings = {
            "application_name": "stk-floor",
            "statement_timeout": str(config["statementTimeoutMs"]),
        }
        for host, dsn in config["tenants"].items():
            pools[host] = await asyncpg.create_pool(
                dsn,
                min_size=0,  # connections open on demand, like the Bridge's pools
                max_size=config["poolSize"],
                reset=_no_reset,
                server_settings=settings,
            )
        try:
            yield
        finally:
            await asyncio.gather(*(pool.close() for pool in pools.values()))

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    @app.post("/call")
    async def call(request: Request) -> Response:
        body = orjson.loads(await request.body())
        route = routes[body["path"]]
        pool = pools[request.headers["host"].partition(":")[0]]
        rows = await pool.fetch(route.sql, *[get(body) for get in route.args])
        data = dict(rows[0]) if route.one else [dict(row) for row in rows]
        return Response(orjson.dumps({"data": data}), media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="benchmark floor server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    uvicorn.run(
        "bench.floor:create",
        factory=True,
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
