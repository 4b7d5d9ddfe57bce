"""Pure transforms from decoded messages to canonical, enriched events."""
