"""TikTok Events API 2.0 for web events, TikTok API for Business v1.3.

Follows TikTok's documentation, TikTok API for Business (business-api.tiktok.com/portal/
docs): Events API 2.0 "Report events" (``POST /open_api/v1.3/event/track/`` with an
``Access-Token`` header; ``event_source`` + ``event_source_id``; ``data[]`` of up to 1,000
events with ``event``, ``event_time`` in Unix seconds, ``event_id``, ``user``, ``properties``,
``page``, ``limited_data_use``; ``test_event_code``), its customer information parameters
(email, phone and external_id SHA-256 hashed; ``ttclid``, ``ttp``, ``ip``, ``user_agent`` raw),
the standard events list, TikTok's "Event deduplication" help article (``event`` +
``event_id``, 48 hours) and the API's return codes (HTTP 200 with ``code``: 0 is success,
40100 "Too many requests", other 4xxxx are request errors, 5xxxx are TikTok's).

Our rules where the documentation leaves a choice:

- ``event_source`` is always ``web`` with the pixel code as ``event_source_id``: the other
  sources (``app``, ``offline``, ``crm``) need an app id or an event set id this destination
  is not configured with.
- ``ttp`` is the ``_ttp`` cookie as the pipeline captured it (``user.click_ids["ttp"]``,
  from the source's ``ttp``), else ``properties._ttp`` / ``properties.ttp``; ``ttclid`` is
  the captured click id.
- external_id: the pipeline's ``tiktok.external_id``, else SHA-256 of the user id
  (lowercase, no whitespace).
- TikTok publishes no maximum event age we could find; we refuse events older than 7 days,
  past which TikTok's attribution and deduplication windows no longer apply to web events.
- A 5xxxx code and 40100 are retried (40100 as throttling); any other non-zero code is a
  permanent rejection of every event in the request.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, ClassVar

import msgspec

from tracklayer import __version__
from tracklayer.destinations import commerce
from tracklayer.destinations.base import (
    BatchPolicy,
    DestinationConfig,
    Identifier,
    RateLimit,
    Request,
    Response,
    excerpt,
    http_outcome,
    identifiers,
    retry_after_seconds,
)
from tracklayer.duration import Duration
from tracklayer.model import Event, Outcome

DEFAULT_ENDPOINT = "https://business-api.tiktok.com"
DEFAULT_VERSION = "v1.3"
MAX_EVENTS = 1000
MAX_AGE = 7 * 86400.0
THROTTLED_CODE = 40100

# Canonical name → TikTok standard event; others go as custom events. ``rename`` overrides.
EVENT_NAMES = {
    "purchase": "CompletePayment",
    "add_to_cart": "AddToCart",
    "begin_checkout": "InitiateCheckout",
    "add_payment_info": "AddPaymentInfo",
    "view_item": "ViewContent",
    "search": "Search",
    "add_to_wishlist": "AddToWishlist",
    "sign_up": "CompleteRegistration",
    "lead": "Lead",
    "start_trial": "StartTrial",
    "subscribe": "Subscribe",
}
HASHED_KEYS = {"email": "email", "phone": "phone", "external_id": "external_id"}
_VERSION = re.compile(r"v\d+\.\d+")
_NOT_EVENTS = frozenset({"identify", "group", "alias"})


class TikTokConfig(DestinationConfig, tag="tiktok"):
    """``tiktok`` destination keys (CONTRACT.md), plus ``api_version``."""

    endpoint: str = DEFAULT_ENDPOINT
    pixel_code: str = ""
    access_token: str = ""
    test_event_code: str = ""
    api_version: str = DEFAULT_VERSION

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_http_url("endpoint")
        if not _VERSION.fullmatch(self.api_version):
            raise ValueError(f"api_version: expected a version like {DEFAULT_VERSION}")
        self.require_live("pixel_code", "access_token")


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class TikTokDestination:
    """TikTok Events API 2.0 (``POST /open_api/v1.3/event/track/``)."""

    config_type: ClassVar[type[DestinationConfig]] = TikTokConfig
    default_batch: ClassVar[BatchPolicy] = BatchPolicy(
        max_events=MAX_EVENTS, max_wait=Duration(1.0)
    )
    default_rate_limit: ClassVar[RateLimit] = RateLimit(rps=20, burst=40)
    identifiers: ClassVar[tuple[Identifier, ...]] = identifiers(
        "tiktok", "hashed", *HASHED_KEYS.values()
    )

    # Match quality (Scored): ttclid ties the event to the ad click; email and phone identify
    # the person; external_id joins the advertiser's own users; the _ttp cookie ties it to
    # the browser the pixel saw; IP and user agent only to a device.
    match_weights: ClassVar[dict[str, float]] = {
        "ttclid": 3.0,
        "email": 3.0,
        "phone": 2.5,
        "external_id": 1.5,
        "ttp": 1.5,
        "ip": 1.0,
        "user_agent": 0.5,
    }

    def __init__(self, config: TikTokConfig, clock=time.time) -> None:
        self.config = config
        self.clock = clock

    def match_keys(self, event: Event) -> set[str]:
        return set(self.user(event)) & set(self.match_weights)

    def validate(self, event: Event) -> Outcome | None:
        if event.type in _NOT_EVENTS:
            return Outcome(
                "suppressed", code="filter", message=f"{event.type} is not a TikTok event"
            )
        now = self.clock()
        if now - event.timestamp > MAX_AGE:
            return Outcome("rejected", code="too_old", message="event is older than 7 days")
        if event.timestamp > now + 1:
            return Outcome("rejected", code="future_time", message="event_time is in the future")
        user = self.user(event)
        if not (set(user) & {"email", "phone", "external_id", "ttclid", "ttp"}) and not (
            "ip" in user and "user_agent" in user
        ):
            return Outcome(
                "rejected", code="no_identifiers", message="no customer information to match on"
            )
        return None

    def build(self, events: list[Event]) -> list[Request]:
        config = self.config
        url = f"{config.endpoint.rstrip('/')}/open_api/{config.api_version}/event/track/"
        headers = {
            "Access-Token": config.access_token,
            "Content-Type": "application/json",
            "User-Agent": f"TrackLayer/{__version__}",
        }
        requests = []
        for start in range(0, len(events), MAX_EVENTS):
            chunk = events[start : start + MAX_EVENTS]
            body: dict[str, Any] = {
                "event_source": "web",
                "event_source_id": config.pixel_code,
                "data": [self.event(event) for event in chunk],
            }
            if config.test_event_code:
                body["test_event_code"] = config.test_event_code
            requests.append(
                Request(
                    "POST",
                    url,
                    headers,
                    _encoder.encode(body),
                    list(range(start, start + len(chunk))),
                )
            )
        return requests

    def event_name(self, event: Event) -> str:
        return self.config.rename.get(event.name) or EVENT_NAMES.get(event.name, event.name)

    def event(self, event: Event) -> dict[str, Any]:
        item: dict[str, Any] = {
            "event": self.event_name(event),
            "event_time": int(event.timestamp),
            "event_id": event.event_id,
            "user": self.user(event),
            "limited_data_use": event.ldu,
        }
        properties = self.properties(event)
        if properties:
            item["properties"] = properties
        page = {}
        if event.context.page_url:
            page["url"] = event.context.page_url
        if event.context.referrer:
            page["referrer"] = event.context.referrer
        if page:
            item["page"] = page
        return item

    def user(self, event: Event) -> dict[str, Any]:
        user: dict[str, Any] = {}
        for key, field in HASHED_KEYS.items():
            hashed = event.hashed.get(f"tiktok.{field}")
            if hashed:
                user[key] = hashed
        if "external_id" not in user and event.user.user_id:
            normal = "".join(event.user.user_id.lower().split())
            user["external_id"] = hashlib.sha256(normal.encode("utf-8")).hexdigest()
        ttclid = event.user.click_ids.get("ttclid")
        if ttclid:
            user["ttclid"] = ttclid
        ttp = event.user.click_ids.get("ttp") or commerce.text(
            event.properties.get("_ttp") or event.properties.get("ttp")
        )
        if ttp:
            user["ttp"] = ttp
        if event.user.ip:
            user["ip"] = event.user.ip
        if event.user.user_agent:
            user["user_agent"] = event.user.user_agent
        if event.context.locale:
            user["locale"] = event.context.locale
        return user

    def properties(self, event: Event) -> dict[str, Any]:
        source = event.properties
        properties: dict[str, Any] = {}
        value = commerce.value(source)
        if value is not None:
            properties["value"] = value
        currency = commerce.currency(source)
        if currency:
            properties["currency"] = currency
        if event.order_id:
            properties["order_id"] = event.order_id
        lines = commerce.items(source)
        if lines:
            properties["content_type"] = "product"
            contents = []
            for line in lines:
                content: dict[str, Any] = {"content_id": line.id, "quantity": line.quantity}
                if line.price is not None:
                    content["price"] = line.price
                if line.name:
                    content["content_name"] = line.name
                if line.category:
                    content["content_category"] = line.category
                if line.brand:
                    content["brand"] = line.brand
                contents.append(content)
            properties["contents"] = contents
        query = commerce.text(source.get("query"))
        if query:
            properties["query"] = query
        return properties

    def classify(self, request: Request, response: Response) -> list[Outcome]:
        count = len(request.indexes)
        try:
            document = _decoder.decode(response.body) if response.body else None
        except msgspec.DecodeError:
            document = None
        code = document.get("code") if isinstance(document, dict) else None
        if not isinstance(code, int) or isinstance(code, bool):
            outcome = http_outcome(response.status, response.headers, response.body)
            if outcome.kind == "accepted":  # a 2xx without TikTok's code proves nothing
                outcome = Outcome("warning", code="unreadable", message=excerpt(response.body))
            return [outcome] * count
        message = str(document.get("message") or "")
        request_id = document.get("request_id")
        if request_id:
            message = f"{message} (request_id {request_id})".strip()
        if code == 0:
            return [Outcome("accepted")] * count
        retry_after = retry_after_seconds(response.headers)
        if code == THROTTLED_CODE:
            return [
                Outcome(
                    "retry",
                    code=str(code),
                    message=message,
                    retry_after=retry_after,
                    throttled=True,
                )
            ] * count
        if code >= 50000 or response.status >= 500:
            return [
                Outcome("retry", code=str(code), message=message, retry_after=retry_after)
            ] * count
        return [Outcome("rejected", code=str(code), message=message)] * count
