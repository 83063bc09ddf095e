"""What a rate limit adds to one S1 request, end to end, against the same tenant with its limit
skipped (issue 12: each feature at most 3 % of S1's CPU per request).

    .venv/bin/python -m bench.limit_cost [--rounds 100] [--batch 200] [--bytecodes]

`bench.features`' tenants in one app (in-process counting, no Redis): `shop` (S1, no limit),
`plain` (a second unlimited tenant: the control), `keyed` (a per-key limit), `every` (tenant +
key + address limits), and `keyed` once more with `Limiters.admit` answering None at once
(`keyed, skipped`: the same tenant, release and caches, only the limiter and its headers
missing). Each round runs a batch of each in a new random order; figures are process CPU time
per request, medians of the per-round differences. Against the skipped twin the difference is
the limiter's alone: a second tenant differs from `shop` by more than the limit costs.

`--bytecodes` counts instead, deterministically: Python calls (`sys.setprofile`, Python and C)
and bytecodes executed (`sys.settrace` opcode events) per request. In a request each bytecode of
the limiter costs about what an average one of S1's does, so this is the steadiest measure of
a change on a shared machine. Figures, not assertions: `bench/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from bench.features import world
from bench.profile_call import S1_BODY, database, one, serving

SKIPPED = "keyed, skipped"
# (name, tenant): what each batch runs.
CALLS = [
    ("shop", "shop"),
    ("plain", "plain"),
    ("keyed", "keyed"),
    (SKIPPED, "keyed"),
    ("every", "every"),
]
PAIRS = [
    ("plain", "shop", "control: a second unlimited tenant"),
    (SKIPPED, "shop", "the limited tenant, limit skipped"),
    ("keyed", SKIPPED, "per-key limit, against the same tenant skipped"),
    ("every", SKIPPED, "tenant + key + address, against keyed skipped"),
]


def skippable(app: Any) -> Callable[[bool], None]:
    """Switch the app's `Limiters.admit` between itself and a coroutine answering None at once
    (what the gate answers an unlimited tenant). Neither side pays a wrapper: a wrapper's
    `await` of the real limiter was counted as the limiter's (6 bytecodes a request)."""
    limits = app.runtime.limits

    async def skipped(*args: Any) -> None:
        return None

    def set_skip(value: bool) -> None:
        if value:
            limits.admit = skipped
        else:
            vars(limits).pop("admit", None)

    return set_skip


async def timed(rounds: int, batch: int) -> None:
    async with database() as url, serving() as app:
        tenants = await world(app, url)
        set_skip = skippable(app)
        spent: dict[str, list[float]] = {name: [] for name, _ in CALLS}
        shuffle = random.Random(12).shuffle
        for _ in range(rounds):
            order = CALLS[:]
            shuffle(order)
            for name, tenant in order:
                set_skip(name == SKIPPED)
                headers = tenants.headers[tenant]
                began = time.process_time()
                for _ in range(batch):
                    await one(app, headers, S1_BODY)
                spent[name].append((time.process_time() - began) / batch * 1e6)
        s1 = statistics.median(spent["shop"])
        print(f"S1 {s1:.1f} µs/request; {rounds} rounds, batches of {batch}, random order")
        for name, base, what in PAIRS:
            added = [x - y for x, y in zip(spent[name], spent[base], strict=True)]
            low, _, high = statistics.quantiles(added, n=4)
            middle = statistics.median(added)
            print(
                f"{name:>14} - {base:<14} {middle:+6.1f} µs {100 * middle / s1:+5.1f} % of S1"
                f"  (quartiles {low:+.1f} … {high:+.1f})  {what}"
            )


async def counted(requests: int) -> None:
    async with database() as url, serving() as app:
        tenants = await world(app, url)
        set_skip = skippable(app)
        found: dict[str, tuple[float, float]] = {}
        for name, tenant in CALLS:
            set_skip(name == SKIPPED)
            headers = tenants.headers[tenant]
            for _ in range(50):  # warm
                await one(app, headers, S1_BODY)
            counts = []
            for install in (_calls, _bytecodes):
                each = []
                for _ in range(requests):
                    seen = [0]
                    install(seen)
                    try:
                        await one(app, headers, S1_BODY)
                    finally:
                        sys.setprofile(None)
                        sys.settrace(None)
                    each.append(seen[0])
                counts.append(statistics.median(each))
            found[name] = (counts[0], counts[1])
        skipped = found[SKIPPED]
        print(f"the median request of {requests} each (against {SKIPPED!r}):")
        for name, (calls, codes) in found.items():
            print(
                f"{name:>14}  calls {calls:6.1f} ({calls - skipped[0]:+5.1f})"
                f"  bytecodes {codes:7.1f} ({codes - skipped[1]:+6.1f})"
            )


# Per request, the median: a request now and then does more (the API key's last use written
# once a minute, a buffer of request ids refilled), which a mean would spread over the others.
def _calls(seen: list[int]) -> None:
    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            seen[0] += 1

    sys.setprofile(profile)


def _bytecodes(seen: list[int]) -> None:
    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            seen[0] += 1
        return local

    def start(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return local

    sys.settrace(start)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--bytecodes", action="store_true", help="count calls and bytecodes")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.bytecodes:
        asyncio.run(counted(200))
    else:
        asyncio.run(timed(args.rounds, args.batch))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
