"""Google Analytics 4 Measurement Protocol (unversioned; the GA4 protocol as of 2026).

Follows Google's documentation at developers.google.com/analytics/devguides/collection/
protocol/ga4: "Send Measurement Protocol events" and the "Measurement Protocol reference"
(``POST /mp/collect?measurement_id=&api_secret=`` or ``firebase_app_id=`` for app streams;
``https://region1.google-analytics.com`` to have data collected in the EU; ``client_id`` /
``app_instance_id``, ``user_id``, ``timestamp_micros`` backdated at most 72 hours,
``consent``; at most 25 events a request, 25 parameters an event, names of 40 characters,
values of 100, a body under 130 kB; a 2xx whatever the payload), "Validating events"
(``/debug/mp/collect`` answers ``validationMessages``), "Send user-provided data with
User-ID" (``user_data``: SHA-256 hex of normalised email, E.164 phone and names; city, region,
postal code and country unhashed) and the recommended events reference (``purchase`` with
``transaction_id``, ``value``, ``currency``, ``items[]``).

Our rules where the documentation leaves a choice:

- client_id, first found: ``properties.ga_client_id`` or ``properties.client_id`` (a client
  id as gtag reports it); the ``_ga`` cookie value (``GA1.1.<id>.<ts>`` → ``<id>.<ts>``) as
  the pipeline captured it (``user.click_ids["ga"]``, from the source's ``ga``) or as
  ``properties._ga``; the anonymous id; the user id. App streams
  (``firebase_app_id``) need ``properties.app_instance_id``.
- ``session_id`` from ``properties.ga_session_id`` / ``properties.session_id`` when given.
- ``user_data`` is sent only with a ``user_id`` (Google asks for both together).
- Events of one request share the request-level fields (client, user, consent), so a batch
  is grouped by them first and then cut at 25 events; ``timestamp_micros`` is per event.
- The production endpoint answers 2xx even for bad data, so every 2xx is "accepted";
  ``send-test`` and observe mode use ``/debug/mp/collect`` and report its messages. A non-2xx
  is a bad request Google says not to retry, except 429 and 5xx.
"""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

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
)
from tracklayer.destinations.google_ads import google_consent
from tracklayer.duration import Duration
from tracklayer.model import Event, Outcome

GLOBAL_ENDPOINT = "https://www.google-analytics.com"
EU_ENDPOINT = "https://region1.google-analytics.com"
MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_BODY = 130_000
MAX_NAME = 40
MAX_VALUE = 100
MAX_USER_ID = 256
MAX_AGE = 72 * 3600.0 - 60.0  # "backdate ... up to 72 hours"; a minute's margin in flight

# Canonical name → GA4 recommended event; the canonical names are GA4's in most cases.
EVENT_NAMES = {"lead": "generate_lead"}
RESERVED_NAMES = frozenset(
    {
        "ad_activeview",
        "ad_click",
        "ad_exposure",
        "ad_query",
        "ad_reward",
        "adunit_exposure",
        "app_background",
        "app_clear_data",
        "app_exception",
        "app_remove",
        "app_store_refund",
        "app_store_subscription_cancel",
        "app_store_subscription_convert",
        "app_store_subscription_renew",
        "app_update",
        "app_upgrade",
        "dynamic_link_app_open",
        "dynamic_link_app_update",
        "dynamic_link_first_open",
        "error",
        "first_open",
        "first_visit",
        "in_app_purchase",
        "notification_dismiss",
        "notification_foreground",
        "notification_open",
        "notification_receive",
        "os_update",
        "session_start",
        "session_start_with_rollout",
        "user_engagement",
    }
)
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
_GA_COOKIE = re.compile(r"GA\d\.\d+\.(\d+\.\d+)")
_EVENT_INDEX = re.compile(r"index:?\s*\[?(\d+)\]?", re.IGNORECASE)
_NOT_EVENTS = frozenset({"identify", "group", "alias"})


class GA4Config(DestinationConfig, tag="ga4"):
    """``ga4`` destination keys (CONTRACT.md); ``debug`` sends to the validation server."""

    measurement_id: str = ""
    firebase_app_id: str = ""
    api_secret: str = ""
    region: Literal["global", "eu"] = "global"
    debug: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.endpoint:  # optional: the platform's own endpoint by default
            self.require_http_url("endpoint")
        if self.measurement_id and self.firebase_app_id:
            raise ValueError(
                "firebase_app_id: set measurement_id (web) or firebase_app_id (app), not both"
            )
        if self.mode == "live":
            if not (self.measurement_id or self.firebase_app_id):
                raise ValueError("measurement_id: required in live mode (or firebase_app_id)")
            if not self.api_secret:
                raise ValueError("api_secret: required in live mode")

    @property
    def base_url(self) -> str:
        default = EU_ENDPOINT if self.region == "eu" else GLOBAL_ENDPOINT
        return (self.endpoint or default).rstrip("/")


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


