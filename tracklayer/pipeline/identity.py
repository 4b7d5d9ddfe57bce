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

from tracklayer.destinations.base import Identifier
from tracklayer.model import User
from tracklayer.pipeline import normalize

# User fields that name a person (what pii: hashed removes at rest).
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


LINK_IDENTIFIERS = (Identifier("email", "meta"), Identifier("phone", "meta"))


class IdentityPlan:
    """The identifiers to compute, grouped so each raw value is read once."""

    def __init__(self, wanted: Iterable[Identifier], default_country: str) -> None:
        # The identity graph links people by these two, whatever the destinations send.
        self.wanted = sorted({*wanted, *LINK_IDENTIFIERS}, key=lambda i: i.key)
        for identifier in self.wanted:
            if identifier.field not in PERSONAL_FIELDS:
                raise ValueError(f"unknown identifier field {identifier.field!r}")
        self.default_country = default_country
        self.dropped: Counter[str] = Counter()  # "field:reason" → count

    def apply(self, user: User) -> tuple[dict[str, str], dict[str, str]]:
        """(hashed, normalized) for ``user``. A value that fails its check is left out and
        counted, never hashed into garbage; a SHA-256 hex value passes through as hashed."""
        hashed: dict[str, str] = {}
        normalized: dict[str, str] = {}
        country = normalize.country(user.country) if user.country else None
        for identifier in self.wanted:
            value = getattr(user, identifier.field)
            if not value:
                continue
            result = normalize.normalize(
                identifier.field,
                value,
                default_country=(country or self.default_country).upper(),
                variant=identifier.variant,
                country=country,
            )
            if result.value is None:
                self.dropped[f"{identifier.field}:{result.reason}"] += 1
                continue
            if identifier.form == "raw":
                if not normalize.is_sha256_hex(result.value):
                    normalized[identifier.key] = result.value
            elif normalize.is_sha256_hex(result.value):
                hashed[identifier.key] = result.value
            else:
                hashed[identifier.key] = normalize.sha256_hex(result.value)
        return hashed, normalized


def strip_personal(user: User) -> User:
    """The user with every raw personal field blanked (ids, IP, UA and click ids kept)."""
    return msgspec.structs.replace(user, **{field: "" for field in PERSONAL_FIELDS})
