"""SQLite storage: schema, group-commit journal, outbox, dedup registry, retention."""
