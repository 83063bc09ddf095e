"""docs/guide.md's examples are true: each pair of `http` blocks (a request, then its answer) is
sent in order to a Bridge serving the demo, and the answer must match (`…` matches any value;
`$NAME` is a value an earlier answer gave: a token, the user's id, a new notebook's id)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.bridge import Bridge
from support.world import World

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"
BLOCK = re.compile(r"^```http\n(.*?)^```", re.M | re.S)
ANY = "…"


@dataclass
class Message:
    start: str
    headers: dict[str, str]
    body: str


def parse(block: str) -> Message:
    head, _, body = block.partition("\n\n")
    start, *lines = head.strip().splitlines()
    headers = dict(line.split(": ", 1) for line in lines)
    return Message(start, headers, body.strip())


def examples() -> list[tuple[Message, Message]]:
    blocks = [parse(b) for b in BLOCK.findall(GUIDE.read_text())]
    assert len(blocks) % 2 == 0, "every request block is followed by its answer"
    return list(zip(blocks[::2], blocks[1::2], strict=True))


def matches(expected: Any, actual: Any) -> bool:
    if expected == ANY:
        return True
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual  # `false` is not `0`
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(matches(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def test_guide_has_examples() -> None:
    assert len(examples()) >= 15


async def test_every_example_answers_as_shown(bridge: Bridge) -> None:
    world = World(bridge)
    values = {"API_KEY": await world.demo("demo")}

    def fill(text: str) -> str:
        return re.sub(r"\$([A-Z_]+)", lambda m: values[m[1]], text)

    for request, answer in examples():
        method, path = request.start.split()
        headers = {name: fill(value) for name, value in request.headers.items()}
        body = fill(request.body).encode() if request.body else None
        r = await bridge.client.request(method, path, headers=headers, content=body)
        shown = f"{request.start} {request.body}"
        assert f"HTTP/1.1 {r.status_code}" == answer.start, (shown, r.text)
        for name, value in answer.headers.items():
            assert name.lower() in r.headers, (shown, name)
            assert value == ANY or r.headers[name] == fill(value), (shown, name)
        actual = r.json() if r.content else None
        expected = json.loads(fill(answer.body)) if answer.body else None
        assert matches(expected, actual), (shown, actual)
        # What later examples refer to.
        if isinstance(actual, dict):
            if "user" in actual:
                values["USER_ID"] = actual["user"]["id"]
            if "access_token" in actual:
                values["ACCESS_TOKEN"] = actual["access_token"]
                values["REFRESH_TOKEN"] = actual["refresh_token"]
        if body is not None and b'"db/notebooks/insert"' in body:
            values["NOTEBOOK_ID"] = actual["data"]["id"]
