"""`config/limits.yaml`: a project's limits per API key, end user and client address, and its
sign-in back-off (`docs/project-files.md`); read at request time as `tenancy.limits.CallerLimits`.
"""

from __future__ import annotations

from typing import Any

from tenancy.limits import LIMIT_MAX
from tenancy.releases.compile.sources import Problems, YamlMap, check_keys, load_yaml

LIMITS_FILE = "config/limits.yaml"
_SECTIONS = {
    "requestsPerMinute": ("perApiKey", "perUser", "perAddress"),
    "auth": ("freeFailuresPerEmail", "freeFailuresPerAddress"),
}


def compile_limits(text: str | None, problems: Problems) -> dict[str, Any] | None:
    """The given values only (unset ones stay with the settings); None without the file, so
    releases without it keep their id."""
    if text is None:
        return None
    file = LIMITS_FILE
    data = load_yaml(text, file, problems)
    if data is None:
        return None
    if not isinstance(data, YamlMap):
        problems.add(file, "the limits file must be a mapping", 1)
        return None
    check_keys(data, tuple(_SECTIONS), file, problems, "limits file")
    compiled: dict[str, Any] = {}
    for name, keys in _SECTIONS.items():
        section = data.get(name, YamlMap())
        if not isinstance(section, YamlMap):
            problems.add(file, f"`{name}` must be a mapping", data.line_of(name))
            continue
        check_keys(section, keys, file, problems, name)
        values = {}
        for key in keys:
            if key not in section:
                continue
            value = section[key]
            if type(value) is int and 0 <= value <= LIMIT_MAX:
                values[key] = value
            else:
                problems.add(
                    file,
                    f"{name}.{key} must be an integer from 0 (off) to {LIMIT_MAX}",
                    section.line_of(key),
                )
        compiled[name] = values
    return compiled
