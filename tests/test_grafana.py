"""The shipped Grafana dashboard: valid JSON with panels on a Prometheus datasource variable,
and every metric it queries is one TrackLayer exports (tracklayer/metrics.py)."""

from __future__ import annotations

import json
import re
from importlib import resources

from tracklayer.metrics import Metrics

CONTRACT_METRICS = {
    "tracklayer_events_received_total",
    "tracklayer_events_rejected_total",
    "tracklayer_events_duplicate_total",
    "tracklayer_events_suppressed_total",
    "tracklayer_deliveries_total",
    "tracklayer_delivery_seconds_bucket",
    "tracklayer_outbox_depth",
    "tracklayer_match_quality_bucket",
    "tracklayer_anomalies_active",
    "tracklayer_dead_letters",
    "tracklayer_destination_healthy",
    "tracklayer_destination_rate",
}


def dashboard() -> dict:
    text = resources.files("tracklayer.diagnostics").joinpath("grafana-dashboard.json").read_text()
    return json.loads(text)


def exported_names() -> set[str]:
    """The series names /metrics can expose, by metric type."""
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    names = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, [""]))
    return names


def panels(document: dict) -> list[dict]:
    found = []
    for panel in document["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def test_dashboard_is_grafana_json_with_panels():
    document = dashboard()
    assert document["title"] == "TrackLayer" and document["uid"]
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    queried = [p for p in panels(document) if p["type"] != "row"]
    assert len(queried) >= 12
    ids = [p["id"] for p in panels(document)]
    assert len(ids) == len(set(ids))
    for panel in queried:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24


def test_every_queried_metric_exists_and_the_contract_metrics_are_shown():
    exported = exported_names()
    expressions = [t["expr"] for p in panels(dashboard()) for t in p.get("targets", [])]
    expressions += [
        v["definition"] for v in dashboard()["templating"]["list"] if v.get("definition")
    ]
    queried = {name for e in expressions for name in re.findall(r"\btracklayer_[a-z_]+", e)}
    assert queried - exported == set(), "the dashboard queries metrics TrackLayer does not export"
    assert CONTRACT_METRICS - queried == set(), "contract metrics missing from the dashboard"
