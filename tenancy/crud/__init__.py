"""Auto-CRUD (`docs/crud.md`): `db/<table>/<op>` calls planned from the release, run on tenant
pools.
"""

from tenancy.crud.execute import Run, answer, attach
from tenancy.crud.planner import plan_call
from tenancy.crud.sql import Statement, render

__all__ = ["Run", "Statement", "answer", "attach", "plan_call", "render"]
