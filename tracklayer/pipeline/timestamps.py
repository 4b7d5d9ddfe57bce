"""Event time: ISO 8601 parsing and Segment's clock-skew correction."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_iso(value: object) -> float | None:
    """Unix seconds from an ISO 8601 string (``Z`` or an offset; naive means UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def event_time(original: float | None, sent_at: float | None, received_at: float) -> float:
    """When the event happened, in server time.

    Segment's rule: ``timestamp = receivedAt - (sentAt - originalTimestamp)``, which removes
    the client clock's offset; without ``sentAt`` the client time is taken as is, and without
    any time the receipt time. A result in the future (a fast clock with no ``sentAt``, or a
    spoofed time) is clamped to the receipt time: platforms refuse future events.
    """
    if original is None:
        return received_at
    moment = received_at - (sent_at - original) if sent_at is not None else original
    return min(moment, received_at)
