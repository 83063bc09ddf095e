"""`config/storage.yaml` → the storage part of a release (docs/storage.md, "Project files").

A pure function of the file text: it returns the canonical, JSON-able value that goes into the
release and adds every problem (file and line) to `problems`, all at once, like the other project
files. Conditions are checked here with the request-gate machinery of the release compiler, so
the runtime only compiles sources that are known to be valid.
"""

from __future__ import annotations

import re
from typing import Any

from tenancy.ids import is_bucket_name, is_secret_name
from tenancy.releases.compile.conditions import classify
from tenancy.releases.compile.permissions import compile_roles
from tenancy.releases.compile.sources import Problems, YamlList, YamlMap, check_keys, load_yaml
from tenancy.storage.keys import MAX_KEY_BYTES, segment_problem
from tenancy.storage.params import OBJECT_MAX, OPS, POLICY_OPS, params_of_rule

STORAGE_FILE = "config/storage.yaml"
PROVIDERS = ("s3",)
_BUCKET_KEYS = ("provider", "bucket", "region", "endpoint", "credentials", "pathStyle")
_RULE_KEYS = ("roles", "condition", "maxSize", "allowedTypes")
_UPLOAD_ONLY = ("maxSize", "allowedTypes")
# S3 bucket naming: 3-63 of lower-case letters, digits, dots and hyphens, alphanumeric ends.
_STORE_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ENDPOINT = re.compile(
    r"^https?://(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::\d{1,5})?$"
)
_VAR = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]{0,63})\}$")
_SIZE = re.compile(r"^([0-9]{1,16})\s*(B|KB|MB|GB)$")
_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
_TYPE_TOKEN = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
_ALLOWED_TYPE = re.compile(rf"^{_TYPE_TOKEN}/(?:\*|{_TYPE_TOKEN})$")


def compile_storage(file: str, text: str | None, problems: Problems) -> dict[str, Any] | None:
    """The compiled `{"buckets", "policies"}`, or None when the project has no storage file."""
    if text is None:
        return None
    data = load_yaml(text, file, problems)
    if data is None:
        return {"buckets": {}, "policies": []}
    if not isinstance(data, YamlMap):
        problems.add(file, "the storage file must be a mapping with `buckets` and `policies`", 1)
        return {"buckets": {}, "policies": []}
    check_keys(data, ("buckets", "policies"), file, problems, "storage file")
    ctx = _Context(file, problems)
    return {
        "buckets": ctx.buckets(data.get("buckets", YamlMap()), data.line_of("buckets")),
        "policies": ctx.policies(data.get("policies", YamlMap()), data.line_of("policies")),
    }


def parse_size(value: object) -> int | None:
    """`5MB` → 5242880 (B, KB, MB, GB; 1024-based) or a plain byte count; None if invalid."""
    if type(value) is int:
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        size = int(match.group(1)) * _UNITS[match.group(2)]
    else:
        return None
    return size if 1 <= size <= OBJECT_MAX else None


