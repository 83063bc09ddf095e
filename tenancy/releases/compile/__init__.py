"""Publish time: project files → the canonical release JSON, every problem at once (file, line)."""
