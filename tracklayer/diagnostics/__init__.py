"""Diagnostics: reports and, later, match quality, anomalies and the live tail."""
