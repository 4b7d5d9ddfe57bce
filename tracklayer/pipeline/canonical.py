"""Decoded Segment and native messages → canonical ``Event``s.

Applies Segment's semantics (batch-level context and integrations, clock-skew correction,
``messageId`` generated when absent, null ids meaning absent), maps names, picks the stable
``event_id``, resolves consent and turns identifiers into their at-rest form.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import msgspec

from tracklayer.config import Config
from tracklayer.destinations.base import Identifier
from tracklayer.model import Context, Event, NativeEvent, SegmentMessage, User
from tracklayer.pipeline import capture, normalize
from tracklayer.pipeline import consent as consent_rules
from tracklayer.pipeline.identity import IdentityPlan, strip_personal
from tracklayer.pipeline.names import TYPE_NAMES, NameMap
from tracklayer.pipeline.timestamps import event_time, parse_iso

SEGMENT_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
MAX_ID_LENGTH = 200


class InvalidEvent(ValueError):
    """A message that cannot become an event; ``field`` names the offending key."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class Arrival(msgspec.Struct, frozen=True):
    """Facts about the request that brought the messages."""

    source: str
    received_at: float
    client_ip: str = ""
    client_side: bool = False  # a browser sent it: the connection's IP is the visitor's
    country: str = ""  # from consent.country_header, when configured
    sent_at: float | None = None  # batch-level sentAt
    context: dict[str, Any] | None = None  # batch-level context
    integrations: dict[str, Any] | None = None  # batch-level integrations


def text_id(value: object, field: str) -> str:
    """Ids as strings: numbers are stringified, null and "" mean absent."""
    if value is None:
        return ""
    if isinstance(value, bool):
        raise InvalidEvent(field, "expected a string or a number, got a boolean")
    text = (
        value if isinstance(value, str) else format(value, "g" if isinstance(value, float) else "d")
    )
    text = text.strip()
    if len(text) > MAX_ID_LENGTH:
        raise InvalidEvent(field, f"longer than {MAX_ID_LENGTH} characters")
    return text


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _merged(batch: dict[str, Any] | None, own: dict[str, Any] | None) -> dict[str, Any]:
    """A message's own dict over its batch's (Segment's batch-level context and
    integrations); no copy when only one of them is there."""
    if not batch:
        return own or {}
    return {**batch, **own} if own else batch


