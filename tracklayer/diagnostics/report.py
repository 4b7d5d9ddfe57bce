"""The report: per destination and event, what happened over a period (CONTRACT.md shape).

Read from the per-minute ``stats`` table; keys with no data are left out.
"""

from __future__ import annotations

import time
from typing import Any

import aiosqlite

from tracklayer.store import stats

OUTCOMES = ("accepted", "observed", "warning", "rejected", "retried", "dead")


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


async def build(connection: aiosqlite.Connection, since: float, until: float) -> dict[str, Any]:
    destinations: dict[str, Any] = {}
    for destination, name, outcome, code, count, message, _total in await stats.summary(
        connection, since, until
    ):
        entry = destinations.setdefault(destination, {"events": {}})["events"].setdefault(
            name, {key: 0 for key in OUTCOMES} | {"duplicates": 0, "suppressed": {}}
        )
        if outcome in OUTCOMES:
            entry[outcome] += count
        elif outcome == "duplicate":
            entry["duplicates"] += count
        elif outcome == "suppressed":
            entry["suppressed"][code] = entry["suppressed"].get(code, 0) + count
        elif outcome in ("consent_purpose", "consent_region"):
            by = entry.setdefault("consent_suppressed", {"purpose": {}, "region": {}})
            side = by["purpose" if outcome == "consent_purpose" else "region"]
            side[code] = side.get(code, 0) + count
        if outcome in ("rejected", "dead") and code:
            entry.setdefault("rejections", []).append(
                {"code": code, "message": message, "count": count}
            )
    return {"since": _iso(since), "until": _iso(until), "destinations": destinations}


def render(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    lines = [f"TrackLayer report {report['since']} → {report['until']}"]
    if not report["destinations"]:
        lines.append("  no deliveries recorded in this period")
    for destination, data in sorted(report["destinations"].items()):
        lines.append(f"\n{destination}")
        for name, entry in sorted(data["events"].items()):
            counts = ", ".join(f"{k} {entry[k]}" for k in OUTCOMES if entry[k])
            extra = []
            if entry["duplicates"]:
                extra.append(f"duplicates {entry['duplicates']}")
            for reason, count in sorted(entry["suppressed"].items()):
                extra.append(f"suppressed ({reason}) {count}")
            consent = entry.get("consent_suppressed")
            if consent:
                purposes = ", ".join(f"{k} {v}" for k, v in sorted(consent["purpose"].items()))
                places = ", ".join(f"{k} {v}" for k, v in sorted(consent["region"].items()))
                extra.append(f"consent by purpose [{purposes}] by region [{places}]")
            lines.append(f"  {name}: " + ", ".join(filter(None, [counts, *extra])) or "-")
            for rejection in entry.get("rejections", []):
                lines.append(
                    f"    {rejection['count']} × {rejection['code']}: {rejection['message']}"
                )
    return "\n".join(lines)
