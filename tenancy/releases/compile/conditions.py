"""CEL conditions, classified at publish time (`docs/crud.md`).

A condition that mentions `resource` must be a row filter (equalities joined with `&&`), because
that is what can be turned into SQL; anything else mentioning `resource` is rejected at publish
time. Every other condition is a request gate (`tenancy.releases.gates` runs it per request).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import cel

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>
        [rR][bB]?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n]*"|'[^'\n]*')
      | [bB][rR](?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"[^"\n]*"|'[^'\n]*')
      | [bB]?(?:\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''
               |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
    )
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?[uU]?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%!<>?:.,()\[\]{}])
    """,
    re.VERBOSE,
)
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_AUTH_FIELDS = frozenset({"sub", "roles", "type"})
_REQUEST_FIELDS = frozenset({"auth", "params"})


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str
    text: str


def _tokens(source: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:  # cel.compile accepted it, so this is a character we do not model
            out.append(_Tok("op", source[pos]))
            pos += 1
            continue
        pos = match.end()
        kind = match.lastgroup or "op"
        if kind != "space":
            out.append(_Tok(kind, match.group()))
    return out


@dataclass(frozen=True, slots=True)
class Classified:
    """Outcome of classifying one condition: row filter terms, or gate source, plus problems."""

    filters: tuple[dict[str, Any], ...] = ()
    gate: str | None = None
    problems: tuple[str, ...] = ()


def classify(
    source: object,
    *,
    resource_allowed: bool,
    declared_params: Collection[str] | None = None,
    extra_variables: Mapping[str, Collection[str]] | None = None,
) -> Classified:
    """Decide what a condition is; `declared_params` (logics) makes unknown params a problem.

    `extra_variables` names the variables a caller adds beside `request` (storage's `path`,
    `docs/storage.md`), each with the fields it has: another field of one is a problem.
    """
    extra = extra_variables or {}
    if not isinstance(source, str) or not source.strip():
        return Classified(problems=("condition must be a non-empty string (a CEL expression)",))
    text = source.strip()
    try:
        program = cel.compile(text)
    except Exception as exc:  # the binding raises ValueError; any failure is a syntax problem
        return Classified(problems=(f"invalid CEL condition: {_syntax_message(exc)}",))
    tokens = _tokens(text)
    variables = set(program.variables()) - _macro_variables(tokens)
    known = ["request.*", *(f"{name}.*" for name in sorted(extra))]
    if resource_allowed:
        known.append("resource.*")
    problems = [
        f"unknown variable '{name}' in condition (use {' or '.join(known)})"
        for name in sorted(variables - {"request", "resource", *extra})
    ]
    problems += _request_field_problems(tokens, declared_params)
    problems += _extra_field_problems(tokens, extra)
    if "resource" not in variables:
        return Classified(gate=text, problems=tuple(problems))
    if not resource_allowed:
        return Classified(
            problems=(*problems, "unsupported condition: resource.* is not available here")
        )
    filters = _RowFilterParser(tokens).parse()
    if filters is None:
        problems.append(
            "unsupported condition: a condition on resource.* must be "
            "`resource.<column> == <value>` terms joined with && (value: request.auth.sub, "
            "request.params.<name>, or a string, int, bool or null literal)"
        )
        return Classified(problems=tuple(problems))
    return Classified(filters=tuple(filters), problems=tuple(problems))


def _syntax_message(exc: Exception) -> str:
    """`<input>:1:15: Syntax error: ...` without the echo of the source and the token list."""
    text = str(exc).partition("ERROR: ")[2] or str(exc) or type(exc).__name__
    return text.splitlines()[0].partition(" expecting {")[0]


def _macro_variables(tokens: list[_Tok]) -> set[str]:
    """Names bound by comprehension macros (`roles.exists(r, ...)`), which are not free."""
    bound = set()
    for i in range(1, len(tokens) - 3):
        tok = tokens[i]
        if (
            tok.kind == "ident"
            and tok.text in _MACROS
            and tokens[i - 1].text == "."
            and tokens[i + 1].text == "("
            and tokens[i + 2].kind == "ident"
            and tokens[i + 3].text == ","
        ):
            bound.add(tokens[i + 2].text)
    return bound


def _request_field_problems(
    tokens: list[_Tok], declared_params: Collection[str] | None
) -> list[str]:
    """Catch typos like `request.auth.usr`, which would otherwise just always deny."""
    problems = []
    for i, tok in enumerate(tokens):
        if tok.text != "request" or tok.kind != "ident" or (i and tokens[i - 1].text == "."):
            continue
        path = _dotted(tokens, i)
        if len(path) >= 2 and path[1] not in _REQUEST_FIELDS:
            problems.append(
                f"unknown field 'request.{path[1]}' (use request.auth or request.params)"
            )
        elif len(path) >= 3 and path[1] == "auth" and path[2] not in _AUTH_FIELDS:
            problems.append(f"unknown field 'request.auth.{path[2]}' (use sub, roles or type)")
        elif (
            len(path) >= 3
            and path[1] == "params"
            and declared_params is not None
            and path[2] not in declared_params
        ):
            problems.append(f"condition uses undeclared param '{path[2]}'")
    return problems


def _extra_field_problems(tokens: list[_Tok], extra: Mapping[str, Collection[str]]) -> list[str]:
    """`path.userID` when the pattern binds `{userId}`: would otherwise just always deny."""
    problems = []
    for i, tok in enumerate(tokens):
        if tok.kind != "ident" or tok.text not in extra or (i and tokens[i - 1].text == "."):
            continue
        path = _dotted(tokens, i)
        if len(path) >= 2 and path[1] not in extra[tok.text]:
            bound = ", ".join(sorted(extra[tok.text])) or "none"
            problems.append(f"unknown field '{tok.text}.{path[1]}' (bound here: {bound})")
    return problems


def _dotted(tokens: list[_Tok], start: int) -> list[str]:
    path = [tokens[start].text]
    i = start + 1
    while i + 1 < len(tokens) and tokens[i].text == "." and tokens[i + 1].kind == "ident":
        path.append(tokens[i + 1].text)
        i += 2
    return path


class _RowFilterParser:
    """`term (&& term)*` where a term is `resource.<col> == <value>` (either side), or parens."""

    def __init__(self, tokens: list[_Tok]) -> None:
        self.tokens = tokens
        self.pos = 0

    def parse(self) -> list[dict[str, Any]] | None:
        terms = self._conjunction()
        if terms is None or self.pos != len(self.tokens):
            return None
        return terms

    def _peek(self) -> str | None:
        return self.tokens[self.pos].text if self.pos < len(self.tokens) else None

    def _conjunction(self) -> list[dict[str, Any]] | None:
        terms: list[dict[str, Any]] = []
        while True:
            if self._peek() == "(":
                self.pos += 1
                inner = self._conjunction()
                if inner is None or self._peek() != ")":
                    return None
                self.pos += 1
                terms += inner
            else:
                term = self._equality()
                if term is None:
                    return None
                terms.append(term)
            if self._peek() != "&&":
                return terms
            self.pos += 1

    def _equality(self) -> dict[str, Any] | None:
        left = self._operand()
        if left is None or self._peek() != "==":
            return None
        self.pos += 1
        right = self._operand()
        if right is None:
            return None
        for col, value in ((left, right), (right, left)):
            if col[0] == "column" and value[0] != "column":
                return {"column": col[1], "value": value[1]}
        return None

    def _operand(self) -> tuple[str, Any] | None:
        if self.pos >= len(self.tokens):
            return None
        tok = self.tokens[self.pos]
        if tok.kind == "ident" and tok.text not in ("true", "false", "null"):
            path = _dotted(self.tokens, self.pos)
            self.pos += 2 * len(path) - 1
            if len(path) == 2 and path[0] == "resource":
                return ("column", path[1])
            if path == ["request", "auth", "sub"]:
                return ("value", {"kind": "auth.sub"})
            if len(path) == 3 and path[:2] == ["request", "params"]:
                return ("value", {"kind": "param", "name": path[2]})
            return None
        negative = tok.text == "-"
        if negative:
            self.pos += 1
            if self.pos >= len(self.tokens) or self.tokens[self.pos].kind != "number":
                return None
            tok = self.tokens[self.pos]
        self.pos += 1
        if tok.kind not in ("ident", "string", "number"):
            return None
        try:
            value = cel.evaluate(("-" if negative else "") + tok.text)
        except Exception:  # e.g. -18446744073709551615u: not a literal we can use
            return None
        if isinstance(value, (str, bool, int)) or value is None:
            return ("value", {"kind": "literal", "value": value})
        return None  # floats, bytes: not an allowed row-filter literal
