"""Shopify's order webhooks as a source: ``POST /webhooks/shopify/{source_id}``.

Topics (``X-Shopify-Topic``): ``orders/create`` and ``orders/paid`` become the canonical
``purchase``, ``refunds/create`` a ``refund``; any other topic is acknowledged, counted
(``tracklayer_events_filtered_total``) and dropped, so Shopify does not retry it. The
source name is the topic, so ``allow_events: [orders/paid, refunds/create]`` counts only
paid orders.

Authentication: ``X-Shopify-Hmac-Sha256``, the base64 HMAC-SHA256 of the raw body with the
app's (or the shop's webhook) secret (shopify.dev, "Verify webhooks"), compared in constant
time; the source's ``secret`` is required, since Shopify signs every delivery.

Dedup. Shopify delivers at least once and retries a delivery that was not answered 2xx
within 5 seconds, keeping ``X-Shopify-Webhook-Id`` ("a unique ID for the webhook... the
idempotency key", shopify.dev app-remix ``authenticate.webhook``): it is the message id, so
a retry is a message-scope duplicate. The same order from ``orders/create`` and
``orders/paid``, and from the browser, is one business action keyed by ``purchase`` plus the
order id. That id is the order's ``id`` (e.g. ``450789469``), not ``order_number`` (1001)
or ``name`` ("#1001"): those count per shop and a merchant can add a prefix or suffix to
``name``, while ``id`` is unique and is what the storefront exposes for the same order
(Liquid ``order.id``, and the number at the end of the web pixel's
``checkout.order.id`` GID ``gid://shopify/OrderIdentity/450789469``). So the browser must
send ``Order Completed``/``purchase`` with ``order_id`` = that number as text.

Value and currency: ``total_price`` (after discounts, with tax and shipping) in the shop's
``currency``; the amount the buyer saw is kept as ``presentment_value`` and
``presentment_currency`` when they differ.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import msgspec
from aiohttp import web

from tracklayer.model import NativeContext, NativeEvent, NativeUser
from tracklayer.pipeline.canonical import Arrival, InvalidEvent
from tracklayer.sources.decoding import decode_or_refuse
from tracklayer.sources.http import Refusal, read_body, success
from tracklayer.sources.intake import Intake, WebhookSource

ORDER_TOPICS = frozenset({"orders/create", "orders/paid"})
REFUND_TOPIC = "refunds/create"
# Cart attributes (they become the order's note_attributes) a storefront may set to link
# the order to the browser: the SDK's anonymous id and Meta's browser ids.
ANONYMOUS_ID_ATTRIBUTES = ("_tracklayer_anonymous_id", "tracklayer_anonymous_id")


def signature_valid(secret: str, body: bytes, offered: str) -> bool:
    """Whether ``offered`` is the base64 HMAC-SHA256 of ``body`` (constant time)."""
    try:
        claimed = base64.b64decode(offered.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return hmac.compare_digest(digest, claimed)


class ShopifySource(WebhookSource):
    kind = "shopify"

    async def _handle(self, intake: Intake, request: web.Request) -> web.Response:
        state = intake.webhook_source(request, "shopify", "Shopify")
        source_id = state.config.id
        body = await read_body(request, intake.max_body)
        received_at = time.time()
        secret = state.config.secret
        if not secret:
            raise Refusal(401, "unauthorized", f"source {source_id!r} has no secret configured")
        if not signature_valid(secret, body, request.headers.get("X-Shopify-Hmac-Sha256", "")):
            intake.metrics.events_rejected.labels(source_id, "unauthorized").inc()
            raise Refusal(401, "unauthorized", "missing or wrong X-Shopify-Hmac-Sha256")
        intake.check_rate(state)

        topic = request.headers.get("X-Shopify-Topic", "").strip().lower()
        sample = request.headers.get("X-Shopify-Test", "").strip().lower() == "true"
        if sample or topic not in ORDER_TOPICS | {REFUND_TOPIC}:
            # "Send test notification" posts sample data (X-Shopify-Test: true), not a sale.
            intake.metrics.events_filtered.labels(source_id).inc()
            return success(0, [])
        payload = decode_or_refuse(body, dict[str, Any])
        message_id = (
            request.headers.get("X-Shopify-Webhook-Id", "").strip()
            or request.headers.get("X-Shopify-Event-Id", "").strip()
            or f"{topic}:{payload.get('id', '')}"
        )
        try:
            native = (
                order_event(payload, message_id, shop_origin(request, payload))
                if topic in ORDER_TOPICS
                else refund_event(payload, message_id)
            )
            arrival = Arrival(source=source_id, received_at=received_at)
            event = intake.canonicaliser.from_native(native, arrival)
        except (InvalidEvent, msgspec.ValidationError) as invalid:
            # A payload of a shape we cannot read will not improve on Shopify's retries.
            raise Refusal(400, "invalid_event", str(invalid)) from None
        event.source_name = topic
        event.context.library = "shopify-webhook"
        return await intake.store(state, [event], [True], [], 1)


# payload → native event ------------------------------------------------------------------


def _text(value: object) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return format(value, "d" if isinstance(value, int) else "g")
    return ""


def _money(value: object) -> float | None:
    """Shopify's amounts are decimal strings ("199.00")."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _iso(value: object) -> str | None:
    """Shopify's local-offset times ("2026-12-03T04:00:00-05:00") as given; None if absent."""
    text = _text(value)
    return text or None


