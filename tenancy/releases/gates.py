"""Request gates: CEL conditions compiled once per loaded release, evaluated per request.

Evaluated with the `cel` package (Rust CEL; see docs/decisions.md). Evaluation errors fail closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cel

from tenancy.principal import Principal


class Gate:
    """A compiled request gate. `allows` is true only when the expression yields exactly true."""

    __slots__ = ("_program", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._program = cel.compile(source)

    def allows(self, activation: dict[str, Any]) -> bool:
        try:
            return self._program.execute(activation) is True
        except Exception:  # missing key, type mismatch, overflow: fail closed
            return False
        except BaseException as exc:  # a panic in the Rust binding derives from BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return False

    def __repr__(self) -> str:
        return f"Gate({self.source!r})"


def request_activation(principal: Principal, params: Mapping[str, Any]) -> dict[str, Any]:
    """The CEL variables of one request (`request.auth.*`, `request.params`)."""
    return {
        "request": {
            "auth": {
                "sub": principal.sub,
                "roles": sorted(principal.roles),
                "type": principal.type,
            },
            "params": params,
        }
    }