class GA4Destination:
    """GA4 Measurement Protocol (``POST /mp/collect``)."""

    config_type: ClassVar[type[DestinationConfig]] = GA4Config
    default_batch: ClassVar[BatchPolicy] = BatchPolicy(
        max_events=MAX_EVENTS, max_wait=Duration(1.0)
    )
    # No published request rate; this is gentle and raised by configuration.
    default_rate_limit: ClassVar[RateLimit] = RateLimit(rps=20, burst=40)
    identifiers: ClassVar[tuple[Identifier, ...]] = (
        *identifiers("google", "hashed", "email", "phone", "first_name", "last_name"),
        *identifiers("google", "raw", "city", "state", "zip", "country"),
    )

    # Match quality (Scored): the client id joins the event to the browser's gtag session (and
    # through it to the ad click); the user id joins devices; user-provided email, phone and
    # address let Google match the person for ads measurement; a session id puts the event
    # in its session.
    match_weights: ClassVar[dict[str, float]] = {
        "client_id": 3.0,
        "user_id": 2.0,
        "email": 2.0,
        "phone": 1.5,
        "address": 1.0,
        "session_id": 1.0,
    }

    def __init__(self, config: GA4Config, clock=time.time) -> None:
        self.config = config
        self.clock = clock

    def match_keys(self, event: Event) -> set[str]:
        top = self.request_fields(event)
        user_data = top.get("user_data", {})
        keys = {key for key in ("user_id",) if key in top}
        if self.client(event) and self.client(event) != event.user.user_id:
            keys.add("client_id")  # a user id standing in for the client id joins nothing
        keys.update(
            name
            for name, field in (
                ("email", "sha256_email_address"),
                ("phone", "sha256_phone_number"),
                ("address", "address"),
            )
            if field in user_data
        )
        if "session_id" in self.params(event):
            keys.add("session_id")
        return keys

    # validate -----------------------------------------------------------------------------

    def validate(self, event: Event) -> Outcome | None:
        if event.type in _NOT_EVENTS:
            return Outcome("suppressed", code="filter", message=f"{event.type} is not a GA4 event")
        now = self.clock()
        if now - event.timestamp > MAX_AGE:
            return Outcome(
                "rejected",
                code="too_old",
                message="timestamp_micros can be backdated at most 72 hours",
            )
        if event.timestamp > now + 1:
            return Outcome("rejected", code="future_time", message="event time is in the future")
        name = self.event_name(event)
        if (
            not _NAME.fullmatch(name)
            or name in RESERVED_NAMES
            or name.startswith(RESERVED_PREFIXES)
        ):
            return Outcome(
                "rejected",
                code="invalid_name",
                message=f"{name!r}: GA4 names start with a letter, use letters, digits and _,"
                " at most 40 characters, and are not reserved",
            )
        if not self.client(event):
            which = "app_instance_id" if self.config.firebase_app_id else "client_id"
            return Outcome(
                "rejected", code=f"missing_{which}", message=f"no {which} for this event"
            )
        params = self.params(event)
        if "value" in params and "currency" not in params:
            return Outcome("rejected", code="missing_currency", message="a value needs a currency")
        return None

    # build --------------------------------------------------------------------------------

    def build(self, events: list[Event]) -> list[Request]:
        groups: dict[bytes, list[int]] = {}
        tops: dict[bytes, dict[str, Any]] = {}
        for i, event in enumerate(events):
            top = self.request_fields(event)
            key = _encoder.encode(top)
            groups.setdefault(key, []).append(i)
            tops[key] = top
        requests: list[Request] = []
        for key, indexes in groups.items():
            for start in range(0, len(indexes), MAX_EVENTS):
                chunk = indexes[start : start + MAX_EVENTS]
                requests.extend(self.requests(tops[key], [events[i] for i in chunk], chunk))
        return requests

    def requests(
        self, top: dict[str, Any], events: list[Event], indexes: list[int]
    ) -> list[Request]:
        """One request, or more if the body would pass 130 kB."""
        body = _encoder.encode({**top, "events": [self.event(event) for event in events]})
        if len(body) > MAX_BODY and len(events) > 1:
            half = len(events) // 2
            return self.requests(top, events[:half], indexes[:half]) + self.requests(
                top, events[half:], indexes[half:]
            )
        headers = {"Content-Type": "application/json", "User-Agent": f"TrackLayer/{__version__}"}
        return [Request("POST", self.url(), headers, body, indexes)]

    def url(self) -> str:
        config = self.config
        # Observe mode and send-test validate; production /mp/collect proves nothing.
        path = "/debug/mp/collect" if config.debug or config.mode == "observe" else "/mp/collect"
        stream = (
            {"firebase_app_id": config.firebase_app_id}
            if config.firebase_app_id
            else {"measurement_id": config.measurement_id}
        )
        return f"{config.base_url}{path}?{urlencode({**stream, 'api_secret': config.api_secret})}"

    def client(self, event: Event) -> str:
        properties = event.properties
        if self.config.firebase_app_id:
            return commerce.text(properties.get("app_instance_id"))
        for key in ("ga_client_id", "client_id"):
            found = commerce.text(properties.get(key))
            if found:
                return found
        for raw in (event.user.click_ids.get("ga", ""), commerce.text(properties.get("_ga"))):
            cookie = _GA_COOKIE.fullmatch(raw)
            if cookie:
                return cookie.group(1)
        return event.user.anonymous_id or event.user.user_id

    def request_fields(self, event: Event) -> dict[str, Any]:
        """The request-level fields: who the events are about."""
        top: dict[str, Any] = {}
        client_key = "app_instance_id" if self.config.firebase_app_id else "client_id"
        top[client_key] = self.client(event)
        user_id = event.user.user_id[:MAX_USER_ID]
        if user_id:
            top["user_id"] = user_id
            user_data = self.user_data(event)
            if user_data:
                top["user_data"] = user_data
        consent = {
            signal: "GRANTED" if granted else "DENIED"
            for signal, granted in google_consent(event).items()
        }
        if consent:
            top["consent"] = consent
        if event.user.ip:
            top["ip_override"] = event.user.ip
        if event.user.user_agent:
            top["user_agent"] = event.user.user_agent
        return top

    def user_data(self, event: Event) -> dict[str, Any]:
        hashed, raw = event.hashed, event.normalized
        data: dict[str, Any] = {}
        if hashed.get("google.email"):
            data["sha256_email_address"] = [hashed["google.email"]]
        if hashed.get("google.phone"):
            data["sha256_phone_number"] = [hashed["google.phone"]]
        address = {
            "sha256_first_name": hashed.get("google.first_name"),
            "sha256_last_name": hashed.get("google.last_name"),
            "city": raw.get("google.city"),
            "region": raw.get("google.state"),
            "postal_code": raw.get("google.zip"),
            "country": (raw.get("google.country") or "").upper() or None,
        }
        address = {key: value for key, value in address.items() if value}
        if address:
            data["address"] = [address]
        return data

    def event_name(self, event: Event) -> str:
        return self.config.rename.get(event.name) or EVENT_NAMES.get(event.name, event.name)

    def event(self, event: Event) -> dict[str, Any]:
        item: dict[str, Any] = {
            "name": self.event_name(event),
            "params": self.params(event),
            "timestamp_micros": int(event.timestamp * 1_000_000),
        }
        return item

    def params(self, event: Event) -> dict[str, Any]:
        properties = event.properties
        params: dict[str, Any] = {}
        if event.order_id and event.name in ("purchase", "refund"):
            params["transaction_id"] = event.order_id
        value = commerce.value(properties)
        if value is not None:
            params["value"] = value
        currency = commerce.currency(properties)
        if currency:
            params["currency"] = currency
        for key in ("tax", "shipping"):
            amount = commerce.number(properties.get(key))
            if amount is not None:
                params[key] = amount
        for source, target in (
            ("coupon", "coupon"),
            ("query", "search_term"),
            ("method", "method"),
            ("ga_session_id", "session_id"),
            ("session_id", "session_id"),
        ):
            found = commerce.text(properties.get(source))
            if found and target not in params:
                params[target] = found[:MAX_VALUE]
        if event.context.page_url:
            params["page_location"] = event.context.page_url[:1000]
        if event.context.referrer:
            params["page_referrer"] = event.context.referrer[:420]
        lines = commerce.items(properties)
        if lines:
            params["items"] = [_item(line) for line in lines]
        # At most 25 parameters an event (items counts as one).
        return dict(list(params.items())[:MAX_PARAMS])

    # classify -----------------------------------------------------------------------------

    def classify(self, request: Request, response: Response) -> list[Outcome]:
        count = len(request.indexes)
        if not 200 <= response.status < 300:
            return [http_outcome(response.status, response.headers, response.body)] * count
        if "/debug/" not in request.url:
            return [Outcome("accepted")] * count
        try:
            document = _decoder.decode(response.body)
        except msgspec.DecodeError:
            return [Outcome("warning", code="unreadable", message=excerpt(response.body))] * count
        messages = document.get("validationMessages") if isinstance(document, dict) else None
        if not messages:
            return [Outcome("accepted")] * count
        outcomes: list[Outcome | None] = [None] * count
        general: list[Outcome] = []
        for message in messages:
            if not isinstance(message, dict):
                continue
            code = str(message.get("validationCode") or "VALUE_INVALID")
            text = f"{message.get('fieldPath', '')}: {message.get('description', '')}".strip(": ")
            outcome = Outcome("rejected", code=code, message=text)
            match = _EVENT_INDEX.search(str(message.get("description", "")))
            if str(message.get("fieldPath", "")).startswith("events") and match:
                index = int(match.group(1))
                if index < count and outcomes[index] is None:
                    outcomes[index] = outcome
                    continue
            general.append(outcome)
        fallback = general[0] if general else Outcome("accepted")
        return [o or fallback for o in outcomes]


def _item(line: commerce.Item) -> dict[str, Any]:
    item: dict[str, Any] = {"item_id": line.id[:MAX_VALUE], "quantity": line.quantity}
    if line.name:
        item["item_name"] = line.name[:MAX_VALUE]
    if line.price is not None:
        item["price"] = line.price
    if line.category:
        item["item_category"] = line.category[:MAX_VALUE]
    if line.brand:
        item["item_brand"] = line.brand[:MAX_VALUE]
    return item
