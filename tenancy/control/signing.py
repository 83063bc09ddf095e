"""Token signing keys of an env: rotation only (keys are otherwise created on first need)."""

from __future__ import annotations

from tenancy import audit, tokens
from tenancy.audit import Actor
from tenancy.control.projects import require_env
from tenancy.runtime import Runtime


async def rotate(rt: Runtime, actor: Actor, project: str, env: str) -> dict[str, str]:
    """The new key signs from now on; the previous one keeps verifying tokens already out."""
    await require_env(rt, project, env)
    async with rt.transaction() as session:
        kid = await tokens.add_key(session, rt.vault, project, env)
        audit.record(session, actor, "signingkey.rotate", project, env, kid=kid)
    await rt.bus.publish("signingkey.rotate", project, env)
    return {"kid": kid}
