"""Source event names → canonical names (CONTRACT.md's default table plus ``events.aliases``)."""

from __future__ import annotations

import re

# Segment e-commerce v2 and B2B SaaS spec names (CONTRACT.md, "Canonical events").
DEFAULT_NAMES: dict[str, str] = {
    "Order Completed": "purchase",
    "Order Refunded": "refund",
    "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart",
    "Checkout Started": "begin_checkout",
    "Payment Info Entered": "add_payment_info",
    "Product Viewed": "view_item",
    "Product List Viewed": "view_item_list",
    "Cart Viewed": "view_cart",
    "Products Searched": "search",
    "Product Added to Wishlist": "add_to_wishlist",
    "Signed Up": "sign_up",
    "Signed In": "login",
    "Lead Generated": "lead",
    "Lead Created": "lead",
    "Trial Started": "start_trial",
    "Subscription Started": "subscribe",
}

# Segment call types other than track get a fixed canonical name.
TYPE_NAMES: dict[str, str] = {
    "page": "page_view",
    "screen": "screen_view",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
}

_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake_case(name: str) -> str:
    """``"Video Played"`` → ``video_played``; ``"videoPlayed"`` → ``video_played``."""
    return _NON_WORD.sub("_", _CAMEL.sub("_", name)).strip("_").lower()


class NameMap:
    """Resolves a source name once per distinct name (results are cached)."""

    def __init__(self, aliases: dict[str, str]) -> None:
        self.table = {**DEFAULT_NAMES, **aliases}
        self._folded = {key.casefold(): value for key, value in self.table.items()}
        self._cache: dict[str, str] = {}

    def canonical(self, source_name: str) -> str:
        found = self._cache.get(source_name)
        if found is None:
            found = self.table.get(source_name) or self._folded.get(source_name.casefold())
            if found is None:
                found = snake_case(source_name) or "unnamed"
            if len(self._cache) < 10_000:
                self._cache[source_name] = found
        return found
