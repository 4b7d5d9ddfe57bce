"""Diagnostics: match quality, reports, anomaly detection, alerts, the live tail and
the debugger page, and the parallel-validation compare."""
