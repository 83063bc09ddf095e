"""The per-project manifest (`docs/storage.md`): which release each env serves, and its history.

Stored as JSON under `manifest:<project>`; this module is the only one that knows its shape.
Values are frozen: a change builds a new `Manifest`, which the store writes by compare-and-set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

from tenancy.errors import ServiceUnavailable

log = logging.getLogger(__name__)

HISTORY_LIMIT = 50


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Publication:
    """One pointer move: which release, from which source ref, when."""

    release: str
    ref: str | None
    published_at: str

    def json(self) -> dict[str, Any]:
        return {"release": self.release, "ref": self.ref, "publishedAt": self.published_at}

    @classmethod
    def parse(cls, doc: Mapping[str, Any]) -> Publication:
        release, ref, at = doc["release"], doc["ref"], doc["publishedAt"]
        if not isinstance(release, str) or not isinstance(at, str):
            raise TypeError("release and publishedAt must be strings")
        if ref is not None and not isinstance(ref, str):
            raise TypeError("ref must be a string or null")
        return cls(release, ref, at)


@dataclass(frozen=True, slots=True)
class EnvPointer:
    """An env's current release and its moves, newest first (the current one included)."""

    current: Publication
    history: tuple[Publication, ...]

    @property
    def release(self) -> str:
        return self.current.release

    def json(self) -> dict[str, Any]:
        return {**self.current.json(), "history": [entry.json() for entry in self.history]}


@dataclass(frozen=True, slots=True)
class Manifest:
    project: str
    revision: int
    envs: Mapping[str, EnvPointer]

    @classmethod
    def empty(cls, project: str) -> Manifest:
        return cls(project, 0, MappingProxyType({}))

    @classmethod
    def parse(cls, raw: bytes) -> Manifest:
        """The stored bytes as a value; a malformed manifest is a 503, never a crash later."""
        try:
            doc = orjson.loads(raw)
            envs = {
                env: EnvPointer(
                    Publication.parse(entry),
                    tuple(Publication.parse(past) for past in entry["history"]),
                )
                for env, entry in doc["envs"].items()
            }
            project, revision = doc["project"], doc["revision"]
            if not isinstance(project, str) or type(revision) is not int:
                raise TypeError("project must be a string and revision an integer")
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            log.error("stored manifest is malformed: %s", exc)
            raise ServiceUnavailable("stored manifest is corrupt") from None
        return cls(project, revision, MappingProxyType(envs))

    def dumps(self) -> bytes:
        return orjson.dumps(
            {
                "project": self.project,
                "revision": self.revision,
                "envs": {env: pointer.json() for env, pointer in self.envs.items()},
            }
        )

    def release(self, env: str) -> str | None:
        """The release `env` serves, if any."""
        pointer = self.envs.get(env)
        return pointer.release if pointer is not None else None

    def point(self, env: str, entry: Publication) -> Manifest | None:
        """`env` serving `entry`, the move recorded in its history; None when already so."""
        current = self.envs.get(env)
        if current is not None and current.release == entry.release:
            return None
        past = current.history if current is not None else ()
        pointer = EnvPointer(entry, (entry, *past)[:HISTORY_LIMIT])
        return self._with_envs({**self.envs, env: pointer})

    def without(self, env: str) -> Manifest | None:
        """No pointer for `env`; None when it had none."""
        if env not in self.envs:
            return None
        return self._with_envs({name: p for name, p in self.envs.items() if name != env})

    def _with_envs(self, envs: dict[str, EnvPointer]) -> Manifest:
        """Every change is a new revision."""
        return replace(self, revision=self.revision + 1, envs=MappingProxyType(envs))
