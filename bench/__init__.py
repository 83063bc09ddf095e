"""Benchmark harness: the Bridge against a hand-written floor, and cost as tenants grow."""
