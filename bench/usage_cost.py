"""CPU that usage metering adds to one request (issue 11: at most 3 % of S1's CPU per request).

    .venv/bin/python -m bench.usage_cost            # then compare with:
    .venv/bin/python -m bench.profile_call          # S1's CPU per request

Runs the two calls every metered `/call` makes (`Usage.request` from the HTTP layer,
`Usage.call` from the pipeline) on one tenant, in a loop, without I/O (nothing is flushed).
"""

from __future__ import annotations

import time

from tenancy.principal import Tenant
from tenancy.usage import Usage

REQUESTS = 200_000


def main() -> None:
    usage = Usage(sessions=None, flush_seconds=3600)  # type: ignore[arg-type]  # never flushed
    tenant, rows = Tenant("shop", "prod"), [{"n": 1}]
    began = time.process_time()
    for _ in range(REQUESTS):
        usage.request(tenant, "logics", 200, 40, 120)
        usage.call(tenant, "logics", "", rows, 0.0004)
    spent = time.process_time() - began
    print(f"usage metering: {spent / REQUESTS * 1e6:.2f} µs CPU per request ({REQUESTS} requests)")


if __name__ == "__main__":
    main()
