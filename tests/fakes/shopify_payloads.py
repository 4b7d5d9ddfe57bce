"""Shopify webhook deliveries shaped as Shopify sends them (REST Admin API order and
refund resources, the fields an ``orders/create``, ``orders/paid`` or ``refunds/create``
webhook carries), with made-up values, and the headers Shopify signs them with.

The order: 2 × "Linen Shirt" at 45.00 + 1 × "Canvas Tote" at 29.00 = 119.00, minus a
10.00 discount = 109.00 subtotal, + 5.95 shipping + 8.50 tax = 123.45 total, in USD.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from typing import Any

ORDER_ID = 5923450519846
CUSTOMER_ID = 7283741261862
SHOP_DOMAIN = "harbor-and-pine.myshopify.com"
FBCLID = "IwAR0Shop_Click-9xYz"
EMAIL = "Jane.Doe@Example.com"
USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15"
)


def _money(amount: str, currency: str = "USD") -> dict[str, Any]:
    return {
        "shop_money": {"amount": amount, "currency_code": currency},
        "presentment_money": {"amount": amount, "currency_code": currency},
    }


_ADDRESS = {
    "first_name": "Jane",
    "address1": "1 Harbour Street",
    "phone": "+1 613-555-0142",
    "city": "Ottawa",
    "zip": "K1A 0B1",
    "province": "Ontario",
    "country": "Canada",
    "last_name": "Doe",
    "address2": "Unit 4",
    "company": None,
    "latitude": 45.4215,
    "longitude": -75.6972,
    "name": "Jane Doe",
    "country_code": "CA",
    "province_code": "ON",
}

_LINE_ITEMS = [
    {
        "id": 14523398791206,
        "admin_graphql_api_id": "gid://shopify/LineItem/14523398791206",
        "attributed_staffs": [],
        "current_quantity": 2,
        "fulfillable_quantity": 2,
        "fulfillment_service": "manual",
        "fulfillment_status": None,
        "gift_card": False,
        "grams": 200,
        "name": "Linen Shirt - M / Sand",
        "price": "45.00",
        "price_set": _money("45.00"),
        "product_exists": True,
        "product_id": 8012356329510,
        "properties": [],
        "quantity": 2,
        "requires_shipping": True,
        "sku": "LS-M-SAND",
        "taxable": True,
        "title": "Linen Shirt",
        "total_discount": "0.00",
        "total_discount_set": _money("0.00"),
        "variant_id": 44128331874342,
        "variant_inventory_management": "shopify",
        "variant_title": "M / Sand",
        "vendor": "Harbor & Pine",
        "tax_lines": [
            {
                "channel_liable": False,
                "price": "6.15",
                "price_set": _money("6.15"),
                "rate": 0.13,
                "title": "HST",
            }
        ],
        "duties": [],
        "discount_allocations": [
            {"amount": "7.56", "amount_set": _money("7.56"), "discount_application_index": 0}
        ],
    },
    {
        "id": 14523398824974,
        "admin_graphql_api_id": "gid://shopify/LineItem/14523398824974",
        "attributed_staffs": [],
        "current_quantity": 1,
        "fulfillable_quantity": 1,
        "fulfillment_service": "manual",
        "fulfillment_status": None,
        "gift_card": False,
        "grams": 250,
        "name": "Canvas Tote",
        "price": "29.00",
        "price_set": _money("29.00"),
        "product_exists": True,
        "product_id": 8012356362278,
        "properties": [],
        "quantity": 1,
        "requires_shipping": True,
        "sku": "",
        "taxable": True,
        "title": "Canvas Tote",
        "total_discount": "0.00",
        "total_discount_set": _money("0.00"),
        "variant_id": 44128331907110,
        "variant_inventory_management": "shopify",
        "variant_title": None,
        "vendor": "Harbor & Pine",
        "tax_lines": [
            {
                "channel_liable": False,
                "price": "2.35",
                "price_set": _money("2.35"),
                "rate": 0.13,
                "title": "HST",
            }
        ],
        "duties": [],
        "discount_allocations": [
            {"amount": "2.44", "amount_set": _money("2.44"), "discount_application_index": 0}
        ],
    },
]

_ORDER: dict[str, Any] = {
    "id": ORDER_ID,
    "admin_graphql_api_id": f"gid://shopify/Order/{ORDER_ID}",
    "app_id": 580111,
    "browser_ip": "203.0.113.24",
    "buyer_accepts_marketing": False,
    "cancel_reason": None,
    "cancelled_at": None,
    "cart_token": "Z2NwLXVzLWVhc3QxOjAxSkVYN0NKNVpRM1Q",
    "checkout_id": 36212332888102,
    "checkout_token": "a2b1c9e2f3d44c6e8f0a1b2c3d4e5f60",
    "client_details": {
        "accept_language": "en-CA,en;q=0.9",
        "browser_height": None,
        "browser_ip": "203.0.113.24",
        "browser_width": None,
        "session_hash": None,
        "user_agent": USER_AGENT,
    },
    "closed_at": None,
    "company": None,
    "confirmation_number": "XK4T9QZ2B",
    "confirmed": True,
    "contact_email": EMAIL,
    "created_at": "2026-12-02T04:12:09-05:00",
    "currency": "USD",
    "current_subtotal_price": "109.00",
    "current_subtotal_price_set": _money("109.00"),
    "current_total_discounts": "10.00",
    "current_total_discounts_set": _money("10.00"),
    "current_total_price": "123.45",
    "current_total_price_set": _money("123.45"),
    "current_total_tax": "8.50",
    "current_total_tax_set": _money("8.50"),
    "customer_locale": "en-CA",
    "discount_codes": [{"code": "WELCOME10", "amount": "10.00", "type": "fixed_amount"}],
    "email": EMAIL,
    "estimated_taxes": False,
    "financial_status": "paid",
    "fulfillment_status": None,
    "landing_site": f"/products/linen-shirt?utm_source=facebook&fbclid={FBCLID}",
    "landing_site_ref": None,
    "location_id": None,
    "merchant_of_record_app_id": None,
    "name": "#1042",
    "note": None,
    "note_attributes": [],
    "number": 42,
    "order_number": 1042,
    "order_status_url": (
        "https://shop.example.com/68711202/orders/0f3c5a7e9b1d2f4a6c8e0b2d4f6a8c0e/"
        "authenticate?key=4b6d8f0a2c4e6a8b0d2f4a6c8e0b2d4f"
    ),
    "payment_gateway_names": ["shopify_payments"],
    "phone": None,
    "po_number": None,
    "presentment_currency": "USD",
    "processed_at": "2026-12-02T04:12:08-05:00",
    "reference": None,
    "referring_site": "https://l.facebook.com/",
    "source_identifier": None,
    "source_name": "web",
    "source_url": None,
    "subtotal_price": "109.00",
    "subtotal_price_set": _money("109.00"),
    "tags": "",
    "tax_exempt": False,
    "tax_lines": [{"price": "8.50", "rate": 0.13, "title": "HST", "price_set": _money("8.50")}],
    "taxes_included": False,
    "test": False,
    "token": "0f3c5a7e9b1d2f4a6c8e0b2d4f6a8c0e",
    "total_discounts": "10.00",
    "total_discounts_set": _money("10.00"),
    "total_line_items_price": "119.00",
    "total_line_items_price_set": _money("119.00"),
    "total_outstanding": "0.00",
    "total_price": "123.45",
    "total_price_set": _money("123.45"),
    "total_shipping_price_set": _money("5.95"),
    "total_tax": "8.50",
    "total_tax_set": _money("8.50"),
    "total_tip_received": "0.00",
    "total_weight": 650,
    "updated_at": "2026-12-02T04:12:11-05:00",
    "user_id": None,
    "billing_address": _ADDRESS,
    "customer": {
        "id": CUSTOMER_ID,
        "email": EMAIL,
        "created_at": "2026-12-02T04:12:06-05:00",
        "updated_at": "2026-12-02T04:12:09-05:00",
        "first_name": "Jane",
        "last_name": "Doe",
        "state": "disabled",
        "note": None,
        "verified_email": True,
        "multipass_identifier": None,
        "tax_exempt": False,
        "phone": "+16135550142",
        "email_marketing_consent": {
            "state": "not_subscribed",
            "opt_in_level": "single_opt_in",
            "consent_updated_at": None,
        },
        "sms_marketing_consent": None,
        "tags": "",
        "currency": "USD",
        "tax_exemptions": [],
        "admin_graphql_api_id": f"gid://shopify/Customer/{CUSTOMER_ID}",
        "default_address": dict(_ADDRESS, id=9876543210, customer_id=CUSTOMER_ID, default=True),
    },
    "discount_applications": [
        {
            "target_type": "line_item",
            "type": "discount_code",
            "value": "10.0",
            "value_type": "fixed_amount",
            "allocation_method": "across",
            "target_selection": "all",
            "code": "WELCOME10",
        }
    ],
    "fulfillments": [],
    "line_items": _LINE_ITEMS,
    "payment_terms": None,
    "refunds": [],
    "shipping_address": _ADDRESS,
    "shipping_lines": [
        {
            "id": 4792837465382,
            "carrier_identifier": None,
            "code": "Standard",
            "discounted_price": "5.95",
            "discounted_price_set": _money("5.95"),
            "phone": None,
            "price": "5.95",
            "price_set": _money("5.95"),
            "requested_fulfillment_service_id": None,
            "source": "shopify",
            "title": "Standard",
            "tax_lines": [],
            "discount_allocations": [],
        }
    ],
}

_REFUND: dict[str, Any] = {
    "id": 1023948571174,
    "order_id": ORDER_ID,
    "created_at": "2026-12-02T20:02:44-05:00",
    "note": "Wrong size",
    "user_id": 87000012838,  # the staff member who refunded, not the customer
    "processed_at": "2026-12-02T20:02:44-05:00",
    "restock": True,
    "duties": [],
    "total_duties_set": _money("0.00"),
    "additional_fees": [],
    "total_additional_fees_set": _money("0.00"),
    "return": None,
    "admin_graphql_api_id": "gid://shopify/Refund/1023948571174",
    "refund_line_items": [
        {
            "id": 617281937446,
            "quantity": 1,
            "line_item_id": _LINE_ITEMS[0]["id"],
            "location_id": 68711202854,
            "restock_type": "return",
            "subtotal": 41.22,
            "total_tax": 5.36,
            "subtotal_set": _money("41.22"),
            "total_tax_set": _money("5.36"),
            "line_item": _LINE_ITEMS[0],
        }
    ],
    "transactions": [
        {
            "id": 7418236189734,
            "order_id": ORDER_ID,
            "kind": "refund",
            "gateway": "shopify_payments",
            "status": "success",
            "message": "Transaction approved",
            "created_at": "2026-12-02T20:02:43-05:00",
            "test": False,
            "authorization": "re_3QkZ8a2eZvKYlo2C1pQ2",
            "location_id": None,
            "user_id": None,
            "parent_id": 7418236123174,
            "processed_at": "2026-12-02T20:02:43-05:00",
            "device_id": None,
            "error_code": None,
            "source_name": "1830279",
            "receipt": {},
            "amount": "46.58",
            "currency": "USD",
            "payment_id": "c36212332888102.2",
            "total_unsettled_set": _money("0.00"),
            "manual_payment_gateway": False,
            "admin_graphql_api_id": "gid://shopify/OrderTransaction/7418236189734",
        }
    ],
    "order_adjustments": [],
}


def order(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the order (``orders/create`` and ``orders/paid`` carry the same)."""
    document = copy.deepcopy(_ORDER)
    document.update(changes)
    return document


def refund(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(_REFUND)
    document.update(changes)
    return document


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def sign(secret: str, body: bytes) -> str:
    """``X-Shopify-Hmac-Sha256``: base64 of the HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def headers(topic: str, body: bytes, secret: str, webhook_id: str | None = None) -> dict[str, str]:
    """The headers of a Shopify webhook delivery (shopify.dev, "About webhooks")."""
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": sign(secret, body),
        "X-Shopify-Shop-Domain": SHOP_DOMAIN,
        "X-Shopify-API-Version": "2026-10",
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": "2026-12-02T09:12:11.123456789Z",
    }
