"""Offline, seeded data generators (pure Python; no Lightning)."""
