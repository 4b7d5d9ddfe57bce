"""The real segment-analytics-python client, pointed at a running daemon, delivers each
call to a fake webhook exactly once, signed."""

from __future__ import annotations

import asyncio

import pytest
from segment.analytics import Client

from tests.harness import WRITE_KEY, Daemon, base_config, webhook


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
async def test_segment_python_client_reaches_webhook_once(tmp_path, hook, daemons, gzip):
    daemon = Daemon(tmp_path, base_config(tmp_path, destinations=[webhook(hook.url)]))
    daemons.append(daemon)
    await asyncio.to_thread(daemon.start)

    errors: list[Exception] = []
    client = Client(
        WRITE_KEY,
        host=daemon.url,
        gzip=gzip,
        max_retries=1,
        on_error=lambda error, batch: errors.append(error),
        upload_interval=0.05,
    )
    client.identify("user-1", {"email": "Ada@Example.com", "firstName": "Ada"})
    client.page("user-1", "Docs", "Home", {"url": "https://shop.example.com/?x=1"})
    client.track(
        "user-1",
        "Order Completed",
        {"order_id": "o-100", "revenue": 42.5, "currency": "EUR"},
    )
    await asyncio.to_thread(client.flush)
    await asyncio.to_thread(client.join)
    assert errors == []

    events = await hook.wait_for(3)
    await asyncio.sleep(0.3)  # nothing more may arrive
    assert hook.problems == []
    assert len(hook.accepted_events) == 3
    by_name = {event["name"]: event for event in events}
    assert set(by_name) == {"identify", "page_view", "purchase"}

    purchase = by_name["purchase"]
    assert purchase["source_name"] == "Order Completed"
    assert purchase["source"] == "segment"
    assert purchase["event_id"] == "purchase:o-100"
    assert purchase["properties"]["revenue"] == 42.5
    assert purchase["user"]["user_id"] == "user-1"

    identify = by_name["identify"]
    # pii: hashed (the default): the webhook gets the SHA-256 of the normalised email only
    import hashlib

    assert identify["user"]["email"] == hashlib.sha256(b"ada@example.com").hexdigest()
    assert "Ada@Example.com" not in str(events)
    assert by_name["page_view"]["type"] == "page"
    for event in events:
        assert event["message_id"]  # the client's messageId travels unchanged
        assert event["timestamp"].endswith("Z")
