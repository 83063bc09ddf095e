"""Who is calling and for which tenant: the plain values every later stage takes as arguments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AuthType = Literal["anonymous", "user", "api_key"]


@dataclass(frozen=True, slots=True)
class Tenant:
    """A resolved (project, env). Fixed for the rest of the request once resolution returns it."""

    project: str
    env: str


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller. `roles` already includes the implied ones (`public`, `authenticated`)."""

    type: AuthType
    sub: str = ""
    roles: frozenset[str] = field(default_factory=lambda: frozenset({"public"}))

    @property
    def is_anonymous(self) -> bool:
        return self.type == "anonymous"


ANONYMOUS = Principal("anonymous")
