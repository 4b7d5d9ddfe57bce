"""Helpers shared by the platform destination tests: a customer with every identifier, native
events built around them, and ways to wait for what the daemon did."""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime
from typing import Any

from tests.harness import Running, base_config

# A customer as a shop would send them: messy case, spacing and formats the normalisers fix.
USER: dict[str, Any] = {
    "user_id": "u-42",
    "anonymous_id": "anon-42",
    "email": " John.Smith+promo@Gmail.com ",
    "phone": "+1 (650) 555-1212",
    "first_name": "Mary",
    "last_name": "Valéry",
    "city": "Menlo Park",
    "state": "CA",
    "zip": "94025-1234",
    "country": "US",
    "date_of_birth": "19970216",
    "gender": "f",
    "external_id": "CRM-0042",
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605",
    "fbp": "fb.1.1596403881668.1116446470",
    "fbc": "fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890",
    "click_ids": {"gclid": "Cj0KCQiA-test_gclid", "ttclid": "E.C.P.test-ttclid"},
}
CONTEXT = {
    "page_url": "https://shop.example.com/checkout/thanks",
    "referrer": "https://shop.example.com/cart",
    "locale": "en-US",
}
ITEMS = [
    {"id": "sku-1", "name": "Socks", "price": 8.5, "quantity": 2, "category": "Apparel"},
    {"id": "sku-2", "name": "Hat", "price": 25.5, "quantity": 1, "category": "Apparel"},
]


def config(tmp_path, *destinations: dict[str, Any]) -> dict[str, Any]:
    """A daemon config with these destinations and an ``ads`` consent purpose."""
    consent = {"purposes": {"ads": ["Advertising"]}, "default": "grant"}
    return base_config(tmp_path, destinations=list(destinations), consent=consent)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def purchase(
    n: int | str = 1, *, age: float = 60.0, user: dict | None = None, **properties: Any
) -> dict[str, Any]:
    """A native ``purchase`` of order ``o-<n>`` that happened ``age`` seconds ago."""
    props = {"order_id": f"o-{n}", "value": 42.5, "currency": "usd", "items": ITEMS}
    props.update(properties)
    return {
        "name": "purchase",
        "message_id": f"m-{n}",
        "timestamp": iso(time.time() - age),
        "user": user if user is not None else USER,
        "properties": props,
        "consent": {"ads": True},
        "context": CONTEXT,
    }


async def send(app: Running, events: list[dict[str, Any]], chunk: int = 200) -> None:
    """POST native events in batches; every one must be accepted at ingest."""
    for start in range(0, len(events), chunk):
        part = events[start : start + chunk]
        status, body, _ = await app.post("/v1/events", {"batch": part})
        assert status == 200, body
        assert not body.get("rejected"), body


async def dead_letters(app: Running) -> list[tuple[str, str, str]]:
    async with app.app.reader.execute(
        "SELECT outcome, code, reason FROM dead_letters ORDER BY id"
    ) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]


def delivered(app: Running, destination: str, outcome: str) -> float:
    return app.app.metrics.deliveries.labels(destination, outcome)._value.get()


async def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in time")
        await asyncio.sleep(0.02)


async def wait_for_dead(app: Running, count: int, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        found = await dead_letters(app)
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} dead letters, got {found}")
        await asyncio.sleep(0.05)


FAST_RETRY = {"max_attempts": 5, "initial_backoff": "20ms", "max_backoff": "100ms"}
FAST_BATCH = {"max_events": 100, "max_wait": "50ms"}