def shop_origin(request: web.Request, order: Mapping[str, Any]) -> str:
    """``https://<shop's domain>``: from the order's status page URL (on the shop's primary
    domain), else ``X-Shopify-Shop-Domain``; used to make ``landing_site`` absolute."""
    status_url = urlsplit(_text(order.get("order_status_url")))
    if status_url.scheme in ("http", "https") and status_url.netloc:
        return f"{status_url.scheme}://{status_url.netloc}"
    domain = request.headers.get("X-Shopify-Shop-Domain", "").strip()
    return f"https://{domain}" if domain and "/" not in domain else ""


def _attributes(order: Mapping[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for attribute in order.get("note_attributes") or []:
        if isinstance(attribute, Mapping):
            name, value = _text(attribute.get("name")), _text(attribute.get("value"))
            if name and value:
                found.setdefault(name, value)
    return found


def _line_item(line: Mapping[str, Any], quantity: object = None) -> dict[str, Any]:
    """A Shopify line item as a native item. ``id`` is the SKU when the merchant set one
    (what product catalogs usually key on), else the variant id, else the product id;
    all three are kept for ``rename``-style mapping downstream."""
    sku, variant, product = (
        _text(line.get("sku")),
        _text(line.get("variant_id")),
        _text(line.get("product_id")),
    )
    item: dict[str, Any] = {
        "id": sku or variant or product or _text(line.get("id")),
        "name": _text(line.get("title")) or _text(line.get("name")),
        "quantity": quantity if isinstance(quantity, int) else line.get("quantity", 1),
    }
    price = _money(line.get("price"))
    if price is not None:
        item["price"] = price
    for key, value in (("sku", sku), ("variant_id", variant), ("product_id", product)):
        if value:
            item[key] = value
    brand = _text(line.get("vendor"))
    if brand:
        item["brand"] = brand
    return item


def _person(order: Mapping[str, Any]) -> NativeUser:
    customer = _dict(order.get("customer"))
    billing = _dict(order.get("billing_address"))
    shipping = _dict(order.get("shipping_address"))
    address = billing or shipping or _dict(customer.get("default_address"))
    client = _dict(order.get("client_details"))
    attributes = _attributes(order)
    customer_id = _text(customer.get("id"))

    def first(*values: object) -> str:
        return next((text for value in values if (text := _text(value))), "")

    return NativeUser(
        user_id=customer_id or None,
        anonymous_id=first(*(attributes.get(a) for a in ANONYMOUS_ID_ATTRIBUTES))
        or f"shopify-order:{_text(order.get('id'))}",
        email=first(order.get("email"), order.get("contact_email"), customer.get("email")),
        phone=first(
            order.get("phone"), customer.get("phone"), billing.get("phone"), shipping.get("phone")
        ),
        first_name=first(customer.get("first_name"), address.get("first_name")),
        last_name=first(customer.get("last_name"), address.get("last_name")),
        city=first(address.get("city")),
        state=first(address.get("province_code"), address.get("province")),
        zip=first(address.get("zip")),
        country=first(address.get("country_code"), address.get("country")),
        ip=first(order.get("browser_ip"), client.get("browser_ip")),
        user_agent=first(client.get("user_agent")),
        fbp=first(attributes.get("_fbp"), attributes.get("fbp")),
        fbc=first(attributes.get("_fbc"), attributes.get("fbc")),
    )


def order_event(order: Mapping[str, Any], message_id: str, origin: str) -> NativeEvent:
    """``orders/create`` / ``orders/paid`` → a native ``purchase``."""
    order_id = _text(order.get("id"))
    if not order_id:
        raise InvalidEvent("id", "the order has no id")
    properties: dict[str, Any] = {"order_id": order_id}
    for key, field in (
        ("value", "total_price"),
        ("subtotal", "subtotal_price"),
        ("tax", "total_tax"),
        ("discount", "total_discounts"),
    ):
        amount = _money(order.get(field))
        if amount is not None:
            properties[key] = amount
    shipping = _money(
        _dict(_dict(order.get("total_shipping_price_set")).get("shop_money")).get("amount")
    )
    if shipping is not None:
        properties["shipping"] = shipping
    currency = _text(order.get("currency"))
    if currency:
        properties["currency"] = currency.upper()
    presentment = _dict(_dict(order.get("total_price_set")).get("presentment_money"))
    shown = _text(presentment.get("currency_code")).upper()
    if shown and shown != properties.get("currency"):
        properties["presentment_currency"] = shown
        amount = _money(presentment.get("amount"))
        if amount is not None:
            properties["presentment_value"] = amount
    codes = [_text(_dict(code).get("code")) for code in order.get("discount_codes") or [] if code]
    if any(codes):
        properties["coupon"] = next(code for code in codes if code)
    for key, field in (("order_number", "order_number"), ("order_name", "name")):
        text = _text(order.get(field))
        if text:
            properties[key] = text
    properties["items"] = [
        _line_item(line) for line in order.get("line_items") or [] if isinstance(line, Mapping)
    ]
    if order.get("test") is True:
        properties["test"] = True

    person = _person(order)
    landing = _text(order.get("landing_site"))
    if landing and origin and not urlsplit(landing).scheme:
        landing = urljoin(origin + "/", landing)
    context = NativeContext(
        page_url=landing,
        referrer=_text(order.get("referring_site")),
        locale=_text(order.get("customer_locale")),
        # The buyer's country (consent.regions apply by it); the webhook's own connection
        # and any country header describe Shopify's servers, not the buyer.
        country=person.country.upper()[:2] if len(person.country) == 2 else "",
    )
    return NativeEvent(
        name="purchase",
        message_id=message_id,
        timestamp=_iso(order.get("created_at")) or _iso(order.get("processed_at")),
        user=person,
        properties=properties,
        context=context,
    )


def refund_event(refund: Mapping[str, Any], message_id: str) -> NativeEvent:
    """``refunds/create`` → a native ``refund`` of the order, valued by the money actually
    returned (the successful ``refund`` transactions)."""
    order_id = _text(refund.get("order_id"))
    if not order_id:
        raise InvalidEvent("order_id", "the refund names no order")
    properties: dict[str, Any] = {"order_id": order_id}
    refund_id = _text(refund.get("id"))
    if refund_id:
        properties["refund_id"] = refund_id
    total, currency = 0.0, ""
    for transaction in refund.get("transactions") or []:
        transaction = _dict(transaction)
        refunded = _text(transaction.get("kind")) == "refund"
        if not refunded or _text(transaction.get("status")) not in ("success", ""):
            continue  # a failed or pending refund returned no money
        amount = _money(transaction.get("amount"))
        if amount is not None:
            total += amount
            currency = currency or _text(transaction.get("currency")).upper()
    if currency or total:
        properties["value"] = round(total, 2)
    if currency:
        properties["currency"] = currency
    items = []
    for entry in refund.get("refund_line_items") or []:
        entry = _dict(entry)
        line = _dict(entry.get("line_item"))
        if line:
            items.append(_line_item(line, entry.get("quantity")))
    properties["items"] = items
    return NativeEvent(
        name="refund",
        message_id=message_id,
        timestamp=_iso(refund.get("created_at")) or _iso(refund.get("processed_at")),
        # A refund names no customer; the order's key links it to the purchase's profile
        # when the purchase had no browser id.
        user=NativeUser(anonymous_id=f"shopify-order:{order_id}"),
        properties=properties,
        context=NativeContext(),
    )
