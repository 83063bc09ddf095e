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
    # Spans that are not SQL words (comments, literals, quoted identifiers) and what stands for
    # each in `skeleton`: a literal is a value, a quoted identifier a name.
    opaque: list[tuple[int, int, str]] = field(default_factory=list)

    def skeleton(self, text: str) -> str:
        """The statement with comments, literals and bindings replaced: only SQL words remain."""
        spans = sorted(
            [*self.opaque, *((b.start, b.end, " 0 ") for b in self.bindings)],
            key=lambda span: span[0],
        )
        out: list[str] = []
        pos = self.start
        for start, end, stand_in in spans:
            if start < pos or start >= self.end:
                continue
            out += (text[pos:start], stand_in)
            pos = end
        out.append(text[pos : self.end])
        return "".join(out)

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
                end = n if newline < 0 else newline
                self.out.opaque.append((pos, end, " "))
                pos = end
                continue
            if char == "/" and nxt == "*":
                end = self._block_comment(pos)
                self.out.opaque.append((pos, end, " "))
                pos = end
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
                self.out.opaque.append((token_start, pos, " 0 "))
            elif char in '"`':
                pos = self._quoted(pos, char, "quoted identifier", backslash=False)
                self.out.opaque.append((token_start, pos, " quoted_name "))
            elif char == "$":
                pos = self._dollar(pos)
                if pos - token_start > 1:  # a dollar-quoted string, not a lone `$`
                    self.out.opaque.append((token_start, pos, " 0 "))
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


# --- read-only classification (`docs/logics.md`, "Read-only logics") ------------------------------

_WORD = re.compile(r"[a-z_][a-z0-9_$]*")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that may stand before "(" without being a call.
_NOT_CALLS = _words(
    """select from where and or not in exists any all some values as on using join lateral
    over filter within group by order having limit offset case when then else end is like ilike
    between union intersect except distinct array row cast extract interval with recursive
    asc desc nulls first last true false null"""
)
# Functions without side effects in PostgreSQL and SQLite: aggregates, window functions,
# arithmetic, strings, dates, JSON. Anything else (pg_sleep, nextval, set_config, a user
# function) may write or wait, so a logic calling it is not read-only.
_HARMLESS_CALLS = _words(
    """count sum avg min max total group_concat string_agg array_agg json_agg jsonb_agg
    json_object_agg jsonb_object_agg json_group_array json_group_object bool_and bool_or every
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
    nth_value coalesce nullif greatest least ifnull iif abs round floor ceil ceiling trunc mod
    power sqrt sign lower upper length char_length octet_length substr substring trim btrim
    ltrim rtrim replace concat concat_ws left right position strpos split_part instr printf
    format lpad rpad reverse initcap md5 now date_trunc date_part to_char to_date to_timestamp
    age make_date date time datetime julianday strftime unixepoch json_build_object
    jsonb_build_object json_build_array jsonb_build_array to_json to_jsonb row_to_json
    json_extract json_array_length jsonb_array_length json_array json_object json_type
    json_valid jsonb_typeof json_typeof typeof array_length cardinality unnest
    generate_series"""
)
# Words that make any statement a write, a lock or a side effect (`SELECT ... INTO`,
# `FOR UPDATE`, a data-modifying CTE, ...).
_WRITES = _words(
    """insert update delete merge into for lock call do copy set reset
    truncate create drop alter grant revoke notify listen vacuum refresh execute prepare
    returning"""
)


def is_read_only(text: str, scanned: ScannedSql) -> bool:
    """Whether a logic's statement provably only reads: a `SELECT` (or `WITH ... SELECT`,
    `VALUES`) with no data-modifying CTE, no locking clause, and no call but the harmless
    functions above. Conservative: anything unknown answers False (the statement then is never
    retried after a broken connection; `docs/tenancy.md`, failover)."""
    if scanned.problems:
        return False
    skeleton = scanned.skeleton(text).lower()
    words = list(_WORD.finditer(skeleton))
    if not words or words[0].group() not in ("select", "with", "values"):
        return False
    for match in words:
        word, start, end = match.group(), match.start(), match.end()
        if word in _WRITES:
            return False
        qualified = start > 0 and skeleton[start - 1] in ".$"  # schema.function(
        known = not qualified and (word in _NOT_CALLS or word in _HARMLESS_CALLS)
        if not known and skeleton[end:].lstrip().startswith("("):
            return False
    return True
