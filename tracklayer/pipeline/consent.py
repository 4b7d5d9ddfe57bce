"""Consent resolution: what the visitor allowed, as canonical purposes (``ads``, ...).

Pure. Stated choices win. Sources of a stated choice, in order:
- Segment ``context.consent.categoryPreferences`` with Segment's semantics: no consent
  object means nothing stated, a category missing from a present object means false
  (Segment docs, "Consent in Segment Connections");
- Google consent mode: ``ad_storage``, ``analytics_storage``, ``ad_user_data``,
  ``ad_personalization`` ("granted"/"denied") or the ``gcs`` string (``G1xy``: x = ad_storage,
  y = analytics_storage), mapped through ``consent.purposes`` when listed there, else by
  convention (ad signals → ``ads``, analytics_storage → ``analytics``);
- a native ``consent`` object: canonical purposes directly, other keys as categories.
Purposes still unstated fall back to ``consent.regions`` for the visitor's region
(``US-CA``), country or the ``EEA`` group, then ``consent.default``.
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


GOOGLE_SIGNALS = ("ad_storage", "analytics_storage", "ad_user_data", "ad_personalization")
CONVENTIONAL_PURPOSE = {
    "ad_storage": "ads",
    "ad_user_data": "ads",
    "ad_personalization": "ads",
    "analytics_storage": "analytics",
}


def signal_value(value: object) -> bool | None:
    """A consent-mode value: "granted"/"denied" (or a boolean) → bool; anything else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("granted", "grant", "true", "yes", "1"):
            return True
        if text in ("denied", "deny", "false", "no", "0"):
            return False
    return None


def parse_gcs(gcs: object) -> dict[str, bool]:
    """Google's ``gcs`` parameter (``G1`` then one digit per signal: ad_storage,
    analytics_storage) → signals; malformed values state nothing."""
    if not isinstance(gcs, str) or len(gcs) < 4 or not gcs.startswith("G1"):
        return {}
    digits = gcs[2:4]
    if any(d not in "01" for d in digits):
        return {}
    return {"ad_storage": digits[0] == "1", "analytics_storage": digits[1] == "1"}


def from_signals(
    signals: Mapping[str, object], purposes: Mapping[str, Iterable[str]]
) -> dict[str, bool]:
    """Category-like signals (Google consent mode, native consent keys) → purposes. Unlike
    ``categoryPreferences`` only the purposes a signal speaks to are stated; a purpose is
    granted when every signal present for it grants."""
    if not signals:
        return {}
    votes: dict[str, list[bool]] = {}
    mapped: set[str] = set()
    for purpose, categories in purposes.items():
        for category in categories:
            if category in signals and (value := signal_value(signals[category])) is not None:
                votes.setdefault(purpose, []).append(value)
                mapped.add(category)
    for signal, purpose in CONVENTIONAL_PURPOSE.items():
        if signal in signals and signal not in mapped:
            value = signal_value(signals[signal])
            if value is not None:
                votes.setdefault(purpose, []).append(value)
    return {purpose: all(values) for purpose, values in votes.items()}


def resolve(
    stated: Mapping[str, bool],
    purposes: Iterable[str],
    default: str,
    regions: Mapping[str, str],
    country: str,
    region: str = "",
) -> dict[str, bool]:
    """Every purpose in ``purposes`` decided: stated, else the region's rule, else default."""
    fallback = region_rule(regions, country, region) or default
    decided = {purpose: fallback == "grant" for purpose in purposes}
    decided.update(stated)
    return decided


def region_rule(regions: Mapping[str, str], country: str, region: str = "") -> str | None:
    """The rule for the most specific place named in ``regions``: region, country, EEA."""
    region, country = region.upper(), country.upper()
    if region and region in regions:
        return regions[region]
    if not country:
        return None
    if country in regions:
        return regions[country]
    if country in EEA and "EEA" in regions:
        return regions["EEA"]
    return None


def in_regions(places: Iterable[str], country: str, region: str) -> bool:
    """Whether the visitor's region (``US-CA``) or country is listed in ``places``."""
    listed = {place.upper() for place in places}
    return bool((region and region.upper() in listed) or (country and country.upper() in listed))
