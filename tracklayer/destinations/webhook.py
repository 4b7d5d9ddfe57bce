"""Webhook destination: POST ``{"events": [EVENT, ...]}`` to any URL, signed.

Contract (CONTRACT.md): header ``X-TrackLayer-Signature: sha256=<hex HMAC-SHA256 of the raw
body with secret>``; 2xx accepted; 408, 429, 5xx, timeouts and connection errors retried;
other 4xx rejected with the status and a body excerpt. The receiver gets ``event_id`` as a
stable dedup key across our own redeliveries.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import msgspec

from tracklayer.destinations.base import (
    BatchPolicy,
    DestinationConfig,
    Identifier,
    RateLimit,
    Request,
    Response,
    http_outcome,
    identifiers,
)
from tracklayer.duration import Duration
from tracklayer.model import PERSONAL_FIELDS, Event, Outcome


class WebhookConfig(DestinationConfig, tag="webhook"):
    url: str
    secret: str = ""
    pii: Literal["hashed", "raw"] = "hashed"
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_http_url("url")


_encoder = msgspec.json.Encoder()


def iso8601(seconds: float) -> str:
    """UTC ISO 8601 with milliseconds and a ``Z``, as JavaScript prints dates."""
    whole = math.floor(seconds)
    micro = round((seconds - whole) * 1_000_000)  # datetime's rounding, to the microsecond
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    return f"{_iso_second(whole)}.{micro // 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(whole: int) -> str:
    """Events of one batch mostly share their second: format it once."""
    return datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def sign(secret: str, body: bytes) -> str:
    """The signature header value receivers recompute to trust a delivery."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDestination:
    """Any HTTP endpoint that accepts our canonical events as JSON."""

    config_type: ClassVar[type[DestinationConfig]] = WebhookConfig
    default_batch: ClassVar[BatchPolicy] = BatchPolicy(max_events=100, max_wait=Duration(1.0))
    default_rate_limit: ClassVar[RateLimit] = RateLimit(rps=20, burst=40)
    # Hashed the way Meta's customer information parameters are (the most widely used
    # convention: lowercase email, phone as digits with country code, ...).
    identifiers: ClassVar[tuple[Identifier, ...]] = identifiers("meta", "hashed", *PERSONAL_FIELDS)

    # Match quality for a generic receiver: how many systems can join on each key. Email and
    # phone identify a person almost everywhere; the advertiser's own id joins within its
    # systems; names and address narrow a person down only together; IP and user agent tie
    # to a browser session; click ids and browser cookies tie to an ad click.
    match_weights: ClassVar[dict[str, float]] = {
        "email": 3.0,
        "phone": 2.5,
        "external_id": 1.5,
        "first_name": 0.5,
        "last_name": 0.5,
        "zip": 0.5,
        "ip": 0.5,
        "user_agent": 0.25,
        "click_id": 0.5,
        "browser_id": 0.25,
    }

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config

    def match_keys(self, event: Event) -> set[str]:
        present = {key for key in self.match_weights if event.hashed.get(f"meta.{key}")}
        user = event.user
        if user.ip:
            present.add("ip")
        if user.user_agent:
            present.add("user_agent")
        if any(k not in ("ttp", "ga", "epik", "scid", "rdt_uuid") for k in user.click_ids):
            present.add("click_id")
        if user.fbp or user.fbc or user.click_ids.keys() & {"ttp", "ga", "scid", "rdt_uuid"}:
            present.add("browser_id")
        return present

    def validate(self, event: Event) -> Outcome | None:
        return None

    def build(self, events: list[Event]) -> list[Request]:
        body = _encoder.encode({"events": [self.payload(event) for event in events]})
        headers = {"Content-Type": "application/json", "User-Agent": "TrackLayer"}
        headers.update(self.config.headers)
        if self.config.secret:
            headers["X-TrackLayer-Signature"] = sign(self.config.secret, body)
        return [Request("POST", self.config.url, headers, body, list(range(len(events))))]

    def classify(self, request: Request, response: Response) -> list[Outcome]:
        outcome = http_outcome(response.status, response.headers, response.body)
        return [outcome] * len(request.indexes)

    def preview(self, event: Event) -> dict[str, Any]:
        """The payload as sent, for the live debugger (identifiers already hashed)."""
        return self.payload(event)

    def payload(self, event: Event) -> dict[str, Any]:
        """One EVENT of the webhook body (CONTRACT.md)."""
        return {
            "event_id": event.event_id,
            "name": event.name,
            "source_name": event.source_name,
            "source": event.source,
            "message_id": event.message_id,
            "type": event.type,
            "timestamp": iso8601(event.timestamp),
            "received_at": iso8601(event.received_at),
            "properties": event.properties,
            "user": self.user(event),
            "consent": event.consent,
            "context": msgspec.to_builtins(event.context),
        }

    def user(self, event: Event) -> dict[str, Any]:
        raw = msgspec.to_builtins(event.user)
        if self.config.pii == "raw":
            return raw
        for field in PERSONAL_FIELDS:
            raw.pop(field, None)
            hashed = event.hashed.get(f"meta.{field}")
            if hashed:
                raw[field] = hashed
        return raw
