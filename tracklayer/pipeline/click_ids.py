"""Ad-platform click ids captured from page URLs, referrers and Segment campaign objects.

Pure functions over text. What they promise:

- Garbage in gives ``{}`` (or ``False``), never an exception: a referrer header or a
  campaign object is whatever the browser or the sender made of it.
- A click id comes out exactly as it arrived, case included. Meta: "ClickID value is case
  sensitive - do not apply any modifications before using, such as lower or upper case"
  (developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/
  fbp-and-fbc). Only surrounding whitespace is removed.
- Values that cannot be click ids are refused: empty, longer than ``MAX_VALUE_LENGTH``,
  containing spaces, quotes or template braces ("{gclid}"), or placeholders such as
  "undefined".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "CLICK_ID_PARAMS",
    "DEFAULT_WINDOWS",
    "MAX_VALUE_LENGTH",
    "fbc_from_fbclid",
    "from_campaign",
    "from_url",
    "is_valid_fbc",
    "is_valid_fbp",
]

# URL query parameter, spelled as the platform appends it → the key TrackLayer stores it under.
CLICK_ID_PARAMS: dict[str, str] = {
    "fbclid": "fbclid",  # Meta, sent on as fbc = fb.1.<ms>.<fbclid>
    "gclid": "gclid",  # Google Ads
    "gbraid": "gbraid",  # Google Ads, iOS app campaigns
    "wbraid": "wbraid",  # Google Ads, iOS web campaigns
    "ttclid": "ttclid",  # TikTok, user.ttclid
    "ScCid": "sccid",  # Snapchat, user_data.sc_click_id
    "rdt_cid": "rdt_cid",  # Reddit, click_id
    "epik": "epik",  # Pinterest, user_data.click_id (also the _epik cookie)
    "li_fat_id": "li_fat_id",  # LinkedIn, LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID
    "msclkid": "msclkid",  # Microsoft Advertising, userData.msclkid
}

# Longest value accepted. Real click ids are well under 200 characters; anything this long
# is a mangled URL or an attack, not a click.
MAX_VALUE_LENGTH = 500
# An fbc is "fb.<index>.<13-digit ms>.<fbclid>": room for the longest fbclid we accept.
MAX_FBC_LENGTH = MAX_VALUE_LENGTH + len("fb.99.1234567890123.")

_DAY = 86_400.0

# How long after the click each id is still worth sending, in seconds: the longest
# click-through window the platform lets an advertiser choose. The platform applies the
# advertiser's own, shorter setting itself, so sending inside this window never loses a
# conversion, and past it the click can no longer be credited.
DEFAULT_WINDOWS: dict[str, float] = {
    # Meta's attribution settings offer 1-day and 7-day click-through only (Meta Business
    # Help Center, "About the attribution setting", answer 460276478298895). The _fbc
    # cookie itself lives 90 days, so a browser may still send an older fbc; this window
    # is for ids the daemon remembers on its own.
    "fbclid": 7 * _DAY,
    # Google Ads click-through conversion windows run from 1 to 90 days (Google Ads Help,
    # "About conversion windows", answer 3123169); gbraid and wbraid are Google clicks too.
    "gclid": 90 * _DAY,
    "gbraid": 90 * _DAY,
    "wbraid": 90 * _DAY,
    # TikTok: "Each Click ID ... adheres to the same CTA window configured in Attribution
    # Manager" (ads.tiktok.com/help/article/tiktok-click-id), whose click-through window
    # ranges from 1 to 28 days (TikTok for Business blog, 2022-06-23); 7 days is only the
    # default.
    "ttclid": 28 * _DAY,
    # Snapchat's swipe (click) attribution windows are 1, 7 and 28 days; 28 is also the
    # default ("28-day click, 1-day view", as measurement partners such as Singular list it).
    "sccid": 28 * _DAY,
    # Reddit click-through attribution windows: 1, 7 or 28 days (Reddit Ads help, "Web
    # Attribution"; 28 days is the default).
    "rdt_cid": 28 * _DAY,
    # Pinterest click attribution windows go up to 60 days (API v5
    # ConversionAttributionWindowDays: 0, 1, 7, 14, 30, 60; 30 is the default).
    "epik": 60 * _DAY,
    # LinkedIn conversion windows: 1, 7, 30 or 90 days (LinkedIn Help a426359; a 365-day
    # lookback exists only for some Conversions API categories).
    "li_fat_id": 90 * _DAY,
    # Microsoft Advertising: ConversionGoal.ConversionWindowInMinutes is at most 129600
    # minutes, 90 days (Bing Ads API v13 Campaign Management reference).
    "msclkid": 90 * _DAY,
}

_BY_LOWERCASE_NAME = {param.lower(): key for param, key in CLICK_ID_PARAMS.items()}
_MAX_URL_LENGTH = 16_384
_FORBIDDEN = frozenset(" \"'<>\\`{}")
_PLACEHOLDERS = frozenset({"undefined", "null", "none", "nan", "true", "false"})
# Meta's cookie format fb.<subdomain index>.<creation time, ms>.<payload>, optionally with
# the Parameter Builder's appendix: 8 characters, or a legacy 2-character token.
_APPENDIX = r"(?:\.(?:[A-Za-z0-9_-]{8}|[A-Za-z0-9_-]{2}))?"
_FBC = re.compile(r"fb\.\d{1,2}\.\d{13}\.[A-Za-z0-9_-]+" + _APPENDIX)
_FBP = re.compile(r"fb\.\d{1,2}\.\d{13}\.\d{1,20}" + _APPENDIX)
_FBCLID = re.compile(r"[A-Za-z0-9_-]+")
# Milliseconds since the epoch have 13 digits since 2001; fewer means seconds were passed.
_FIRST_MS = 10**12


def _clean(raw: object) -> str | None:
    """The value as a usable click id (only surrounding whitespace removed), else None."""
    if not isinstance(raw, str):
        return None
    value = raw.strip()
    if not value or len(value) > MAX_VALUE_LENGTH:
        return None
    if not value.isascii() or not value.isprintable() or any(c in _FORBIDDEN for c in value):
        return None
    if value.lower() in _PLACEHOLDERS:
        return None
    return value


def _collect(pairs: Iterable[tuple[object, object]]) -> dict[str, str]:
    """Click ids among (name, value) pairs.

    A parameter spelled exactly as the platform emits it wins over a differently cased one
    ("ScCid" over "sccid"); among equals the first usable value wins.
    """
    exact: dict[str, str] = {}
    loose: dict[str, str] = {}
    for name, raw in pairs:
        if not isinstance(name, str):
            continue
        key, found = CLICK_ID_PARAMS.get(name), exact
        if key is None:
            key, found = _BY_LOWERCASE_NAME.get(name.strip().lower()), loose
        value = _clean(raw) if key is not None else None
        if key == "fbclid" and value is not None and _FBCLID.fullmatch(value) is None:
            value = None  # "abc.def" can make no fbc: Meta's click ids are [A-Za-z0-9_-]
        if key is not None and value is not None:
            found.setdefault(key, value)
    return {**loose, **exact}


def from_url(url: object) -> dict[str, str]:
    """Click ids in a page URL or referrer, by canonical key (see ``CLICK_ID_PARAMS``).

    The query is read first; a query inside the fragment ("#/landing?gclid=...", as
    single-page apps route) fills in what the query lacks.
    """
    if not isinstance(url, str) or not url or len(url) > _MAX_URL_LENGTH:
        return {}
    if "=" not in url:  # no query parameter anywhere: nothing to find (the common page URL)
        return {}
    try:
        parts = urlsplit(url.strip())
        found = _collect(parse_qsl(parts.query))
        if "=" in parts.fragment:
            in_fragment = _collect(parse_qsl(parts.fragment.split("?", 1)[-1]))
            found = {**in_fragment, **found}
    except ValueError:  # e.g. "http://[::1" (an unclosed IPv6 host)
        return {}
    return found


def from_campaign(campaign: object) -> dict[str, str]:
    """Click ids in a Segment ``context.campaign`` object (UTM fields plus any params).

    Analytics libraries copy landing-page parameters such as ``gclid`` into it; keys that
    are not click ids (name, source, medium, ...) are ignored.
    """
    if not isinstance(campaign, Mapping):
        return {}
    return _collect(campaign.items())


def fbc_from_fbclid(fbclid: str, first_seen_ms: int) -> str:
    """Meta's ``fbc`` for a click id first seen at ``first_seen_ms`` (Unix milliseconds).

    Format ``fb.1.<ms>.<fbclid>`` with the fbclid's case kept. Meta: "If you're generating
    this field on a server, and not saving an _fbc cookie, use the value 1" for the
    subdomain index, and the creation time is "when you first observed the fbclid"
    (conversions-api/parameters/fbp-and-fbc). Raises ``ValueError`` for an unusable fbclid
    or a time that is not milliseconds, since either would make Meta flag the event.
    """
    value = _clean(fbclid)
    if value is None or _FBCLID.fullmatch(value) is None:
        raise ValueError("fbclid is not a usable click id")
    if isinstance(first_seen_ms, bool) or not isinstance(first_seen_ms, int):
        raise ValueError("first_seen_ms must be an int of Unix milliseconds")
    if first_seen_ms < _FIRST_MS:
        raise ValueError("first_seen_ms looks like seconds; Meta wants milliseconds")
    return f"fb.1.{first_seen_ms}.{value}"


def is_valid_fbc(value: object) -> bool:
    """Whether ``value`` has the shape of an ``_fbc`` cookie: fb.<index>.<ms>.<fbclid>."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_FBC_LENGTH
        and _FBC.fullmatch(value) is not None
    )


def is_valid_fbp(value: object) -> bool:
    """Whether ``value`` has the shape of an ``_fbp`` cookie: fb.<index>.<ms>.<random>."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_VALUE_LENGTH
        and _FBP.fullmatch(value) is not None
    )
