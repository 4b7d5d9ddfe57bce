"""``tracklayer send-test``: one controlled identify + purchase, through the real pipeline, to one
destination in the platform's test mode, printing what the platform answered.

The "send one controlled flow first" step of a migration: the two Segment messages go
through the same Canonicaliser the daemon uses (names, event id, consent, normalisation and
hashing for the destination's identifiers), then the destination plugin's own
``validate``/``build``/``classify``, with real HTTP. Nothing is stored and nothing is queued.

Test modes: Meta and TikTok get ``test_event_code`` (from the config or
``--test-event-code``; without one the command refuses, so a test never lands in production
data unnoticed); Google Ads sends with ``validateOnly``; GA4 sends to
``/debug/mp/collect``. Other destinations (the webhook) are sent to as configured.

Exit status: 0 when every event the destination takes was accepted, 1 otherwise, 2 when the
test cannot be sent as configured.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from typing import Any, TextIO

import aiohttp
import msgspec

from tracklayer import __version__
from tracklayer.config import Config
from tracklayer.destinations import create
from tracklayer.destinations.base import DestinationConfig, Request, Response
from tracklayer.duration import Duration
from tracklayer.model import Event, Outcome, SegmentMessage
from tracklayer.pipeline.canonical import Arrival, Canonicaliser

# The test customer: made-up, recognisable in the platform's test view, in documentation-only
# ranges (example.com, 555-01xx numbers, TEST-NET-3 IP).
TEST_TRAITS = {
    "email": "tracklayer-send-test@example.com",
    "phone": "+1 650 555 0142",
    "firstName": "Test",
    "lastName": "Customer",
    "address": {"city": "Menlo Park", "state": "CA", "postalCode": "94025", "country": "US"},
}
TEST_IP = "203.0.113.10"
TEST_CONSENT = {
    "ad_storage": "granted",
    "ad_user_data": "granted",
    "ad_personalization": "granted",
    "analytics_storage": "granted",
}
_SECRET_QUERY = re.compile(r"((?:api_secret|access_token|key)=)[^&]+")


class SendTestError(Exception):
    """The test cannot be sent as configured; ``str()`` says what to change."""


def test_mode_config(
    destination: DestinationConfig, test_event_code: str = ""
) -> DestinationConfig:
    """The destination in live mode with the platform's test switch on (validated again, so a
    missing credential is reported the way ``check`` reports it)."""
    data = msgspec.to_builtins(destination, enc_hook=_encode)
    data["mode"] = "live"
    kind = data.get("type")
    if kind in ("meta", "tiktok"):
        data["test_event_code"] = test_event_code or data.get("test_event_code", "")
        if not data["test_event_code"]:
            raise SendTestError(
                "test_event_code: set it in the config or pass --test-event-code (the code"
                " the platform shows under Test events), so the test stays out of live data"
            )
    elif kind == "google_ads":
        data["validate_only"] = True
    elif kind == "ga4":
        data["debug"] = True
    try:
        return msgspec.convert(data, type(destination), dec_hook=_decode)
    except (msgspec.ValidationError, ValueError) as problem:
        raise SendTestError(str(problem).split(" - at ")[0]) from None


def _encode(value: Any) -> Any:
    if isinstance(value, Duration):
        return float(value)
    raise NotImplementedError


def _decode(kind: type, value: Any) -> Any:
    if kind is Duration:
        return Duration(value)
    raise NotImplementedError


def flow_events(config: Config, destination: DestinationConfig, plugin: Any) -> list[Event]:
    """The identify and the purchase, as the daemon would have turned them into events."""
    canonicaliser = Canonicaliser(config, plugin.identifiers)
    now = time.time()
    run = uuid.uuid4().hex[:12]
    context = {
        "traits": TEST_TRAITS,
        "ip": TEST_IP,
        "userAgent": f"TrackLayer-send-test/{__version__}",
        "library": {"name": "tracklayer-send-test", "version": __version__},
        "consent": TEST_CONSENT,
    }
    common: dict[str, Any] = {
        "user_id": "tracklayer-send-test",
        "anonymous_id": f"send-test-{run}",
        "context": context,
    }
    identify = SegmentMessage(
        type="identify", message_id=f"send-test-identify-{run}", traits=TEST_TRAITS, **common
    )
    purchase = SegmentMessage(
        type="track",
        event="Order Completed",
        message_id=f"send-test-purchase-{run}",
        properties={
            "order_id": f"send-test-{run}",
            "revenue": 1.0,
            "currency": "USD",
            "products": [
                {
                    "product_id": "send-test-sku",
                    "name": "TrackLayer test item",
                    "price": 1.0,
                    "quantity": 1,
                }
            ],
        },
        **common,
    )
    arrival = Arrival(source="send-test", received_at=now)
    return [canonicaliser.from_segment(message, None, arrival) for message in (identify, purchase)]


async def run(
    config: Config, destination_id: str, test_event_code: str = "", out: TextIO = sys.stdout
) -> int:
    """Send the flow and print the answer; the exit status (see the module doc)."""
    try:
        destination = test_mode_config(config.destination(destination_id), test_event_code)
    except KeyError as problem:
        print(problem.args[0], file=out)
        return 2
    except SendTestError as problem:
        print(f"{destination_id}: {problem}", file=out)
        return 2
    plugin = create(destination)
    events = flow_events(config, destination, plugin)
    outcomes: list[Outcome | None] = [None] * len(events)
    sendable = []
    for i, event in enumerate(events):
        outcomes[i] = _gate(destination, event) or plugin.validate(event)
        if outcomes[i] is None:
            sendable.append(i)
    print(f"send-test {destination.id} ({destination_kind(destination)}):", file=out)
    timeout = aiohttp.ClientTimeout(total=destination.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if sendable and getattr(plugin, "token_request", None):
            token = plugin.token_request(time.time())
            if token is not None:
                answer = await exchange(session, token, out, label="token")
                refused = (
                    answer
                    if isinstance(answer, Outcome)
                    else plugin.token_response(answer, time.time())
                )
                if refused is not None:
                    for i in sendable:
                        outcomes[i] = refused
                    sendable = []
        if sendable:
            for request in plugin.build([events[i] for i in sendable]):
                answer = await exchange(session, request, out)
                found = (
                    [answer] * len(request.indexes)
                    if isinstance(answer, Outcome)
                    else plugin.classify(request, answer)
                )
                for index, outcome in zip(request.indexes, found, strict=False):
                    outcomes[sendable[index]] = outcome
    ok = True
    for event, outcome in zip(events, outcomes, strict=True):
        outcome = outcome or Outcome("retry", code="unanswered", message="no request carried it")
        detail = " ".join(part for part in (outcome.code, outcome.message) if part)
        print(
            f"  {event.name} ({event.event_id}): {outcome.kind}" + (f" {detail}" if detail else ""),
            file=out,
        )
        if outcome.kind not in ("accepted", "suppressed"):
            ok = False
    if all(o is not None and o.kind == "suppressed" for o in outcomes):
        ok = False  # nothing was sent at all
    print("result: " + ("accepted" if ok else "not accepted"), file=out)
    return 0 if ok else 1


def _gate(destination: DestinationConfig, event: Event) -> Outcome | None:
    """The consent and event filters the daemon applies before the plugin sees an event."""
    if destination.events is not None and event.name not in destination.events:
        return Outcome("suppressed", code="filter", message="not in the destination's events")
    for purpose in destination.requires_consent:
        if not event.consent.get(purpose, False):
            return Outcome("suppressed", code="consent", message=f"no {purpose} consent")
    return None


def destination_kind(destination: DestinationConfig) -> str:
    return type(destination).__name__.removesuffix("Config").lower()


async def exchange(
    session: aiohttp.ClientSession, request: Request, out: TextIO, label: str = "request"
) -> Response | Outcome:
    """One HTTP exchange, printed: the request line (secrets masked) and the answer."""
    shown = _SECRET_QUERY.sub(r"\1***", request.url)
    print(f"{label}: {request.method} {shown}", file=out)
    try:
        async with session.request(
            request.method, request.url, data=request.body, headers=request.headers
        ) as answer:
            body = await answer.read()
            response = Response(answer.status, dict(answer.headers), body)
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        print(f"  no answer: {error or type(error).__name__}", file=out)
        return Outcome("retry", code="connection_error", message=str(error))
    print(f"  status {response.status}", file=out)
    if label != "token":  # a token answer holds the token itself
        print("  " + _pretty(response.body).replace("\n", "\n  "), file=out)
    return response


def _pretty(body: bytes) -> str:
    if not body:
        return "(empty body)"
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body[:2000].decode("utf-8", "replace")