class _Context:
    def __init__(self, file: str, problems: Problems) -> None:
        self.file = file
        self.problems = problems

    def add(self, message: str, line: int) -> None:
        self.problems.add(self.file, message, line)

    # --- buckets -------------------------------------------------------------------------

    def buckets(self, raw: Any, line: int) -> dict[str, dict[str, Any]]:
        if not isinstance(raw, YamlMap):
            self.add("`buckets` must be a mapping of bucket name → settings", line)
            return {}
        out = {}
        for name, settings in raw.items():
            where = f"bucket '{name}'"
            if not is_bucket_name(name):
                message = f"invalid bucket name '{name}' (a lower-case letter, then a-z 0-9 _ -)"
                self.add(message, raw.line_of(name))
            if not isinstance(settings, YamlMap):
                self.add(f"{where} must be a mapping", raw.line_of(name))
                continue
            out[name] = self._bucket(where, settings)
        return out

    def _bucket(self, where: str, raw: YamlMap) -> dict[str, Any]:
        check_keys(raw, _BUCKET_KEYS, self.file, self.problems, where)
        for required in ("provider", "bucket", "region", "credentials"):
            if required not in raw:
                self.add(f"{where}: `{required}` is required", raw.line)
        checks = (
            ("provider", lambda v: v in PROVIDERS, "must be one of: " + ", ".join(PROVIDERS)),
            ("bucket", _matches(_STORE_BUCKET), "must be a valid S3 bucket name"),
            ("region", _matches(_REGION), "must be a region name like eu-central-1"),
            ("credentials", is_secret_name, "must name a tenant secret (e.g. S3_MEDIA)"),
            ("endpoint", _matches(_ENDPOINT), "must be http(s)://host[:port], nothing after"),
            ("pathStyle", lambda v: isinstance(v, bool), "must be true or false"),
        )
        for key, ok, message in checks:
            if key in raw and not ok(raw[key]):
                self.add(f"{where}: `{key}` {message}", raw.line_of(key))
        return {
            "provider": raw.get("provider"),
            "bucket": raw.get("bucket"),
            "region": raw.get("region"),
            "endpoint": raw.get("endpoint"),
            "credentials": raw.get("credentials"),
            "pathStyle": raw.get("pathStyle") is True,
        }

    # --- policies ------------------------------------------------------------------------

    def policies(self, raw: Any, line: int) -> list[dict[str, Any]]:
        if not isinstance(raw, YamlMap):
            self.add("`policies` must be a mapping of key pattern → ops", line)
            return []
        out = []
        for pattern, ops in raw.items():
            pattern_line = raw.line_of(pattern)
            variables = self._pattern(pattern, pattern_line)
            if not isinstance(ops, YamlMap):
                self.add(f"policy '{pattern}' must be a mapping of op → rule", pattern_line)
                continue
            for op in ops:
                if op in OPS and op not in POLICY_OPS:
                    self.add(f"policy '{pattern}': {op} uses upload_sign's rule", ops.line_of(op))
            check_keys(ops, POLICY_OPS, self.file, self.problems, f"policy '{pattern}'")
            rules = {
                op: self._rules(f"{pattern} {op}", op, ops[op], ops.line_of(op), variables)
                for op in POLICY_OPS
                if op in ops
            }
            out.append({"pattern": pattern, "rules": rules})
        return out

    def _pattern(self, pattern: str, line: int) -> frozenset[str]:
        """Check a key pattern; return the `{var}` names it binds."""
        where = f"policy pattern '{pattern}'"
        if len(pattern.encode("utf-8", "replace")) > MAX_KEY_BYTES or pattern.startswith("/"):
            self.add(f"{where}: must be 1 to {MAX_KEY_BYTES} bytes and not start with '/'", line)
        names: list[str] = []
        for segment in pattern.split("/"):
            var = _VAR.fullmatch(segment)
            if var:
                names.append(var.group(1))
            elif "{" in segment or "}" in segment:
                self.add(f"{where}: a {{var}} must be a whole segment like {{userId}}", line)
            elif "*" not in segment and (problem := segment_problem(segment)):
                self.add(f"{where}: {problem}", line)
        for name in sorted({n for n in names if names.count(n) > 1}):
            self.add(f"{where}: {{{name}}} is bound twice", line)
        return frozenset(names)

    def _rules(
        self, where: str, op: str, raw: Any, line: int, variables: frozenset[str]
    ) -> list[dict[str, Any]]:
        if isinstance(raw, YamlMap):
            raw = YamlList([raw], line)
        if not isinstance(raw, YamlList) or not raw:
            self.add(f"{where}: must be a rule or a list of rules", line)
            return []
        rules = []
        for i, rule in enumerate(raw):
            if not isinstance(rule, YamlMap):
                self.add(f"{where}: a rule must be a mapping with `roles`", raw.line_of(i))
                continue
            rules.append(self._rule(where, op, rule, variables))
        return rules

    def _rule(self, where: str, op: str, raw: YamlMap, variables: frozenset[str]) -> dict[str, Any]:
        check_keys(raw, _RULE_KEYS, self.file, self.problems, f"rule of '{where}'")
        roles = compile_roles(
            raw.get("roles"), where, self.file, raw.line_of("roles"), self.problems
        )
        rule: dict[str, Any] = {"roles": roles, "condition": None}
        if "condition" in raw:
            rule["condition"] = self._condition(
                where, op, raw["condition"], raw.line_of("condition"), variables
            )
        for key in _UPLOAD_ONLY:
            if key in raw and op != "upload_sign":
                self.add(f"{where}: `{key}` applies to upload_sign only", raw.line_of(key))
        if op == "upload_sign":
            rule["maxSize"] = self._max_size(where, raw)
            rule["allowedTypes"] = self._allowed_types(where, raw)
        return rule

    def _condition(
        self, where: str, op: str, source: object, line: int, variables: frozenset[str]
    ) -> str | None:
        result = classify(
            source,
            resource_allowed=False,
            declared_params=params_of_rule(op),
            extra_variables={"path": variables},
        )
        for message in result.problems:
            self.add(f"{where}: {message}", line)
        return result.gate

    def _max_size(self, where: str, raw: YamlMap) -> int | None:
        if "maxSize" not in raw:
            return None
        size = parse_size(raw["maxSize"])
        if size is None:
            self.add(
                f"{where}: `maxSize` must be a size like 512KB or 5MB (B, KB, MB, GB; up to 5 TiB)",
                raw.line_of("maxSize"),
            )
        return size

    def _allowed_types(self, where: str, raw: YamlMap) -> list[str] | None:
        if "allowedTypes" not in raw:
            return None
        value, line = raw["allowedTypes"], raw.line_of("allowedTypes")
        if not isinstance(value, list) or not value:
            self.add(f"{where}: `allowedTypes` must be a non-empty list of media types", line)
            return None
        types = []
        for item in value:
            text = item.strip().lower() if isinstance(item, str) else None
            if text is None or not _ALLOWED_TYPE.fullmatch(text):
                self.add(f"{where}: invalid media type {item!r} (type/subtype or type/*)", line)
            else:
                types.append(text)
        return sorted(set(types))


def _matches(pattern: re.Pattern[str]) -> Any:
    return lambda value: isinstance(value, str) and pattern.fullmatch(value) is not None
