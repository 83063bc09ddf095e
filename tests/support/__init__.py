"""What the tests share, one module per kind of helper (docs/architecture.md "Tests").

`tests/conftest.py` loads the modules that define fixtures through `pytest_plugins`; tests import
plain helpers from here (`from support.bridge import running_bridge`), never from `conftest`.

- `services`: skip-or-fail when a service is missing; PostgreSQL databases and Redis prefixes
  per test; the registry and KV backends the contract suites run over.
- `s3`: the local S3-compatible servers (`tests/objectstore/`), once per session.
- `bridge`: the app with its lifespan over httpx's ASGI transport, and the admin token.
- `world`: the one builder of tenants through the real admin API (projects, connections,
  releases, API keys) and calls against them; `auth` and `crud` are the scenarios built with it.
- `processes`: real `stk-bridge` processes (free ports, bounded waits, always stopped); tests
  that start them are marked `slow`.
- `poolers`: Debian's PgBouncer in front of the test PostgreSQL, per test, in session or
  transaction mode (`make poolers` installs it).

A new kind of helper gets its own module here (a fault injector such as a controllable TCP proxy
belongs in `faults.py`); a module with fixtures is added to `pytest_plugins` in `conftest.py`.
"""
