"""Segment's webhook destinations as a source: ``POST /webhooks/segment/{source_id}``.

For shops where Segment keeps collecting and forwards a subset here ("Path A"). Segment
posts each message as it holds it (the classic Webhooks destination: one object per
request; Webhooks (Actions) with batching: a JSON array). The default Actions mapping
(``data: $.``) sends the whole message; other mappings are not Segment messages and are
refused as invalid events.

Signature (``X-Signature``): hex HMAC-SHA1 with the destination's shared secret over
``JSON.stringify`` of what Segment sends. Segment's docs say that for batches it signs the
*first event* rather than the whole batch (Webhooks (Actions) destination docs,
"Authentication"; ``segmentio/action-destinations`` ``webhook/index.ts`` ``extendRequest``
hashes ``JSON.stringify(payload.data)``). Segment's body is itself ``JSON.stringify`` output,
so the first event's signed text is exactly its bytes inside the raw array; both forms are
checked, in constant time. With ``shared_secret`` set, unsigned or wrongly signed requests
are refused 401; without one, deliveries are accepted unsigned.

Segment gives up after 5 seconds and retries timeouts and 5xx for up to 4 hours, so the
answer comes as soon as the events are durable, and a retry is dropped by its messageId.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import msgspec
from aiohttp import web

from tracklayer.model import Event, Rejection, SegmentMessage
from tracklayer.pipeline.canonical import Arrival, InvalidEvent
from tracklayer.sources.decoding import decode_item, decode_or_refuse
from tracklayer.sources.http import Refusal, read_body
from tracklayer.sources.intake import Intake, SourceState, WebhookSource

# Segment also posts these to webhooks; they are notices, not customer events.
IGNORED_TYPES = frozenset({"delete"})


def signature_valid(secret: str, body: bytes, first: bytes | None, offered: str) -> bool:
    """Whether ``offered`` is the hex HMAC-SHA1 of the whole body, or of the first event
    of an array body (Segment's form for batches). Compared in constant time."""
    offered = offered.strip().lower()
    if not offered:
        return False
    key = secret.encode()
    candidates = [body] if first is None else [body, first]
    valid = False
    for signed in candidates:
        digest = hmac.new(key, signed, hashlib.sha1).hexdigest()
        valid |= hmac.compare_digest(digest, offered)
    return valid


class SegmentWebhookSource(WebhookSource):
    kind = "segment"

    async def _handle(self, intake: Intake, request: web.Request) -> web.Response:
        state = intake.webhook_source(request, "segment", "Segment")
        source_id = state.config.id
        body = await read_body(request, intake.max_body)
        received_at = time.time()

        raws: list[msgspec.Raw]
        if body.lstrip()[:1] == b"[":
            raws = decode_or_refuse(body, list[msgspec.Raw])
            first = bytes(raws[0]) if raws else None
        else:
            decode_or_refuse(body, dict[str, msgspec.Raw])  # one JSON object, or a 400
            raws, first = [msgspec.Raw(body)], None
        secret = state.config.shared_secret
        if secret and not signature_valid(
            secret, body, first, request.headers.get("X-Signature", "")
        ):
            intake.metrics.events_rejected.labels(source_id, "unauthorized").inc()
            raise Refusal(401, "unauthorized", "missing or wrong X-Signature")
        intake.check_rate(state)
        return await self._store(intake, state, raws, received_at)

    async def _store(
        self, intake: Intake, state: SourceState, raws: list[msgspec.Raw], received_at: float
    ) -> web.Response:
        # Segment's messages arrive from Segment's servers: the connection's address is not
        # the visitor's (context.ip is, where Segment filled it in).
        arrival = Arrival(source=state.config.id, received_at=received_at)
        events: list[Event] = []
        client_ids: list[bool] = []
        rejected: list[Rejection] = []
        ignored = 0
        for index, raw in enumerate(raws):
            message = decode_item(raw, SegmentMessage, index)
            if isinstance(message, Rejection):
                rejected.append(message)
                continue
            if (message.type or "").strip().lower() in IGNORED_TYPES:
                ignored += 1
                continue
            try:
                event = intake.canonicaliser.from_segment(as_delivered(message), None, arrival)
            except InvalidEvent as invalid:
                rejected.append(Rejection(index, "invalid_event", str(invalid)))
                continue
            events.append(event)
            client_ids.append(message.message_id not in (None, ""))
        if ignored:
            intake.metrics.events_filtered.labels(state.config.id).inc(ignored)
        return await intake.store(state, events, client_ids, rejected, len(raws) - ignored)


def as_delivered(message: SegmentMessage) -> SegmentMessage:
    """The message with Segment's own ``timestamp`` taken as final. Segment already
    corrected it for the device's clock (``receivedAt - (sentAt - originalTimestamp)``);
    correcting again against our receipt time would move each event by however long
    Segment took to deliver it (its retries last up to 4 hours)."""
    moment = message.timestamp or message.original_timestamp
    return msgspec.structs.replace(message, timestamp=moment, original_timestamp=None, sent_at=None)
