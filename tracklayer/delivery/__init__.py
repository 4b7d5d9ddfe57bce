"""Delivery: one isolated worker per destination, pacing, retries, dead letters."""
