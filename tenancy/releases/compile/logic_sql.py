"""The SQL of a logic: one statement, `:name` bindings resolved to positions for both engines.

The scanner knows just enough SQL lexing to never mistake text for a binding: string literals
('..' with '' escapes, E'..' with backslash escapes), quoted identifiers ("..", `..`), comments
(-- and nested /* */) and dollar-quoted strings ($$..$$, $tag$..$tag$) are skipped; `::` is a cast.
The statement is kept as written, bindings replaced; comments and whitespace around it and the
trailing `;` are dropped, so the text can be wrapped or extended safely.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

SYSTEM_VARIABLES = frozenset({"auth.sub", "auth.roles", "auth.type", "client.ip"})
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_POSITIONAL = re.compile(r"\$[0-9]+")


def _is_ident_char(char: str) -> bool:
    return char.isalnum() or char in "_$"


@dataclass(frozen=True, slots=True)
class Binding:
    name: str
    start: int
    end: int
    line: int


@dataclass(slots=True)
class ScannedSql:
    """Result of scanning one logic body; `problems` holds (line, message) pairs."""

    bindings: list[Binding] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)
    start: int = 0
    end: int = 0

    def render(self, text: str) -> tuple[dict[str, str], tuple[str, ...]]:
        """SQL per engine (`$N` for PostgreSQL, `?N` for SQLite) and bind names by number."""
        numbers: dict[str, int] = {}
        pg: list[str] = []
        lite: list[str] = []
        pos = self.start
        for binding in self.bindings:
            number = numbers.setdefault(binding.name, len(numbers) + 1)
            chunk = text[pos : binding.start]
            pg += (chunk, f"${number}")
            lite += (chunk, f"?{number}")
            pos = binding.end
        tail = text[pos : self.end]
        sql = {"postgresql": "".join(pg) + tail, "sqlite": "".join(lite) + tail}
        return sql, tuple(numbers)


class _Scanner:
    def __init__(self, text: str, first_line: int) -> None:
        self.text = text
        self.first_line = first_line
        self.newlines = [i for i, char in enumerate(text) if char == "\n"]
        self.out = ScannedSql()

    def line(self, pos: int) -> int:
        return self.first_line + bisect.bisect_left(self.newlines, pos)

    def problem(self, pos: int, message: str) -> None:
        self.out.problems.append((self.line(pos), message))

    def scan(self) -> ScannedSql:
        text, n = self.text, len(self.text)
        pos = 0
        content_start: int | None = None  # first significant character of the statement
        content_end = 0  # just after its last significant character
        semicolon: int | None = None
        while pos < n:
            char = text[pos]
            nxt = text[pos + 1] if pos + 1 < n else ""
            if char.isspace():
                pos += 1
                continue
            if char == "-" and nxt == "-":
                newline = text.find("\n", pos)
                pos = n if newline < 0 else newline
                continue
            if char == "/" and nxt == "*":
                pos = self._block_comment(pos)
                continue
            if semicolon is not None and char != ";":
                self.problem(pos, "a logic must contain exactly one SQL statement")
                break
            token_start = pos
            if char == ";":
                semicolon = pos
                pos += 1
                continue
            if char == "'":
                escapes = pos > 0 and text[pos - 1] in "eE" and not _prev_is_ident(text, pos - 1)
                pos = self._quoted(pos, "'", "string literal", backslash=escapes)
            elif char in '"`':
                pos = self._quoted(pos, char, "quoted identifier", backslash=False)
            elif char == "$":
                pos = self._dollar(pos)
            elif char == ":":
                pos = self._colon(pos)
            else:
                pos += 1
            if content_start is None:
                content_start = token_start
            content_end = pos
        if content_start is None:
            self.problem(0, "no SQL statement")
        else:
            self.out.start, self.out.end = content_start, content_end
        return self.out

    def _block_comment(self, start: int) -> int:
        depth, pos = 0, start
        while pos < len(self.text):
            pair = self.text[pos : pos + 2]
            if pair == "/*":
                depth, pos = depth + 1, pos + 2
            elif pair == "*/":
                depth, pos = depth - 1, pos + 2
                if depth == 0:
                    return pos
            else:
                pos += 1
        self.problem(start, "unterminated /* comment")
        return len(self.text)

    def _quoted(self, start: int, quote: str, what: str, *, backslash: bool) -> int:
        pos = start + 1
        while pos < len(self.text):
            char = self.text[pos]
            if backslash and char == "\\":
                pos += 2
            elif char == quote:
                if self.text[pos + 1 : pos + 2] != quote:
                    return pos + 1
                pos += 2
            else:
                pos += 1
        self.problem(start, f"unterminated {what}")
        return len(self.text)

    def _dollar(self, start: int) -> int:
        if _prev_is_ident(self.text, start):
            return start + 1  # `$` inside an identifier such as a$b
        positional = _POSITIONAL.match(self.text, start)
        if positional:
            self.problem(
                start, f"positional parameter {positional.group()} is not allowed; use :name"
            )
            return positional.end()
        tag = _DOLLAR_TAG.match(self.text, start)
        if tag is None:
            return start + 1
        close = self.text.find(tag.group(), tag.end())
        if close < 0:
            self.problem(start, "unterminated dollar-quoted string")
            return len(self.text)
        return close + len(tag.group())

    def _colon(self, start: int) -> int:
        if self.text.startswith("::", start):
            return start + 2
        name = _IDENT.match(self.text, start + 1)
        if name is None:
            return start + 1
        end = name.end()
        if name.group() in ("auth", "client") and self.text.startswith(".", end):
            field_name = _IDENT.match(self.text, end + 1)
            if field_name is not None:
                end = field_name.end()
        self.out.bindings.append(Binding(self.text[start + 1 : end], start, end, self.line(start)))
        return end


def _prev_is_ident(text: str, pos: int) -> bool:
    return pos > 0 and _is_ident_char(text[pos - 1])


def scan_sql(text: str, *, first_line: int = 1) -> ScannedSql:
    """Scan a logic body; `first_line` is the file line where `text` starts."""
    return _Scanner(text, first_line).scan()
