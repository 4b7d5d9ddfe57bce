"""The report: counts by outcome, value by currency, latency, match quality and the keys
whose absence costs most, from the admin route and from the CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import yaml

from tests.harness import ADMIN_TOKEN, base_config, request_json, start_app, webhook
from tracklayer.destinations.webhook import WebhookDestination
from tracklayer.diagnostics import match_quality


def order(i: int, email: bool, currency: str = "USD") -> dict:
    traits = {"email": f"buyer{i}@example.com"} if email else {}
    return {
        "type": "track",
        "userId": f"u{i}",
        "event": "Order Completed",
        "messageId": f"m{i}",
        "properties": {"order_id": f"o{i}", "revenue": 10.5, "currency": currency},
        "context": {"traits": traits, "ip": "198.51.100.4"},
    }


async def test_report_counts_values_latency_and_match_quality(tmp_path, hook):
    config = base_config(tmp_path, destinations=[webhook(hook.url)])
    app = await start_app(config)
    try:
        batch = [order(i, email=i % 4 != 0) for i in range(8)] + [order(99, True, "EUR")]
        status, _, _ = await app.post("/v1/batch", {"batch": batch})
        assert status == 200
        await app.post("/v1/track", order(1, True))  # a retry: a duplicate message
        await hook.wait_for(9)
        await asyncio.sleep(0.2)
        status, report, _ = await request_json(
            "GET", app.url + "/v1/admin/report?since=1h", ADMIN_TOKEN
        )
        assert status == 200
        entry = report["destinations"]["hooks"]["events"]["purchase"]
        assert entry["accepted"] == 9
        assert entry["value"] == {"USD": 84.0, "EUR": 10.5}
        assert entry["latency_ms"]["p50"] <= entry["latency_ms"]["p99"] <= 5000
        quality = entry["match_quality"]
        # 7 of 9 carry an email; all carry the external id (user id) and the IP
        assert quality["coverage"]["email"] == round(7 / 9, 4)
        assert quality["coverage"]["external_id"] == 1.0
        weights = WebhookDestination.match_weights
        with_email = match_quality.score(weights, {"email", "external_id", "ip"})
        without = match_quality.score(weights, {"external_id", "ip"})
        assert quality["mean"] == round((7 * with_email + 2 * without) / 9, 2)
        top = quality["missing"][0]
        assert top["key"] == "phone"  # nobody sent a phone: the biggest lift
        email = next(item for item in quality["missing"] if item["key"] == "email")
        assert email["share"] == round(2 / 9, 4)
        assert email["lift"] == match_quality.lift(weights, "email", round(2 / 9, 4))
        # the unauthenticated are refused
        status, body, _ = await request_json("GET", app.url + "/v1/admin/report")
        assert (status, body["code"]) == (401, "unauthorized")
    finally:
        await app.stop()

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "tracklayer", "report", "--config", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["destinations"]["hooks"]["events"]["purchase"] == entry
    text = subprocess.run(
        [sys.executable, "-m", "tracklayer", "report", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert "value 10.50 EUR, 84.00 USD" in text
    assert "lack phone" in text
