"""Audit retention: entries past STK_AUDIT_RETENTION_DAYS are the only ones ever removed."""

from __future__ import annotations

from datetime import timedelta

from tenancy.registry.models import AuditEntry, utcnow


async def test_pruning_removes_only_entries_past_retention(bridge) -> None:
    await bridge.admin("POST", "/projects", 201, json={"id": "shop"})
    days = bridge.settings.audit_retention_days
    old, kept = "01AAAAAAAAAAAAAAAAAAAAAOLD", "01AAAAAAAAAAAAAAAAAAAAKEEP"
    async with bridge.rt.transaction() as session:
        for age, entry_id in ((days + 1, old), (days - 1, kept)):
            session.add(
                AuditEntry(
                    id=entry_id,
                    ts=utcnow() - timedelta(days=age),
                    actor="admin:00000000",
                    action="project.update",
                    project="shop",
                )
            )
    assert await bridge.rt.prune_audit() == 1
    listed = await bridge.admin("GET", "/audit?project=shop", 200)
    ids = {item["id"] for item in listed.json()["items"]}
    assert kept in ids and old not in ids
    assert [i["action"] for i in listed.json()["items"]].count("project.create") == 1
    assert await bridge.rt.prune_audit() == 0
