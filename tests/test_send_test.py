"""``tracklayer send-test``: one identify + purchase through the real pipeline to a platform's
test mode (the fakes), printing the answer; exit 0 only when the platform accepted."""

from __future__ import annotations

import asyncio
import io
import sys

import yaml

from tests.destinations import config as daemon_config
from tests.fakes.ga4 import FakeGA4, validation
from tests.fakes.google_ads import FakeGoogleAds
from tests.fakes.meta import FakeMeta
from tests.fakes.tiktok import FakeTikTok, tiktok_answer
from tracklayer import send_test
from tracklayer.config import parse


async def run(tmp_path, destination: dict, code: str = "") -> tuple[int, str]:
    out = io.StringIO()
    config = parse(daemon_config(tmp_path, destination), "t.yaml")
    status = await send_test.run(config, destination["id"], code, out=out)
    return status, out.getvalue()


async def test_meta_through_the_cli_with_a_test_event_code(tmp_path):
    meta = await FakeMeta().start()
    try:
        destination = {
            "id": "meta",
            "type": "meta",
            "mode": "observe",  # as the example config runs it: send-test still sends
            "endpoint": meta.endpoint,
            "pixel_id": meta.pixel_id,
            "access_token": meta.access_token,
        }
        path = tmp_path / "t.yaml"
        path.write_text(yaml.safe_dump(daemon_config(tmp_path, destination)))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tracklayer", "send-test", "--config", str(path),
            "--destination", "meta", "--test-event-code", "TEST4242",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        text = output.decode()
        assert process.returncode == 0, text
        assert meta.problems == []
        [body] = meta.bodies
        assert body["test_event_code"] == "TEST4242"
        [event] = body["data"]
        assert event["event_name"] == "Purchase"
        assert event["user_data"]["em"]  # identity from the identify's traits, hashed
        assert "access_token=" not in text and meta.access_token not in text
        assert "status 200" in text and '"events_received": 1' in text
        assert "identify (" in text and ": suppressed filter" in text
        assert "purchase (purchase:send-test-" in text and "): accepted" in text
        assert text.rstrip().endswith("result: accepted")
    finally:
        await meta.stop()


async def test_meta_refuses_without_a_test_event_code(tmp_path):
    destination = {"id": "meta", "type": "meta", "pixel_id": "1", "access_token": "t"}
    status, text = await run(tmp_path, destination)
    assert status == 2
    assert "test_event_code" in text


async def test_a_missing_credential_is_named(tmp_path):
    destination = {"id": "meta", "type": "meta", "mode": "observe", "pixel_id": "1"}
    status, text = await run(tmp_path, destination, code="TEST1")
    assert status == 2
    assert "access_token: required in live mode" in text


async def test_ga4_uses_the_validation_server_and_reports_its_messages(tmp_path):
    ga4 = await FakeGA4().start()
    try:
        destination = {
            "id": "ga4",
            "type": "ga4",
            "endpoint": ga4.endpoint,
            "measurement_id": ga4.measurement_id,
            "api_secret": ga4.api_secret,
        }
        status, text = await run(tmp_path, destination)
        assert status == 0, text
        assert ga4.requests[0].path == "/debug/mp/collect"
        assert "api_secret=***" in text and ga4.api_secret not in text
        assert ga4.problems == []

        message = ("events", "Event at index: [0] has invalid params.", "VALUE_INVALID")
        ga4.script = [validation([message])]
        status, text = await run(tmp_path, destination)
        assert status == 1
        assert "validationMessages" in text and "rejected VALUE_INVALID" in text
    finally:
        await ga4.stop()


async def test_google_ads_validates_only(tmp_path):
    google = await FakeGoogleAds().start()
    try:
        destination = {
            "id": "gads",
            "type": "google_ads",
            "endpoint": google.endpoint,
            "customer_id": "1234567890",
            "conversion_action_id": "42",
            "oauth": {
                "client_id": google.client_id,
                "client_secret": google.client_secret,
                "refresh_token": google.refresh_token,
                "token_url": google.token_url,
            },
        }
        status, text = await run(tmp_path, destination)
        assert status == 0, text
        assert google.bodies[0]["validateOnly"] is True
        assert google.problems == []
        assert "token: POST" in text and "ya29" not in text  # the token is never printed
        assert '"requestId"' in text
    finally:
        await google.stop()


async def test_tiktok_prints_the_platform_code_and_exits_1(tmp_path):
    tiktok = await FakeTikTok().start()
    try:
        tiktok.script = [tiktok_answer(40001, "No permission to operate pixel code")]
        destination = {
            "id": "tiktok",
            "type": "tiktok",
            "endpoint": tiktok.endpoint,
            "pixel_code": tiktok.pixel_code,
            "access_token": tiktok.access_token,
            "test_event_code": "TEST99",
        }
        status, text = await run(tmp_path, destination)
        assert status == 1
        assert tiktok.bodies[0]["test_event_code"] == "TEST99"
        assert "rejected 40001 No permission to operate pixel code" in text
    finally:
        await tiktok.stop()
