"""Publish time, against the tenant's databases: additive schema apply (compare, plan, run DDL)."""
