"""Whether a storage call is allowed: policy, rule, roles, condition, limits (docs/storage.md).

Order of the answers: no matching policy or no rule for the op → 403 for every caller (there is
no rule to ask for credentials); a rule whose roles the caller lacks → 401 when anonymous, 403
otherwise (`docs/crud.md`); a false condition → 403; then `maxSize` / `allowedTypes` → 400. Limits
are
checked last, so a caller who may not upload learns nothing about them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenancy.crud.access import deny
from tenancy.errors import BadRequest, Forbidden
from tenancy.principal import Principal
from tenancy.storage.model import OpRule, StorageModel
from tenancy.storage.params import StorageRequest, rule_op


def authorize(
    model: StorageModel, request: StorageRequest, principal: Principal, params: Mapping[str, Any]
) -> OpRule:
    """The rule that admits this call; raises the typed error of the first check that fails."""
    found = model.match(request.key)
    if found is None:
        raise Forbidden("No storage policy matches this key")
    policy, bindings = found
    op = rule_op(request.op)
    if not policy.rules.get(op):
        raise Forbidden(f"No {op} rule for this key")
    rule = policy.rule_for(op, principal.roles)
    if rule is None:
        deny(principal, f"Not allowed to {op} this key")
    if rule.gate is not None and not rule.gate.allows(principal, params, {"path": bindings}):
        raise Forbidden(f"Condition of {op} is not met")
    check_limits(rule, request)
    return rule


def check_limits(rule: OpRule, request: StorageRequest) -> None:
    """`maxSize` and `allowedTypes` against what the request states (it is then signed)."""
    length, media_type = request.content_length, request.media_type
    if length is not None and rule.max_size is not None and length > rule.max_size:
        raise BadRequest(f"contentLength {length} exceeds the maxSize of {rule.max_size} bytes")
    if media_type is not None and not rule.admits_type(media_type):
        raise BadRequest(f"contentType '{media_type}' is not allowed here")
