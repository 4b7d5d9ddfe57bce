"""What an event's properties say about an order, read once for every ad platform.

Sources speak Segment's e-commerce spec (``order_id``, ``revenue``/``total``/``value``,
``currency``, ``products[]`` with ``product_id``/``sku``, ``price``, ``quantity``) or our native
shape (``value``, ``items[]`` with ``id``); platforms want one number, one ISO 4217 code and a
list of line items. The rules, so every destination reports the same value:

- value: ``value``, else ``revenue``, else ``total``, else the sum of item price × quantity;
  numbers and numeric strings are read, anything else is no value (never a guess of 0).
- currency: ``currency`` uppercased when it is three letters (ISO 4217 shape), else none.
- items: ``items[]`` (native) or ``products[]`` (Segment); an item needs an id
  (``id``/``item_id``/``product_id``/``sku``); quantity defaults to 1.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import msgspec

_CURRENCY = re.compile(r"[A-Za-z]{3}")
MAX_ITEMS = 200  # more line items than any platform reads; the rest are dropped


class Item(msgspec.Struct, frozen=True, omit_defaults=True):
    """One line item of an order."""

    id: str
    name: str = ""
    price: float | None = None
    quantity: int = 1
    category: str = ""
    brand: str = ""


def number(value: object) -> float | None:
    """A finite number from a number or a numeric string, else None (booleans are not)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def text(value: object) -> str:
    """A string property as stripped text; numbers as their plain spelling; else ""."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return format(value, "g")
    return ""


def items(properties: Mapping[str, Any]) -> list[Item]:
    """The order's line items, from native ``items[]`` or Segment ``products[]``."""
    raw = properties.get("items")
    if not isinstance(raw, list):
        raw = properties.get("products")
    if not isinstance(raw, list):
        return []
    found: list[Item] = []
    for entry in raw[:MAX_ITEMS]:
        if not isinstance(entry, Mapping):
            continue
        item_id = next(
            (
                text(entry.get(key))
                for key in ("id", "item_id", "product_id", "sku")
                if text(entry.get(key))
            ),
            "",
        )
        if not item_id:
            continue
        quantity = number(entry.get("quantity"))
        found.append(
            Item(
                id=item_id,
                name=text(entry.get("name") or entry.get("item_name")),
                price=number(entry.get("price")),
                quantity=max(1, int(quantity)) if quantity is not None else 1,
                category=text(entry.get("category") or entry.get("item_category")),
                brand=text(entry.get("brand") or entry.get("item_brand")),
            )
        )
    return found


def value(properties: Mapping[str, Any]) -> float | None:
    """The order's monetary value (see the module rules), or None."""
    for key in ("value", "revenue", "total"):
        found = number(properties.get(key))
        if found is not None:
            return round(found, 6)
    lines = [item for item in items(properties) if item.price is not None]
    if lines:
        return round(sum((item.price or 0.0) * item.quantity for item in lines), 6)
    return None


def currency(properties: Mapping[str, Any]) -> str:
    """ISO 4217 code (uppercase) from ``currency``, or "" when absent or malformed."""
    code = text(properties.get("currency"))
    return code.upper() if _CURRENCY.fullmatch(code) else ""
