"""Click ids and browser ids an event carries: from the page URL, the campaign object, the
referrer and what the source stated, with ``fbc`` derived from an ``fbclid``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tracklayer.model import User
from tracklayer.pipeline import click_ids


def gather(
    stated: Mapping[str, str], urls: Iterable[object], campaign: object = None
) -> dict[str, str]:
    """Click ids: the source's own values win, then the page URL, the campaign, and last
    the referrer (``urls`` in that order of trust, the referrer last)."""
    url_list = list(urls)
    if not stated and not campaign and not any(isinstance(u, str) and "=" in u for u in url_list):
        return {}  # no parameter anywhere: the common case, answered without parsing
    found: dict[str, str] = {}
    sources: list[Mapping[str, str]] = [stated]
    if url_list:
        sources.append(click_ids.from_url(url_list[0]))
    sources.append(click_ids.from_campaign(campaign))
    sources.extend(click_ids.from_url(url) for url in url_list[1:])
    for source in sources:
        for key, value in source.items():
            if value and key not in found:
                found[key] = value
    return found


def with_browser_ids(user: User, clicks: dict[str, str], received_at: float) -> User:
    """The user with its click ids set, and ``fbc`` built from ``fbclid`` when the browser
    did not forward one (Meta: ``fb.1.<ms of the click>.<fbclid>``, case kept)."""
    fbc = user.fbc
    if not fbc and clicks.get("fbclid"):
        try:
            fbc = click_ids.fbc_from_fbclid(clicks["fbclid"], int(received_at * 1000))
        except ValueError:  # a mangled fbclid ("IwAR((((") makes no fbc; the event stays
            fbc = ""
    if fbc and not click_ids.is_valid_fbc(fbc):
        fbc = ""
    fbp = user.fbp if user.fbp and click_ids.is_valid_fbp(user.fbp) else ""
    user.click_ids = clicks
    user.fbc, user.fbp = fbc, fbp
    return user
