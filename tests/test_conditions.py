"""Condition classification (row filter / request gate / rejected) and gate evaluation."""

from __future__ import annotations

from typing import Any

import pytest

from tenancy.principal import ANONYMOUS, Principal
from tenancy.releases.compile.conditions import classify
from tenancy.releases.gates import Gate


def filters(source: str) -> list[dict[str, Any]]:
    result = classify(source, resource_allowed=True)
    assert result.problems == ()
    assert result.gate is None
    return list(result.filters)


def rejected(source: str, **kwargs: Any) -> str:
    kwargs.setdefault("resource_allowed", True)
    result = classify(source, **kwargs)
    assert result.problems, source
    return " | ".join(result.problems)


def test_row_filter_with_auth_sub_either_side() -> None:
    expected = [{"column": "author_id", "value": {"kind": "auth.sub"}}]
    assert filters("resource.author_id == request.auth.sub") == expected
    assert filters("request.auth.sub == resource.author_id") == expected


def test_row_filter_terms_joined_with_and_and_parens() -> None:
    got = filters(
        'resource.owner == request.auth.sub && (resource.status == "active" && '
        "resource.n == -5) && null == resource.deleted_at && resource.ok == true "
        "&& resource.org == request.params.org"
    )
    assert got == [
        {"column": "owner", "value": {"kind": "auth.sub"}},
        {"column": "status", "value": {"kind": "literal", "value": "active"}},
        {"column": "n", "value": {"kind": "literal", "value": -5}},
        {"column": "deleted_at", "value": {"kind": "literal", "value": None}},
        {"column": "ok", "value": {"kind": "literal", "value": True}},
        {"column": "org", "value": {"kind": "param", "name": "org"}},
    ]


def test_row_filter_string_literals_are_decoded_by_cel() -> None:
    assert filters("resource.a == 'it\\'s'")[0]["value"]["value"] == "it's"
    assert filters('resource.a == "a\\u00e9&&b"')[0]["value"]["value"] == "aé&&b"
    assert filters('resource.a == r"x\\n"')[0]["value"]["value"] == "x\\n"
    assert filters("resource.a == 0x10")[0]["value"]["value"] == 16


@pytest.mark.parametrize(
    "source",
    [
        "resource.a != request.auth.sub",
        "resource.a == 1 || resource.b == 2",
        "resource.a < 5",
        '"x" in resource.tags',
        "size(resource.a) == 1",
        "has(resource.a)",
        "resource.a == 1.5",
        'resource.a == b"x"',
        "resource.a == resource.b",
        "resource.a.b == 1",
        "resource == 1",
        "resource.a == request.auth.type",
        "resource.a == request.auth.sub && request.auth.type == 'user'",
        "!(resource.a == 1)",
        "(resource.a == 1) == true",
    ],
)
def test_anything_else_on_resource_is_unsupported(source: str) -> None:
    assert "unsupported" in rejected(source)


def test_resource_is_unsupported_where_not_allowed() -> None:
    assert "unsupported" in rejected("resource.a == request.auth.sub", resource_allowed=False)


@pytest.mark.parametrize(
    "source",
    [
        "request.auth.sub == request.params.owner_id",
        '"admin" in request.auth.roles',
        "size(request.auth.roles) > 2 && request.auth.type == 'user'",
        "request.auth.roles.exists(r, r == 'admin')",
        "true",
    ],
)
def test_request_only_expressions_are_gates(source: str) -> None:
    result = classify(source, resource_allowed=True)
    assert result == classify(f"  {source}\n", resource_allowed=True)  # stored stripped
    assert result.problems == ()
    assert result.gate == source
    assert result.filters == ()


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("request.auth.sub ==", "invalid CEL"),
        ("a &&& b", "invalid CEL"),
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("foo == 1", "unknown variable 'foo'"),
        ("request.auth.usr == 'x'", "request.auth.usr"),
        ("request.user == 1", "request.user"),
    ],
)
def test_invalid_conditions(source: str, fragment: str) -> None:
    assert fragment in rejected(source)


def test_non_string_condition_is_a_problem() -> None:
    assert "non-empty string" in rejected(5)  # type: ignore[arg-type]


def test_declared_params_are_checked_for_logics() -> None:
    ok = classify("request.params.a == 1", resource_allowed=False, declared_params={"a"})
    assert ok.problems == ()
    bad = rejected("request.params.b == 1", resource_allowed=False, declared_params={"a"})
    assert "undeclared param 'b'" in bad


