"""Meta Conversions API: server events to a dataset (pixel), Graph API v26.0 by default.

Follows Meta's developer documentation, Conversions API (developers.facebook.com/
documentation/ads-commerce/conversions-api): "Using the API" (endpoint, 1,000 events per
request, a bad event rejects the whole request, test_event_code), "Server Event Parameters"
(event_time in Unix seconds, at most 7 days old; action_source; event_source_url and
client_user_agent required for website events; data_processing_options), "Customer
Information Parameters" (what is SHA-256 hashed and what must not be), "Custom Data", "fbp and
fbc", "Deduplicate Pixel and Server Events" (event_name + event_id); and the Graph API "Error
Handling" and "Rate Limiting" pages (error codes, X-Business-Use-Case-Usage). The version is
the one the official facebook-business SDK pins (26.0.x); CAPI versions live at least two
years. ``api_version`` overrides it.

Our rules where the documentation leaves a choice:

- action_source: an explicit ``properties.action_source`` naming one of Meta's values wins;
  else ``website`` when the event has a page URL and a user agent (Meta requires both for
  website events); else ``other``. ``app`` is never inferred: Meta requires ``app_data``
  (device extinfo) for app events and no source gives it to us.
- external_id: the pipeline's ``meta.external_id``; else SHA-256 of the ``user_id`` in the
  same form (lowercase, no whitespace), since Meta asks for the advertiser's user id hashed
  the same way on every channel.
- fbc: the browser's ``_fbc`` when well formed; else built from a captured ``fbclid`` as
  ``fb.1.<event time ms>.<fbclid>`` (Meta: subdomain index 1 when generated on a server).
- A request rejected for invalid data (code 100) with several events is retried with each
  of its events in a request of its own, so one bad event that passed our checks never
  dead-letters the rest (Meta rejects the whole batch and does not say which event it was).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import time
from typing import Any, ClassVar
from urllib.parse import quote

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
    header,
    http_outcome,
    identifiers,
    retry_after_seconds,
)
from tracklayer.duration import Duration
from tracklayer.model import Event, Outcome

DEFAULT_ENDPOINT = "https://graph.facebook.com"
DEFAULT_VERSION = "v26.0"
MAX_EVENTS = 1000  # "You can send up to 1,000 events in data"
# "If any event_time in data is greater than 7 days in the past, we return an error for the
# entire request". We stop a minute short so an event never crosses the line in flight.
MAX_AGE = 7 * 86400.0 - 60.0

ACTION_SOURCES = frozenset(
    {
        "email",
        "website",
        "app",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    }
)

# Canonical name → Meta standard event (Meta's "Standard events" list); others go as custom
# events under their canonical name. ``rename`` overrides both.
EVENT_NAMES = {
    "purchase": "Purchase",
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
    "page_view": "PageView",
}

# user_data key → pipeline identifier field; all SHA-256 of Meta's normalisation.
HASHED_KEYS = {
    "em": "email",
    "ph": "phone",
    "fn": "first_name",
    "ln": "last_name",
    "db": "date_of_birth",
    "ge": "gender",
    "ct": "city",
    "st": "state",
    "zp": "zip",
    "country": "country",
    "external_id": "external_id",
}

# Best practices, "Baseline requirements for matching": an event whose customer information
# is only one of these combinations (or a subset) is invalid.
TOO_BROAD = (
    frozenset({"ct", "country", "st", "zp", "ge", "client_user_agent"}),
    frozenset({"db", "client_user_agent"}),
    frozenset({"fn", "ge"}),
    frozenset({"ln", "ge"}),
)

# Graph API error codes (Error Handling, Rate Limiting, Marketing API rate limiting).
THROTTLING_CODES = frozenset({4, 17, 32, 341, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2, 368}) | THROTTLING_CODES
INVALID_DATA_CODE = 100

_FBC = re.compile(r"fb\.\d{1,2}\.\d{13}\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]{2,8})?")
_FBP = re.compile(r"fb\.\d{1,2}\.\d{13}\.\d{1,20}(?:\.[A-Za-z0-9_-]{2,8})?")
_FBCLID = re.compile(r"[A-Za-z0-9_-]{1,500}")
_VERSION = re.compile(r"v\d+\.\d+")
_NOT_EVENTS = frozenset({"identify", "group", "alias"})
_MAX_SUSPECTS = 10_000


class MetaConfig(DestinationConfig, tag="meta"):
    """``meta`` destination keys (CONTRACT.md)."""

    endpoint: str = DEFAULT_ENDPOINT
    pixel_id: str = ""
    access_token: str = ""
    api_version: str = DEFAULT_VERSION
    test_event_code: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_http_url("endpoint")
        if not _VERSION.fullmatch(self.api_version):
            raise ValueError(f"api_version: expected a Graph API version like {DEFAULT_VERSION}")
        if self.pixel_id and not self.pixel_id.isdigit():
            raise ValueError("pixel_id: must be the dataset (pixel) id, digits only")
        self.require_live("pixel_id", "access_token")


_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class MetaDestination:
    """Meta Conversions API (``POST /{api_version}/{pixel_id}/events``)."""

    config_type: ClassVar[type[DestinationConfig]] = MetaConfig
    # Meta: send events "as soon as they occur"; up to 1,000 per request. Conversions API
    # calls count against the Marketing API business use case limits.
    default_batch: ClassVar[BatchPolicy] = BatchPolicy(
        max_events=MAX_EVENTS, max_wait=Duration(1.0)
    )
    default_rate_limit: ClassVar[RateLimit] = RateLimit(rps=10, burst=20)
    identifiers: ClassVar[tuple[Identifier, ...]] = identifiers(
        "meta", "hashed", *HASHED_KEYS.values()
    )

    # Match quality (Scored): Meta publishes no formula. Its best practices name email, IP
    # address, name and phone as high-quality keys and ask for external_id on every event;
    # fbc and fbp tie a web event to the ad click and the browser; the user agent is
    # required for website events; the address parts and birth date only narrow a person
    # down together, gender barely.
    match_weights: ClassVar[dict[str, float]] = {
        "em": 3.0,
        "ph": 2.5,
        "external_id": 1.5,
        "client_ip_address": 1.5,
        "fbc": 1.5,
        "fbp": 1.0,
        "client_user_agent": 0.5,
        "fn": 0.5,
        "ln": 0.5,
        "zp": 0.25,
        "ct": 0.25,
        "st": 0.25,
        "country": 0.25,
        "db": 0.25,
        "ge": 0.1,
    }

    def __init__(self, config: MetaConfig, clock=time.time) -> None:
        self.config = config
        self.clock = clock
        # Event ids of a request Meta refused as a whole: sent one per request next time.
        self._suspects: set[str] = set()

    def match_keys(self, event: Event) -> set[str]:
        """The user_data keys the payload for ``event`` carries."""
        return set(self.user_data(event))

    # validate -----------------------------------------------------------------------------

    def validate(self, event: Event) -> Outcome | None:
        if event.type in _NOT_EVENTS:
            return Outcome("suppressed", code="filter", message=f"{event.type} is not a Meta event")
        now = self.clock()
        age = now - event.timestamp
        if age > MAX_AGE:
            return Outcome(
                "rejected",
                code="too_old",
                message=f"event_time is {age / 86400:.1f} days old; Meta accepts at most 7 days"
                " and rejects the whole request otherwise",
            )
        if event.timestamp > now + 1:
            return Outcome("rejected", code="future_time", message="event_time is in the future")
        name = self.event_name(event)
        custom = self.custom_data(event)
        if name == "Purchase":
            if "value" not in custom:
                return Outcome("rejected", code="missing_value", message="Purchase needs a value")
            if "currency" not in custom:
                return Outcome(
                    "rejected", code="missing_currency", message="Purchase needs a currency"
                )
        source = self.action_source(event)
        if source == "website" and not (event.context.page_url and event.user.user_agent):
            return Outcome(
                "rejected",
                code="missing_website_fields",
                message="website events need event_source_url and client_user_agent",
            )
        keys = frozenset(self.user_data(event))
        if not keys:
            return Outcome(
                "rejected", code="no_identifiers", message="no customer information to match on"
            )
        if any(keys <= broad for broad in TOO_BROAD):
            return Outcome(
                "rejected",
                code="too_broad_identifiers",
                message=f"customer information {sorted(keys)} alone is too broad for Meta",
            )
        return None

    # build --------------------------------------------------------------------------------

    def build(self, events: list[Event]) -> list[Request]:
        solo = [i for i, e in enumerate(events) if e.event_id in self._suspects]
        self._suspects.difference_update(events[i].event_id for i in solo)
        alone = set(solo)
        together = [i for i in range(len(events)) if i not in alone]
        groups = [together[at : at + MAX_EVENTS] for at in range(0, len(together), MAX_EVENTS)]
        groups += [[i] for i in solo]
        return [self.request([events[i] for i in group], group) for group in groups if group]

    def request(self, events: list[Event], indexes: list[int]) -> Request:
        config = self.config
        body: dict[str, Any] = {"data": [self.server_event(event) for event in events]}
        if config.test_event_code:
            body["test_event_code"] = config.test_event_code
        # The access token goes in the body (as the official SDK posts it), not the URL, so
        # it never lands in proxy or access logs.
        body["access_token"] = config.access_token
        url = (
            f"{config.endpoint.rstrip('/')}/{config.api_version}/"
            f"{quote(config.pixel_id or '0', safe='')}/events"
        )
        headers = {"Content-Type": "application/json", "User-Agent": f"TrackLayer/{__version__}"}
        return Request("POST", url, headers, _encoder.encode(body), indexes)

    def server_event(self, event: Event) -> dict[str, Any]:
        """One element of ``data`` (Server Event Parameters)."""
        source = self.action_source(event)
        server: dict[str, Any] = {
            "event_name": self.event_name(event),
            "event_time": int(event.timestamp),
            "event_id": event.event_id,
            "action_source": source,
            "user_data": self.user_data(event),
        }
        if event.context.page_url:
            server["event_source_url"] = event.context.page_url
        if event.context.referrer:
            server["referrer_url"] = event.context.referrer
        custom = self.custom_data(event)
        if custom:
            server["custom_data"] = custom
        server.update(self.processing_options(event))
        return server

    def event_name(self, event: Event) -> str:
        return self.config.rename.get(event.name) or EVENT_NAMES.get(event.name, event.name)

    def action_source(self, event: Event) -> str:
        stated = commerce.text(event.properties.get("action_source")).lower()
        if stated in ACTION_SOURCES:
            return stated
        if event.context.page_url and event.user.user_agent:
            return "website"
        return "other"

    def user_data(self, event: Event) -> dict[str, Any]:
        """Customer Information Parameters: hashed keys as one-element lists of SHA-256 hex
        (the official SDK's shape), the browser's own values raw."""
        data: dict[str, Any] = {}
        for key, field in HASHED_KEYS.items():
            hashed = event.hashed.get(f"meta.{field}")
            if hashed:
                data[key] = [hashed]
        if "external_id" not in data and event.user.user_id:
            data["external_id"] = [_sha256("".join(event.user.user_id.lower().split()))]
        user = event.user
        if user.ip and _is_ip(user.ip):
            data["client_ip_address"] = user.ip  # "must never be hashed"
        if user.user_agent:
            data["client_user_agent"] = user.user_agent
        fbc = self.fbc(event)
        if fbc:
            data["fbc"] = fbc
        if user.fbp and _FBP.fullmatch(user.fbp):
            data["fbp"] = user.fbp
        return data

    def fbc(self, event: Event) -> str:
        if event.user.fbc and _FBC.fullmatch(event.user.fbc):
            return event.user.fbc
        fbclid = event.user.click_ids.get("fbclid", "")
        if fbclid and _FBCLID.fullmatch(fbclid):
            # Case kept: "ClickID value is case sensitive".
            return f"fb.1.{int(event.timestamp * 1000)}.{fbclid}"
        return ""

    def custom_data(self, event: Event) -> dict[str, Any]:
        properties = event.properties
        custom: dict[str, Any] = {}
        value = commerce.value(properties)
        if value is not None:
            custom["value"] = value
        currency = commerce.currency(properties)
        if currency:
            custom["currency"] = currency
        if event.order_id:
            custom["order_id"] = event.order_id
        lines = commerce.items(properties)
        if lines:
            custom["content_type"] = "product"
            custom["content_ids"] = [line.id for line in lines]
            contents = []
            for line in lines:
                content: dict[str, Any] = {"id": line.id, "quantity": line.quantity}
                if line.price is not None:
                    content["item_price"] = line.price
                contents.append(content)
            custom["contents"] = contents
            if event.name == "begin_checkout":
                custom["num_items"] = sum(line.quantity for line in lines)  # InitiateCheckout only
        query = commerce.text(properties.get("query"))
        if event.name == "search" and query:
            custom["search_string"] = query
        return custom

    def processing_options(self, event: Event) -> dict[str, Any]:
        """Limited Data Use for visitors in ``consent.ldu_regions``; ``[]`` states "no LDU".

        With LDU, country/state 1/1000 (California) when the region is known, else 0/0 so
        Meta geolocates from the IP ("If you set a country, you must also set a state").
        """
        if not event.ldu:
            return {"data_processing_options": []}
        california = event.context.region.upper() == "US-CA"
        return {
            "data_processing_options": ["LDU"],
            "data_processing_options_country": 1 if california else 0,
            "data_processing_options_state": 1000 if california else 0,
        }

    # classify -----------------------------------------------------------------------------

    def classify(self, request: Request, response: Response) -> list[Outcome]:
        count = len(request.indexes)
        document = _json(response.body)
        error = document.get("error") if isinstance(document, dict) else None
        if 200 <= response.status < 300 and not isinstance(error, dict):
            if not isinstance(document, dict) or "events_received" not in document:
                return [
                    Outcome("warning", code="unreadable", message=excerpt(response.body))
                ] * count
            messages = [str(m) for m in document.get("messages") or []]
            received = document.get("events_received")
            if received != count:
                messages.append(f"Meta received {received} of {count} events")
            if messages:
                return [
                    Outcome("warning", code="meta_messages", message="; ".join(messages))
                ] * count
            return [Outcome("accepted")] * count
        if not isinstance(error, dict):
            return [http_outcome(response.status, response.headers, response.body)] * count
        return self.error_outcomes(request, response, error)

    def error_outcomes(
        self, request: Request, response: Response, error: dict[str, Any]
    ) -> list[Outcome]:
        count = len(request.indexes)
        code = error.get("code")
        subcode = error.get("error_subcode")
        code_text = f"{code}/{subcode}" if subcode else str(code)
        message = _error_message(error)
        transient = error.get("is_transient") is True
        known = isinstance(code, int) and code in TRANSIENT_CODES
        if known or transient or response.status >= 500:
            return [
                Outcome(
                    "retry",
                    code=code_text,
                    message=message,
                    retry_after=_regain_access_seconds(response.headers),
                    throttled=isinstance(code, int) and code in THROTTLING_CODES,
                )
            ] * count
        if code == INVALID_DATA_CODE and count > 1:
            # The whole batch was refused for one event we cannot name: resend each alone.
            ids = _event_ids(request.body)
            if len(ids) == count and len(self._suspects) + count <= _MAX_SUSPECTS:
                self._suspects.update(ids)
                return [
                    Outcome(
                        "retry",
                        code="batch_rejected",
                        message=f"Meta refused the batch ({code_text}: {message}); resending"
                        " each event alone",
                    )
                ] * count
        return [Outcome("rejected", code=code_text, message=message)] * count


def _json(body: bytes) -> Any:
    try:
        return _decoder.decode(body) if body else None
    except msgspec.DecodeError:
        return None


def _error_message(error: dict[str, Any]) -> str:
    parts = [
        str(error.get(key)) for key in ("error_user_title", "error_user_msg") if error.get(key)
    ]
    if not parts:
        parts.append(str(error.get("message") or "Meta error"))
    if error.get("fbtrace_id"):
        parts.append(f"(fbtrace_id {error['fbtrace_id']})")
    return " ".join(parts)


def _regain_access_seconds(headers: dict[str, str]) -> float | None:
    """The longest ``estimated_time_to_regain_access`` (minutes) in X-Business-Use-Case-Usage,
    as seconds; else ``Retry-After``; else None."""
    usage = _json(header(headers, "X-Business-Use-Case-Usage").encode())
    waits: list[float] = []
    if isinstance(usage, dict):
        for entries in usage.values():
            for entry in entries if isinstance(entries, list) else []:
                minutes = (
                    entry.get("estimated_time_to_regain_access")
                    if isinstance(entry, dict)
                    else None
                )
                if (
                    isinstance(minutes, int | float)
                    and not isinstance(minutes, bool)
                    and minutes > 0
                ):
                    waits.append(float(minutes) * 60.0)
    if waits:
        return max(waits)
    return retry_after_seconds(headers)


def _event_ids(body: bytes) -> list[str]:
    document = _json(body)
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        return []
    return [str(item.get("event_id", "")) for item in data if isinstance(item, dict)]


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=8192)
def _is_ip(value: str) -> bool:
    """Cached: a visitor's address repeats across their events, and parsing it is slow."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
