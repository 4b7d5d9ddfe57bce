"""Identity graph rules, pure: what a profile learns from an event, and what an event gains
from its profile.

An event is enriched only where it says nothing itself (its own values always win) and
never with an expired click id. Without ads consent, click and browser ids are neither
kept nor attached.
"""

from __future__ import annotations

from collections.abc import Mapping

from tracklayer.model import PERSONAL_FIELDS, Event, Profile, Seen
from tracklayer.pipeline import click_ids

DAY = 86_400.0
# How long a browser's IP and user agent stand for the person on later server events.
BROWSER_CONTEXT_WINDOW = 7 * DAY
# Browser cookie ids: Meta's _fbp and the other pixels' first-party cookies live 90 days
# (Meta, "fbp and fbc parameters"); TrackLayer forgets them after as long.
COOKIE_WINDOW = 90 * DAY


def link_keys(event: Event) -> list[str]:
    """Every id this event names its person by, as identity-graph keys."""
    keys = []
    user = event.user
    if user.user_id:
        keys.append("u:" + user.user_id)
    if user.anonymous_id:
        keys.append("a:" + user.anonymous_id)
    if email := event.hashed.get("meta.email"):
        keys.append("e:" + email)
    if phone := event.hashed.get("meta.phone"):
        keys.append("p:" + phone)
    return keys


def ads_allowed(event: Event) -> bool:
    return event.consent.get("ads", True) is not False


def learn(profile: Profile, event: Event, keep_raw: bool) -> None:
    """Fold what ``event`` itself carries into ``profile`` (newer values win)."""
    moment = event.timestamp
    newer = moment >= profile.updated_at
    for key in link_keys(event):
        if key not in profile.keys:
            profile.keys.append(key)
    user = event.user
    if user.user_id and (newer or not profile.user_id):
        profile.user_id = user.user_id
    _fold(profile.hashed, event.hashed, newer)
    _fold(profile.normalized, event.normalized, newer)
    if keep_raw:
        own_raw = {field: getattr(user, field) for field in PERSONAL_FIELDS}
        _fold(profile.raw, own_raw, newer)
    if ads_allowed(event):
        own = dict(user.click_ids)
        if user.fbp:
            own["fbp"] = user.fbp
        if user.fbc and not own.get("fbclid"):
            own["fbc"] = user.fbc
        for key, value in own.items():
            profile.click_ids[key] = _seen(profile.click_ids.get(key), value, moment)
    else:
        profile.click_ids.clear()  # revoked: forget what would re-identify for ads
    if user.ip:
        profile.ip = _seen(profile.ip, user.ip, moment)
    if user.user_agent:
        profile.user_agent = _seen(profile.user_agent, user.user_agent, moment)
    for purpose, granted in event.consent_stated.items():
        if moment >= profile.consent_at.get(purpose, 0.0):
            profile.consent[purpose] = granted
            profile.consent_at[purpose] = moment
    profile.updated_at = max(profile.updated_at, moment)


def merge(into: Profile, other: Profile) -> None:
    """Fold ``other`` (the same person, found under another id) into ``into``."""
    newer = other.updated_at > into.updated_at
    for key in other.keys:
        if key not in into.keys:
            into.keys.append(key)
    if other.user_id and (newer or not into.user_id):
        into.user_id = other.user_id
    _fold(into.hashed, other.hashed, newer)
    _fold(into.normalized, other.normalized, newer)
    _fold(into.raw, other.raw, newer)
    for key, seen in other.click_ids.items():
        mine = into.click_ids.get(key)
        if mine is None or seen.last > mine.last:
            into.click_ids[key] = seen
    for name in ("ip", "user_agent"):
        mine, theirs = getattr(into, name), getattr(other, name)
        if theirs is not None and (mine is None or theirs.last > mine.last):
            setattr(into, name, theirs)
    for purpose, at in other.consent_at.items():
        if at > into.consent_at.get(purpose, 0.0):
            into.consent[purpose] = other.consent[purpose]
            into.consent_at[purpose] = at
    into.updated_at = max(into.updated_at, other.updated_at)


def enrich(event: Event, profile: Profile, windows: Mapping[str, float], keep_raw: bool) -> None:
    """Fill what ``event`` lacks from ``profile``, never overwriting the event's own values."""
    moment = event.timestamp
    user = event.user
    if not user.user_id and profile.user_id:
        user.user_id = profile.user_id
    _fill(event.hashed, profile.hashed)
    _fill(event.normalized, profile.normalized)
    if keep_raw:
        for field, value in profile.raw.items():
            if not getattr(user, field):
                setattr(user, field, value)
    for purpose, granted in profile.consent.items():
        # The latest stated choice wins over a region rule or the default.
        if purpose not in event.consent_stated and purpose in event.consent:
            event.consent[purpose] = granted
    if not ads_allowed(event):
        user.click_ids, user.fbp, user.fbc = {}, "", ""
        return
    for key, seen in profile.click_ids.items():
        if key in ("fbp", "fbc") or key in user.click_ids:
            continue
        if moment - seen.first <= windows.get(key, COOKIE_WINDOW):
            user.click_ids[key] = seen.value
    fbclid = profile.click_ids.get("fbclid")
    if fbclid and user.click_ids.get("fbclid") == fbclid.value:
        own_fbc = user.fbc
        try:
            derived = click_ids.fbc_from_fbclid(fbclid.value, int(fbclid.first * 1000))
        except ValueError:  # a mangled fbclid makes no fbc
            derived = ""
        # Our own fbc for this click (built from its first sight) stays the same on every
        # event, so Meta sees one click; a browser-forwarded fbc is left as it came.
        if derived and (not own_fbc or own_fbc.endswith("." + fbclid.value)):
            user.fbc = derived
    if not user.fbc:
        cookie = profile.click_ids.get("fbc")
        if cookie and moment - cookie.first <= windows.get("fbclid", 7 * DAY):
            user.fbc = cookie.value
    if not user.fbp:
        cookie = profile.click_ids.get("fbp")
        if cookie and moment - cookie.last <= COOKIE_WINDOW:
            user.fbp = cookie.value
    if not user.ip and profile.ip and moment - profile.ip.last <= BROWSER_CONTEXT_WINDOW:
        user.ip = profile.ip.value
    agent = profile.user_agent
    if not user.user_agent and agent and moment - agent.last <= BROWSER_CONTEXT_WINDOW:
        user.user_agent = agent.value


def _seen(previous: Seen | None, value: str, moment: float) -> Seen:
    if previous is None:
        return Seen(value, moment, moment)
    if previous.value == value:
        return Seen(value, min(previous.first, moment), max(previous.last, moment))
    if moment >= previous.last:
        return Seen(value, moment, moment)  # a new click replaces the old one
    return previous  # an older event does not bring back an older click


def _fold(target: dict[str, str], source: Mapping[str, str], newer: bool) -> None:
    for key, value in source.items():
        if value and (newer or key not in target):
            target[key] = value


def _fill(target: dict[str, str], source: Mapping[str, str]) -> None:
    for key, value in source.items():
        if key not in target:
            target[key] = value