def test_extra_variables_and_their_fields() -> None:
    """Storage conditions read `path.*` (`docs/storage.md`): only the fields bound there."""
    bound = {"path": {"userId"}}
    ok = classify(
        "path.userId == request.auth.sub && 'path.x' != ''",
        resource_allowed=False,
        extra_variables=bound,
    )
    assert ok.problems == () and ok.gate is not None
    typo = rejected(
        "path.userID == request.auth.sub", resource_allowed=False, extra_variables=bound
    )
    assert "unknown field 'path.userID' (bound here: userId)" in typo
    unknown = rejected("paths.userId == 'a'", resource_allowed=False, extra_variables=bound)
    assert "unknown variable 'paths' in condition (use request.* or path.*)" in unknown
    # Without the parameter, `path` is an unknown variable like any other.
    assert "unknown variable 'path'" in rejected("path.userId == 'a'", resource_allowed=False)


ALICE = Principal("user", "alice", frozenset({"public", "authenticated", "admin"}))
BOB = Principal("user", "bob", frozenset({"public", "authenticated"}))


@pytest.mark.parametrize(
    ("source", "principal", "params", "expected"),
    [
        ("request.auth.sub == request.params.owner_id", ALICE, {"owner_id": "alice"}, True),
        ("request.auth.sub == request.params.owner_id", BOB, {"owner_id": "alice"}, False),
        ('"admin" in request.auth.roles', ALICE, {}, True),
        ('"admin" in request.auth.roles', BOB, {}, False),
        ('"admin" in request.auth.roles', ANONYMOUS, {}, False),
        ("size(request.auth.roles) == 3", ALICE, {}, True),
        ("request.auth.type == 'anonymous' && request.auth.sub == ''", ANONYMOUS, {}, True),
        ("request.auth.type == 'user' || request.params.n > 1", ANONYMOUS, {"n": 2}, True),
        ("request.params.n == 5", BOB, {"n": 5}, True),
        ("request.params.n == 5", BOB, {"n": "5"}, False),  # ints are not strings
        ("request.params.n == '5'", BOB, {"n": 5}, False),
        ("request.params.flag == true", BOB, {"flag": 1}, False),  # ints are not bools
        ("request.params.flag == 1", BOB, {"flag": True}, False),
        ("request.params.f == 2", BOB, {"f": 2.0}, True),
        ("request.params.items[1] == 'b'", BOB, {"items": ["a", "b"]}, True),
        ("has(request.params.x)", BOB, {}, False),
    ],
)
def test_gate_evaluation(
    source: str, principal: Principal, params: dict[str, Any], expected: bool
) -> None:
    assert Gate(source).allows(principal, params) is expected


@pytest.mark.parametrize(
    ("source", "params"),
    [
        ("request.params.missing == 1", {}),  # missing key
        ("request.params.n + 'x' == 'x'", {"n": 1}),  # type error
        ("1 / request.params.n == 1", {"n": 0}),  # division by zero
        ("request.auth.sub", {}),  # not a bool
        ("request.params.n", {"n": 1}),
    ],
)
def test_gate_errors_and_non_bool_results_fail_closed(source: str, params: dict[str, Any]) -> None:
    assert Gate(source).allows(ALICE, params) is False


def test_gate_error_absorbed_by_or_like_cel() -> None:
    gate = Gate("request.params.missing == 1 || request.auth.sub == 'alice'")
    assert gate.allows(ALICE, {}) is True


def test_activation_holds_what_the_gate_reads() -> None:
    """Only the named fields are converted to CEL values (their cost is most of an evaluation);
    a source using `request` any other way gets all of it."""
    full = {
        "request": {
            "auth": {"sub": "bob", "roles": ["authenticated", "public"], "type": "user"},
            "params": {"a": 1},
        }
    }
    cases = {
        "request.auth.sub == 'bob'": {"request": {"auth": {"sub": "bob"}}},
        "'public' in request . auth . roles && request.params.a == 1": {
            "request": {"auth": {"roles": ["authenticated", "public"]}, "params": {"a": 1}}
        },
        "path.userId == request.auth.sub": {
            "request": {"auth": {"sub": "bob"}},
            "path": {"userId": "bob"},
        },
        "request.auth['sub'] == 'bob'": full,
        "request.auth.exists(k, k == 'sub')": full,
        "size(request) == 2": full,
        "'request' == 'x' || request.auth.type == 'user'": full,
    }
    for source, expected in cases.items():
        extra = {"path": {"userId": "bob"}} if "path" in expected else None
        assert Gate(source).activation(BOB, {"a": 1}, extra) == expected, source
        assert Gate(source).allows(BOB, {"a": 1}, extra) is True, source