class Canonicaliser:
    """Everything the mapping needs from the config, resolved once."""

    def __init__(self, config: Config, identifiers: Iterable[Identifier] = ()) -> None:
        self.names = NameMap(config.events.aliases)
        self.consent = config.consent
        self.purposes = set(config.consent.purposes)
        for destination in config.destinations:
            self.purposes.update(destination.requires_consent)
        self.identity = IdentityPlan(identifiers, config.identity.default_country)
        self.keep_raw = config.identity.pii == "raw"

    # Segment ------------------------------------------------------------------------------

    def from_segment(self, message: SegmentMessage, kind: str | None, arrival: Arrival) -> Event:
        call = (kind or message.type or "").strip().lower()
        if not call:
            raise InvalidEvent("type", "required (track, identify, page, screen, group, alias)")
        if call not in SEGMENT_TYPES:
            raise InvalidEvent("type", f"unknown type {call!r}")
        user_id = text_id(message.user_id, "userId")
        anonymous_id = text_id(message.anonymous_id, "anonymousId")
        if not user_id and not anonymous_id:
            raise InvalidEvent("userId", "userId or anonymousId is required")
        if call == "track":
            if not isinstance(message.event, str) or not message.event.strip():
                raise InvalidEvent("event", "required for track calls")
            source_name = message.event.strip()
            name = self.names.canonical(source_name)
        else:
            source_name = call
            name = TYPE_NAMES[call]

        # The decoded dicts are this message's own: merged or copied only when needed.
        context = _merged(arrival.context, message.context)
        integrations = _merged(arrival.integrations, message.integrations)
        properties = message.properties or {}
        if call == "page" and message.name and "name" not in properties:
            properties = {**properties, "name": message.name}

        received = arrival.received_at
        original = self.parse_time(message.original_timestamp or message.timestamp, "timestamp")
        sent_at = self.parse_time(message.sent_at, "sentAt")
        if sent_at is None:
            sent_at = arrival.sent_at
        message_id = text_id(message.message_id, "messageId") or str(uuid.uuid4())

        user = self._segment_user(message, context, user_id, anonymous_id, arrival)
        page = _dict(context.get("page"))
        page_url = _text(page.get("url")) or (
            _text(properties.get("url")) if call == "page" else ""
        )
        referrer = _text(page.get("referrer")) or _text(_dict(context.get("referrer")).get("url"))
        # Segment has no field for browser cookies; accept them in context or properties.
        user.fbp = _text(context.get("fbp")) or _text(properties.get("fbp"))
        user.fbc = _text(context.get("fbc")) or _text(properties.get("fbc"))
        stated_clicks = {
            key: text
            for key in ("ttp", "ga", "epik", "scid", "rdt_uuid")
            if (text := _text(context.get(key)))
        }
        clicks = capture.gather(stated_clicks, [page_url, referrer], context.get("campaign"))
        capture.with_browser_ids(user, clicks, received)
        location = _dict(context.get("location"))
        library = _dict(context.get("library"))
        country, region = self._place(
            _text(location.get("country")) or arrival.country, _text(location.get("region"))
        )
        event_context = Context(
            page_url=page_url,
            referrer=referrer,
            locale=_text(context.get("locale")),
            library=_text(library.get("name")),
            country=country,
            region=region,
        )
        stated: dict[str, bool] = {}
        consent_object = _dict(context.get("consent"))
        preferences = consent_object.get("categoryPreferences")
        if isinstance(preferences, dict):
            stated = consent_rules.from_categories(preferences, self.consent.purposes)
        signals = {
            k: consent_object[k] for k in consent_rules.GOOGLE_SIGNALS if k in consent_object
        }
        for signal, granted in consent_rules.parse_gcs(
            context.get("gcs") or properties.get("gcs")
        ).items():
            signals.setdefault(signal, granted)
        for purpose, granted in consent_rules.from_signals(signals, self.consent.purposes).items():
            stated.setdefault(purpose, granted)
        explicit_id = _text(properties.get("event_id")) or _text(context.get("event_id"))
        event = Event(
            event_id="",
            name=name,
            source_name=source_name,
            source=arrival.source,
            message_id=message_id,
            type=call,
            timestamp=event_time(original, sent_at, received),
            received_at=received,
            properties=properties,
            user=user,
            consent=self._consent(stated, country, region),
            consent_stated=stated,
            ldu=consent_rules.in_regions(self.consent.ldu_regions, country, region),
            context=event_context,
            integrations=integrations,
        )
        return self._finish(event, explicit_id)

    def _segment_user(
        self,
        message: SegmentMessage,
        context: dict[str, Any],
        user_id: str,
        anonymous_id: str,
        arrival: Arrival,
    ) -> User:
        traits = {**_dict(context.get("traits")), **(message.traits or {})}
        address = _dict(traits.get("address"))
        ip = _text(context.get("ip"))
        # Segment fills the IP from the connection for client-side events only (and when the
        # caller sets context.direct): a server library's connection address is the server's.
        browser = _text(_dict(context.get("library")).get("name")).startswith("analytics.js")
        if not ip and (arrival.client_side or browser or context.get("direct") is True):
            ip = arrival.client_ip
        return User(
            user_id=user_id,
            anonymous_id=anonymous_id,
            email=_text(traits.get("email")),
            phone=_text(traits.get("phone")),
            first_name=_text(traits.get("firstName") or traits.get("first_name")),
            last_name=_text(traits.get("lastName") or traits.get("last_name")),
            city=_text(address.get("city") or traits.get("city")),
            state=_text(address.get("state") or traits.get("state")),
            zip=_text(address.get("postalCode") or address.get("postal_code") or traits.get("zip")),
            country=_text(address.get("country") or traits.get("country")),
            date_of_birth=_text(traits.get("birthday") or traits.get("date_of_birth")),
            gender=_text(traits.get("gender")),
            ip=ip,
            user_agent=_text(context.get("userAgent")),
        )

    # native -------------------------------------------------------------------------------

    def from_native(self, native: NativeEvent, arrival: Arrival) -> Event:
        name = native.name.strip()
        if not name:
            raise InvalidEvent("name", "required")
        person = native.user
        user_id = text_id(person.user_id, "user.user_id")
        anonymous_id = text_id(person.anonymous_id, "user.anonymous_id")
        if not user_id and not anonymous_id:
            raise InvalidEvent("user.user_id", "user.user_id or user.anonymous_id is required")
        received = arrival.received_at
        original = self.parse_time(native.timestamp, "timestamp")
        sent_at = self.parse_time(native.sent_at, "sent_at")
        country, region = self._place(
            native.context.country or arrival.country, native.context.region
        )
        stated = {
            purpose: granted
            for purpose, value in native.consent.items()
            if purpose in self.purposes
            and (granted := consent_rules.signal_value(value)) is not None
        }
        others = {k: v for k, v in native.consent.items() if k not in self.purposes}
        for purpose, granted in consent_rules.from_signals(others, self.consent.purposes).items():
            stated.setdefault(purpose, granted)
        user = User(
            user_id=user_id,
            anonymous_id=anonymous_id,
            email=person.email.strip(),
            phone=person.phone.strip(),
            first_name=person.first_name.strip(),
            last_name=person.last_name.strip(),
            city=person.city.strip(),
            state=person.state.strip(),
            zip=person.zip.strip(),
            country=person.country.strip(),
            date_of_birth=person.date_of_birth.strip(),
            gender=person.gender.strip(),
            external_id=text_id(person.external_id, "user.external_id"),
            ip=person.ip.strip() or (arrival.client_ip if arrival.client_side else ""),
            user_agent=person.user_agent.strip(),
            fbp=person.fbp.strip(),
            fbc=person.fbc.strip(),
        )
        stated_clicks = {k: v.strip() for k, v in person.click_ids.items() if v and v.strip()}
        urls = [native.context.page_url, native.context.referrer]
        capture.with_browser_ids(user, capture.gather(stated_clicks, urls), received)
        explicit_id = text_id(native.event_id, "event_id")
        message_id = text_id(native.message_id, "message_id") or explicit_id
        event = Event(
            event_id="",
            name=self.names.canonical(name),
            source_name=name,
            source=arrival.source,
            message_id=message_id or str(uuid.uuid4()),
            type="track",
            timestamp=event_time(original, sent_at, received),
            received_at=received,
            properties=dict(native.properties),
            user=user,
            consent=self._consent(stated, country, region),
            consent_stated=stated,
            ldu=consent_rules.in_regions(self.consent.ldu_regions, country, region),
            context=Context(
                page_url=native.context.page_url.strip(),
                referrer=native.context.referrer.strip(),
                locale=native.context.locale.strip(),
                library="tracklayer-native",
                country=country,
                region=region,
            ),
        )
        return self._finish(event, explicit_id)

    # shared -------------------------------------------------------------------------------

    def parse_time(self, value: str | None, field: str) -> float | None:
        if value is None or value == "":
            return None
        moment = parse_iso(value)
        if moment is None:
            raise InvalidEvent(field, f"not an ISO 8601 time: {value[:40]!r}")
        return moment

    def _consent(self, stated: dict[str, bool], country: str, region: str) -> dict[str, bool]:
        rules = self.consent
        return consent_rules.resolve(
            stated, self.purposes, rules.default, rules.regions, country, region
        )

    def _place(self, country_text: str, region_text: str) -> tuple[str, str]:
        """(ISO alpha-2 country, ISO 3166-2 region like "US-CA") from what a source says:
        Segment's ``context.location`` often holds names ("United States", "California")."""
        country = (normalize.country(country_text) or "").upper() if country_text else ""
        region = ""
        text = region_text.strip().upper()
        if country and text:
            if text.startswith(country + "-"):
                region = text
            else:
                code = normalize.state(region_text, country=country.lower())
                if code:
                    region = f"{country}-{code.upper()}"
                elif text.isalnum() and len(text) <= 3:
                    region = f"{country}-{text}"
        return country, region

    def _finish(self, event: Event, explicit_id: str) -> Event:
        """The stable event id (CONTRACT.md: explicit, else order-based, else messageId) and
        identifiers in their at-rest form."""
        order_key = event.order_key
        event.event_id = explicit_id or (
            f"{event.name}:{order_key}" if order_key else event.message_id
        )
        if not event.user.external_id and event.user.user_id:
            # Meta and TikTok match on external_id: the advertiser's own id for the person.
            event.user.external_id = event.user.user_id
        event.hashed, event.normalized = self.identity.apply(event.user)
        if not self.keep_raw:
            event.user = strip_personal(event.user)
        return event
