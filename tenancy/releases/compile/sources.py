"""Reading project files so that every problem can name its file and line.

YAML is read with a restricted safe loader: plain JSON-like values only (no aliases, no custom
tags, no timestamps, only `true`/`false` as booleans), because the compiled release is JSON and a
surprise type from YAML 1.1 (`on` → True, `2024-01-01` → date) must not slip in silently. Mappings
and lists remember the line of each key and item.
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tenancy.errors import PublishError

_CORE = "tag:yaml.org,2002:"
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_FLOAT12 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")


class YamlMap(dict[Any, Any]):
    """A mapping that knows the line of itself and of each key (1-based)."""

    def __init__(self, line: int = 1) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class YamlList(list[Any]):
    """A list that knows the line of itself and of each item (1-based)."""

    def __init__(self, items: list[Any] | None = None, line: int = 1) -> None:
        super().__init__(items or [])
        self.line = line
        self.item_lines: list[int] = [line] * len(self)

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class _Loader(yaml.SafeLoader):
    """Safe loader restricted to JSON-like values, keeping line numbers."""

    yaml_implicit_resolvers = {
        first: [
            (tag, rx)
            for tag, rx in resolvers
            if tag in (_CORE + "null", _CORE + "int", _CORE + "float")
        ]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    yaml_constructors: ClassVar[dict[Any, Any]] = {}

    def __init__(self, text: str, line_offset: int) -> None:
        super().__init__(text)
        self.line_offset = line_offset
        self.duplicates: list[tuple[str, int]] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not supported", mark)
        return super().compose_node(parent, index)

    def _line(self, node: Node) -> int:
        return int(node.start_mark.line) + 1 + self.line_offset

    def construct_map(self, node: Node) -> YamlMap:
        assert isinstance(node, MappingNode)
        data = YamlMap(self._line(node))
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise ConstructorError(
                    None, None, f"keys must be strings, not {key!r}", key_node.start_mark
                )
            if key in data:
                self.duplicates.append((key, self._line(key_node)))
            data[key] = self.construct_object(value_node, deep=True)
            data.key_lines[key] = self._line(key_node)
        return data

    def construct_seq(self, node: Node) -> YamlList:
        assert isinstance(node, SequenceNode)
        data = YamlList([self.construct_object(c, deep=True) for c in node.value], self._line(node))
        data.item_lines = [self._line(child) for child in node.value]
        return data

    def construct_finite_float(self, node: Node) -> float:
        assert isinstance(node, ScalarNode)
        value = self.construct_yaml_float(node)
        if not math.isfinite(value):
            raise ConstructorError(None, None, "only finite numbers are supported", node.start_mark)
        return value


_Loader.add_implicit_resolver(_CORE + "bool", _BOOL, list("tTfF"))
# YAML 1.2 exponent floats (`1e3`), which YAML 1.1 would leave as strings; ints still win first.
_Loader.add_implicit_resolver(_CORE + "float", _FLOAT12, list("-+0123456789."))
for _tag, _constructor in (
    ("null", _Loader.construct_yaml_null),
    ("bool", _Loader.construct_yaml_bool),
    ("int", _Loader.construct_yaml_int),
    ("float", _Loader.construct_finite_float),
    ("str", _Loader.construct_yaml_str),
    ("seq", _Loader.construct_seq),
    ("map", _Loader.construct_map),
):
    _Loader.add_constructor(_CORE + _tag, _constructor)
_Loader.add_constructor(None, _Loader.construct_undefined)  # type: ignore[type-var]


class Problems:
    """Collects every problem of a publish, so the operator sees them all at once."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, file: str, message: str, line: int | None = None) -> None:
        item: dict[str, Any] = {"file": file, "message": message}
        if line is not None:
            item["line"] = line
        self.items.append(item)

    def raise_if_any(self) -> None:
        if self.items:
            ordered = sorted(self.items, key=lambda p: (p["file"], p.get("line", 0)))
            raise PublishError(ordered)


def load_yaml(text: str, file: str, problems: Problems, *, line_offset: int = 0) -> Any:
    """Parse one YAML document; on a syntax error record it and return None."""
    try:
        # The reader checks the characters as it is built: inside the try (a control character
        # was a 500 until the fuzz pass of tests/test_properties.py found it).
        loader = _Loader(text, line_offset)
    except yaml.YAMLError as exc:
        problems.add(file, f"invalid YAML: {exc}")
        return None
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 + line_offset if mark is not None else None
        problems.add(file, f"invalid YAML: {exc.problem or exc.context}", line)
        return None
    except yaml.YAMLError as exc:
        problems.add(file, f"invalid YAML: {exc}")
        return None
    finally:
        loader.dispose()
    for key, line in loader.duplicates:
        problems.add(file, f"duplicate key '{key}'", line)
    return data


def check_keys(
    mapping: YamlMap, allowed: tuple[str, ...], file: str, problems: Problems, where: str
) -> None:
    """Report every key of `mapping` that is not in `allowed`."""
    for key in mapping:
        if key not in allowed:
            expected = ", ".join(allowed)
            problems.add(
                file, f"unknown key '{key}' in {where} (expected: {expected})", mapping.line_of(key)
            )
