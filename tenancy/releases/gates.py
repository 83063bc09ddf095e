"""Request gates: CEL conditions compiled once per loaded release, evaluated per request.

Evaluated with the `cel` package (Rust CEL; see docs/decisions.md). Evaluation errors fail closed.

Converting the activation into CEL values is most of an evaluation's cost, so each gate learns
at compile time which of `request.auth.sub|roles|type` and `request.params` its source names and
builds only those (`docs/decisions.md`, "CEL activations"). A source that uses `request` or
`request.auth` any other way (indexing, macros, as a whole) gets the whole activation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import cel

from tenancy.principal import Principal

# `request` not followed by `.params` or `.auth.<sub|roles|type>`: used whole, nothing may be left
# out. Text in string literals only ever makes this match more often (the safe direction).
_WHOLE = re.compile(r"(?<![\w.])request\b(?!\s*\.\s*(?:params\b|auth\s*\.\s*(?:sub|roles|type)\b))")
_AUTH_FIELD = re.compile(r"(?<![\w.])request\s*\.\s*auth\s*\.\s*(sub|roles|type)\b")
_PARAMS = re.compile(r"(?<![\w.])request\s*\.\s*params\b")


class Gate:
    """A compiled request gate. `allows` is true only when the expression yields exactly true."""

    __slots__ = ("_auth", "_params", "_program", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._program = cel.compile(source)
        whole = _WHOLE.search(source) is not None
        self._auth = frozenset(("sub", "roles", "type") if whole else _AUTH_FIELD.findall(source))
        self._params = whole or _PARAMS.search(source) is not None

    def activation(
        self, principal: Principal, params: Mapping[str, Any], extra: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The CEL variables this gate reads: `request.auth.*`, `request.params`, and `extra`
        (storage's `path`)."""
        auth: dict[str, Any] = {}
        if "sub" in self._auth:
            auth["sub"] = principal.sub
        if "roles" in self._auth:
            auth["roles"] = sorted(principal.roles)
        if "type" in self._auth:
            auth["type"] = principal.type
        request: dict[str, Any] = {"auth": auth}
        if self._params:
            request["params"] = params
        return {"request": request, **extra} if extra else {"request": request}

    def allows(
        self,
        principal: Principal,
        params: Mapping[str, Any],
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        try:
            return self._program.execute(self.activation(principal, params, extra)) is True
        except Exception:  # missing key, type mismatch, overflow: fail closed
            return False
        except BaseException as exc:  # a panic in the Rust binding derives from BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return False

    def __repr__(self) -> str:
        return f"Gate({self.source!r})"
