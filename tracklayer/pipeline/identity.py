"""Identifiers of an event in the form kept at rest: normalised, then SHA-256.

Under ``identity.pii: hashed`` (the default) only these hashes are stored; the raw personal
fields are blanked before the event reaches SQLite, so neither the store nor a log line
ever holds them. ``raw`` keeps them for destinations that need raw values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import msgspec

from tracklayer.model import User
from tracklayer.pipeline import normalize

# user field → normaliser (value, default_country) → normalised text or None
NORMALISERS: dict[str, Callable[[str, str], str | None]] = {
    "email": lambda value, country: normalize.email(value),
    "phone": lambda value, country: normalize.phone(value, default_country=country),
    "first_name": lambda value, country: normalize.first_name(value),
    "last_name": lambda value, country: normalize.last_name(value),
    "city": lambda value, country: normalize.city(value),
    "state": lambda value, country: normalize.state(value),
    "zip": lambda value, country: normalize.zip_code(value),
    "country": lambda value, country: normalize.country(value),
    "date_of_birth": lambda value, country: normalize.date_of_birth(value),
    "gender": lambda value, country: normalize.gender(value),
    "external_id": lambda value, country: normalize.external_id(value),
}

PERSONAL_FIELDS = tuple(NORMALISERS)


def hash_identifiers(user: User, default_country: str, dropped: Counter[str]) -> dict[str, str]:
    """SHA-256 of each present identifier's normalised form. A value that fails its check is
    left out and counted in ``dropped`` (by field), never hashed into garbage; a value that
    is already a SHA-256 hex digest passes through."""
    hashed: dict[str, str] = {}
    for field, normaliser in NORMALISERS.items():
        value = getattr(user, field)
        if not value:
            continue
        if normalize.is_sha256_hex(value):
            hashed[field] = value.lower()
            continue
        clean = normaliser(value, default_country)
        if clean is None:
            dropped[field] += 1
            continue
        hashed[field] = normalize.sha256_hex(clean)
    return hashed


def strip_personal(user: User) -> User:
    """The user with every raw personal field blanked (ids, IP, UA and click ids kept)."""
    return msgspec.structs.replace(user, **{field: "" for field in PERSONAL_FIELDS})
