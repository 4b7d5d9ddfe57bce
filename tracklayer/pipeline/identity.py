"""Identifiers of an event in the forms destinations send: normalised per platform family,
then SHA-256 where the destination hashes.

Each destination declares the identifiers it sends (``destinations/base.py``,
``Identifier``); the pipeline computes exactly their union, once per event. Under
``identity.pii: hashed`` (the default) the raw personal fields are then blanked, so the
store, the outbox and the logs hold only hashes (plus the few values a destination must
send unhashed, such as Google's postal code and country).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec
import xxhash

from tracklayer.destinations.base import Identifier
from tracklayer.model import PERSONAL_FIELDS, User
from tracklayer.pipeline import normalize

CACHE_SIZE = 100_000
LINK_IDENTIFIERS = (Identifier("email", "meta"), Identifier("phone", "meta"))


class IdentityPlan:
    """The identifiers to compute, grouped so each raw value is read once."""

    def __init__(self, wanted: Iterable[Identifier], default_country: str) -> None:
        # The identity graph links people by these two, whatever the destinations send.
        self.wanted = sorted({*wanted, *LINK_IDENTIFIERS}, key=lambda i: i.key)
        for identifier in self.wanted:
            if identifier.field not in PERSONAL_FIELDS:
                raise ValueError(f"unknown identifier field {identifier.field!r}")
        # (identifier, its key, the User field) once, not per event
        self._plan = [(i, i.key, i.field) for i in self.wanted]
        self.default_country = default_country
        self.dropped: Counter[str] = Counter()  # "field:reason" → count
        # The same person's email, phone and name arrive on many events: each distinct
        # (identifier, value, country) is normalised and hashed once. Keyed by a digest of
        # the raw value, so the cache holds no personal data in the clear.
        self._cache: dict[int, tuple[str, str | None]] = {}

    def apply(self, user: User) -> tuple[dict[str, str], dict[str, str]]:
        """(hashed, normalized) for ``user``. A value that fails its check is left out and
        counted, never hashed into garbage; a SHA-256 hex value passes through as hashed."""
        hashed: dict[str, str] = {}
        normalized: dict[str, str] = {}
        country_text = user.country
        cache = self._cache
        for identifier, identifier_key, field in self._plan:
            value = getattr(user, field)
            if not value:
                continue
            raw = f"{identifier_key}\0{country_text}\0{value}".encode("utf-8", "surrogatepass")
            key = xxhash.xxh3_128_intdigest(raw)
            found = cache.get(key)
            if found is None:
                found = self._compute(identifier, value, country_text)
                if len(cache) >= CACHE_SIZE:
                    cache.clear()  # cheap bound; a cold start costs one recompute each
                cache[key] = found
            kind, result = found
            if kind == "dropped":
                self.dropped[f"{field}:{result}"] += 1
            elif kind == "hashed":
                hashed[identifier_key] = result  # type: ignore[assignment]
            else:
                normalized[identifier_key] = result  # type: ignore[assignment]
        return hashed, normalized

    def _compute(
        self, identifier: Identifier, value: str, country_text: str
    ) -> tuple[str, str | None]:
        """("hashed" | "raw", value) or ("dropped", reason) for one identifier."""
        country = normalize.country(country_text) if country_text else None
        result = normalize.normalize(
            identifier.field,
            value,
            default_country=(country or self.default_country).upper(),
            variant=identifier.variant,
            country=country,
        )
        if result.value is None:
            return "dropped", result.reason
        if identifier.form == "raw":
            if normalize.is_sha256_hex(result.value):
                return "dropped", "hashed_not_raw"  # a hash cannot be sent as a raw value
            return "raw", result.value
        if normalize.is_sha256_hex(result.value):
            return "hashed", result.value
        return "hashed", normalize.sha256_hex(result.value)


def strip_personal(user: User) -> User:
    """The user with every raw personal field blanked (ids, IP, UA and click ids kept)."""
    return msgspec.structs.replace(user, **{field: "" for field in PERSONAL_FIELDS})
