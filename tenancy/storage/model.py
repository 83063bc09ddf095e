"""The storage part of a loaded release: buckets, and policies ready to match (docs/storage.md).

Built once per loaded release from the compiled JSON (`StorageModel.from_compiled`): patterns
become per-segment matchers, conditions become compiled CEL gates, and the policies are sorted
most specific first (fewest wildcard segments, then declaration order), so a request walks them
in order and takes the first that matches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tenancy.errors import NotFound
from tenancy.releases.gates import Gate

DEFAULT_REGION_ENDPOINT = "https://s3.{region}.amazonaws.com"


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket of `storage.yaml`: where it lives and which tenant secret signs for it."""

    name: str
    store_bucket: str
    region: str
    endpoint: str  # scheme://host[:port], the provider default when the file names none
    credentials: str
    path_style: bool
    # Derived once, for the signer: where URLs point and what the store sees as Host (signed).
    origin: str = field(init=False, compare=False)  # scheme://host[:port] of the object URLs
    host: str = field(init=False, compare=False)
    path_prefix: str = field(init=False, compare=False)  # "/<bucket>" with pathStyle, else ""

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        host = parts.netloc if self.path_style else f"{self.store_bucket}.{parts.netloc}"
        object.__setattr__(self, "origin", f"{parts.scheme}://{host}")
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "path_prefix", f"/{self.store_bucket}" if self.path_style else "")

    @classmethod
    def from_compiled(cls, name: str, doc: Mapping[str, Any]) -> Bucket:
        endpoint = doc.get("endpoint") or DEFAULT_REGION_ENDPOINT.format(region=doc["region"])
        return cls(
            name=name,
            store_bucket=doc["bucket"],
            region=doc["region"],
            endpoint=endpoint,
            credentials=doc["credentials"],
            path_style=bool(doc.get("pathStyle")),
        )


@dataclass(frozen=True, slots=True)
class OpRule:
    roles: frozenset[str]
    gate: Gate | None
    max_size: int | None = None
    allowed_types: tuple[str, ...] | None = None

    def admits_type(self, media_type: str) -> bool:
        """`allowedTypes` holds exact types and `type/*` (both lower case)."""
        if self.allowed_types is None:
            return True
        family = media_type.split("/", 1)[0] + "/*"
        return media_type in self.allowed_types or family in self.allowed_types


@dataclass(frozen=True, slots=True)
class _Segment:
    literal: str | None = None  # exact text
    glob: re.Pattern[str] | None = None  # a `*` inside the segment
    var: str | None = None  # `{var}`: any segment, bound as path.var
    # all three None: `*`


def _segment(text: str) -> _Segment:
    if text == "*":
        return _Segment()
    if text.startswith("{") and text.endswith("}"):
        return _Segment(var=text[1:-1])
    if "*" in text:
        return _Segment(glob=re.compile(".*".join(re.escape(p) for p in text.split("*"))))
    return _Segment(literal=text)


@dataclass(frozen=True, slots=True)
class Policy:
    pattern: str
    order: int
    segments: tuple[_Segment, ...]
    rules: Mapping[str, tuple[OpRule, ...]]

    @property
    def wildcards(self) -> int:
        return sum(1 for s in self.segments if s.literal is None)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """The `path.*` bindings when the key's segments match, else None."""
        if len(parts) != len(self.segments):
            return None
        bindings: dict[str, str] = {}
        for seg, part in zip(self.segments, parts, strict=True):
            if seg.literal is not None:
                if seg.literal != part:
                    return None
            elif seg.glob is not None:
                if seg.glob.fullmatch(part) is None:
                    return None
            elif seg.var is not None:
                bindings[seg.var] = part
        return bindings

    def rule_for(self, op: str, roles: frozenset[str]) -> OpRule | None:
        """The first rule of `op` whose roles intersect the caller's (as in `docs/crud.md`)."""
        for rule in self.rules.get(op, ()):
            if rule.roles & roles:
                return rule
        return None


class StorageModel:
    """Buckets by name and policies most specific first; immutable once built."""

    __slots__ = ("buckets", "policies")

    def __init__(self, buckets: Mapping[str, Bucket], policies: tuple[Policy, ...]) -> None:
        self.buckets = dict(buckets)
        self.policies = tuple(sorted(policies, key=lambda p: (p.wildcards, p.order)))

    @classmethod
    def from_compiled(cls, doc: Mapping[str, Any] | None) -> StorageModel:
        """From a release's compiled storage (None: the project has no storage file)."""
        if not doc:
            return cls({}, ())
        buckets = {name: Bucket.from_compiled(name, b) for name, b in doc["buckets"].items()}
        policies = tuple(
            Policy(
                pattern=p["pattern"],
                order=i,
                segments=tuple(_segment(s) for s in p["pattern"].split("/")),
                rules={op: tuple(_rule(r) for r in rules) for op, rules in p["rules"].items()},
            )
            for i, p in enumerate(doc["policies"])
        )
        return cls(buckets, policies)

    def bucket(self, name: str) -> Bucket:
        bucket = self.buckets.get(name)
        if bucket is None:
            raise NotFound(f"Unknown storage bucket '{name}'")
        return bucket

    def match(self, key: str) -> tuple[Policy, dict[str, str]] | None:
        """The most specific policy matching `key`, with its bindings; None when none does."""
        parts = key.split("/")
        for policy in self.policies:
            bindings = policy.match(parts)
            if bindings is not None:
                return policy, bindings
        return None


def _rule(doc: Mapping[str, Any]) -> OpRule:
    types = doc.get("allowedTypes")
    return OpRule(
        roles=frozenset(doc["roles"]),
        gate=Gate(doc["condition"]) if doc.get("condition") else None,
        max_size=doc.get("maxSize"),
        allowed_types=tuple(types) if types is not None else None,
    )
