"""Consent resolution: what the visitor allowed, as canonical purposes (``ads``, ...).

Pure. Stated choices win; Segment semantics for ``categoryPreferences``: no consent object
means nothing stated, a category missing from a present object means false. Purposes still
unstated fall back to ``consent.regions`` for the visitor's country, then ``consent.default``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# EU member states plus Iceland, Liechtenstein and Norway.
EEA = frozenset(
    {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR",
        "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT", "NL",
        "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
    }
)  # fmt: skip


def from_categories(
    preferences: Mapping[str, object], purposes: Mapping[str, Iterable[str]]
) -> dict[str, bool]:
    """Segment ``categoryPreferences`` → purposes: a purpose is granted when any category
    mapped to it is true; with the object present, an absent category counts as false."""
    stated: dict[str, bool] = {}
    for purpose, categories in purposes.items():
        stated[purpose] = any(preferences.get(category) is True for category in categories)
    return stated


def resolve(
    stated: Mapping[str, bool],
    purposes: Iterable[str],
    default: str,
    regions: Mapping[str, str],
    country: str,
) -> dict[str, bool]:
    """Every purpose in ``purposes`` decided: stated, else the region's rule, else default."""
    fallback = region_rule(regions, country) or default
    decided = {purpose: fallback == "grant" for purpose in purposes}
    decided.update(stated)
    return decided


def region_rule(regions: Mapping[str, str], country: str) -> str | None:
    country = country.upper()
    if not country:
        return None
    if country in regions:
        return regions[country]
    if country in EEA and "EEA" in regions:
        return regions["EEA"]
    return None
