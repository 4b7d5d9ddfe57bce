"""The values that travel through the pipeline: decoded messages, canonical events, outcomes.

Every stage hands one of these to the next; they carry data only, with a few pure helpers.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# User fields that name a person: what identity.pii: hashed removes at rest, and what
# destinations send only as SHA-256 of the normalised value unless they ask for raw values.
PERSONAL_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "city",
    "state",
    "zip",
    "country",
    "date_of_birth",
    "gender",
    "external_id",
)


class User(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Identifiers of the person behind an event, as the source gave them (not yet hashed)."""

    user_id: str = ""
    anonymous_id: str = ""
    email: str = ""
    phone: str = ""
    first_name: str = ""
    last_name: str = ""
    city: str = ""
    state: str = ""
    zip: str = ""
    country: str = ""
    date_of_birth: str = ""
    gender: str = ""
    external_id: str = ""
    ip: str = ""
    user_agent: str = ""
    fbp: str = ""
    fbc: str = ""
    click_ids: dict[str, str] = {}


class Context(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Where and how the event happened."""

    page_url: str = ""
    referrer: str = ""
    locale: str = ""
    library: str = ""
    country: str = ""  # visitor country (ISO alpha-2) when a source or header states it
    region: str = ""  # ISO 3166-2 subdivision when known, e.g. "US-CA"


class Event(msgspec.Struct, omit_defaults=True, kw_only=True):
    """One canonical customer action, the unit stored, deduplicated and delivered.

    ``timestamp`` and ``received_at`` are Unix seconds (UTC).
    """

    event_id: str
    name: str
    source_name: str
    source: str
    message_id: str
    type: str = "track"
    timestamp: float
    received_at: float
    properties: dict[str, Any] = {}
    user: User = msgspec.field(default_factory=User)
    # Identifier key ("<variant>.<field>", e.g. "meta.email", "google.phone") → SHA-256 hex
    # of the value normalised by that platform family's rules; only the keys configured
    # destinations declare (destinations/base.py Identifier). Under identity.pii: hashed
    # these, not the raw values, are what the store keeps.
    hashed: dict[str, str] = {}
    # Identifier key → normalised value, for identifiers a destination sends unhashed
    # (e.g. Google's postal code and country).
    normalized: dict[str, str] = {}
    # purpose → granted (consent.purposes), resolved at ingest
    consent: dict[str, bool] = {}
    # the subset the visitor (or the source) stated explicitly; the rest came from
    # consent.regions or consent.default and yields to a consent stated earlier
    consent_stated: dict[str, bool] = {}
    # the visitor is in a consent.ldu_regions region: Meta Limited Data Use applies
    ldu: bool = False
    context: Context = msgspec.field(default_factory=Context)
    integrations: dict[str, Any] = {}

    @property
    def order_id(self) -> str:
        """The order this event is about, or "" when it is not an order event."""
        value = self.properties.get("order_id")
        if value is None or value == "":
            return ""
        return str(value)

    def order_value(self) -> tuple[float | None, str]:
        """(value, ISO currency) from Segment e-commerce fields: ``value``, else ``revenue``,
        else ``total``; currency USD when absent, as Segment's spec assumes."""
        for field in ("value", "revenue", "total"):
            amount = self.properties.get(field)
            if isinstance(amount, (int, float)) and not isinstance(amount, bool):
                currency = self.properties.get("currency")
                code = currency.strip().upper() if isinstance(currency, str) else ""
                return float(amount), code or "USD"
        return None, ""

    @property
    def order_key(self) -> str:
        """``<order id>`` or, for one of several partial refunds of an order,
        ``<order id>:<refund id>``; "" when this is not an order event."""
        order_id = self.order_id
        refund_id = self.properties.get("refund_id")
        if order_id and refund_id not in (None, ""):
            return f"{order_id}:{refund_id}"
        return order_id

    def business_key(self) -> str:
        """The key under which the same customer action is delivered once per destination.

        Canonical name plus order id (so a refund never collides with its purchase; a
        ``refund_id`` keeps partial refunds apart), else plus the event id.
        """
        return f"{self.name}:{self.order_key or self.event_id}"


class Seen(msgspec.Struct, array_like=True, frozen=True):
    """A value with when it was first and last seen (Unix seconds)."""

    value: str
    first: float
    last: float


class Profile(msgspec.Struct, kw_only=True):
    """What the identity graph knows about one person, merged across every id they were
    seen with. Holds identifiers only in their at-rest forms (hashes, normalised values that
    a destination sends raw, and raw values only under ``identity.pii: raw``)."""

    id: int
    keys: list[str] = []  # "u:<user id>", "a:<anonymous id>", "e:<email hash>", "p:<phone hash>"
    user_id: str = ""
    hashed: dict[str, str] = {}
    normalized: dict[str, str] = {}
    raw: dict[str, str] = {}
    click_ids: dict[str, Seen] = {}  # includes browser ids: fbp, fbc, ttp, ga, ...
    ip: Seen | None = None
    user_agent: Seen | None = None
    consent: dict[str, bool] = {}  # the latest stated choice per purpose
    consent_at: dict[str, float] = {}
    updated_at: float = 0.0


OutcomeKind = Literal["accepted", "warning", "rejected", "retry", "observed", "suppressed"]


class Outcome(msgspec.Struct, frozen=True, omit_defaults=True):
    """What happened to one event at one destination.

    ``retry_after`` (seconds) is the platform's requested wait, when it gave one;
    ``throttled`` marks the platform's own rate-limit answer (besides HTTP 429), so delivery
    lowers the destination's rate.
    """

    kind: OutcomeKind
    code: str = ""
    message: str = ""
    retry_after: float | None = None
    throttled: bool = False


ACCEPTED = Outcome("accepted")
OBSERVED = Outcome("observed")


class Rejection(msgspec.Struct, frozen=True):
    """One message of a request refused at ingest, by its index in the request."""

    index: int
    code: str
    message: str


Id = str | int | float | None


class SegmentMessage(msgspec.Struct, rename="camel", kw_only=True):
    """One Segment Tracking API message as clients send it (unknown keys ignored).

    Ids may arrive as numbers and explicit ``null`` means absent, as Segment's clients send.
    """

    type: str | None = None
    message_id: Id = None
    user_id: Id = None
    anonymous_id: Id = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: str | None = None
    original_timestamp: str | None = None
    sent_at: str | None = None
    group_id: Id = None
    previous_id: Id = None
    write_key: str | None = None


class SegmentBatch(msgspec.Struct, rename="camel", kw_only=True):
    """``/v1/batch`` and ``/v1/import``: messages plus fields that apply to each of them."""

    batch: list[msgspec.Raw]
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sent_at: str | None = None
    write_key: str | None = None


class NativeUser(msgspec.Struct, kw_only=True):
    user_id: Id = None
    anonymous_id: Id = None
    email: str = ""
    phone: str = ""
    first_name: str = ""
    last_name: str = ""
    city: str = ""
    state: str = ""
    zip: str = ""
    country: str = ""
    date_of_birth: str = ""
    gender: str = ""
    external_id: Id = None
    ip: str = ""
    user_agent: str = ""
    fbp: str = ""
    fbc: str = ""
    click_ids: dict[str, str] = {}


class NativeContext(msgspec.Struct, kw_only=True):
    page_url: str = ""
    referrer: str = ""
    locale: str = ""
    country: str = ""
    region: str = ""  # subdivision, e.g. "CA" or "US-CA"


class NativeEvent(msgspec.Struct, kw_only=True):
    """``POST /v1/events``: the native event shape (CONTRACT.md). ``message_id`` and
    ``sent_at`` are optional extras for retry dedup and clock-skew correction."""

    name: str
    event_id: str = ""
    message_id: str = ""
    timestamp: str | None = None
    sent_at: str | None = None
    user: NativeUser = msgspec.field(default_factory=NativeUser)
    properties: dict[str, Any] = {}
    # canonical purposes ({"ads": true}), or categories / consent-mode signals
    # ({"C0004": true}, {"ad_storage": "granted"}) mapped through consent.purposes
    consent: dict[str, bool | str] = {}
    context: NativeContext = msgspec.field(default_factory=NativeContext)


class NativeBatch(msgspec.Struct, kw_only=True):
    batch: list[msgspec.Raw]
    write_key: str | None = msgspec.field(default=None, name="writeKey")
