"""What a browser loads from the tracking host: the SDK (``GET /sdk.js``), the settings
document that points the unmodified analytics.js (analytics-next) back at this host
(``GET /v1/projects/{writeKey}/settings``), analytics.js's own metrics (``POST /v1/m``,
accepted and discarded), and the first-party anonymous-id cookie set on the native
endpoint's answers.

Why a cookie set by the server: Safari's ITP caps cookies written by script
(``document.cookie``) at 7 days and clears script-writable storage (localStorage included)
after 7 days without a visit, so a returning customer would look new every week. A cookie
set by an HTTP response from the shop's own site (the tracking subdomain,
``t.shop.example.com``) keeps its ``Max-Age``; we set 400 days, the longest any browser
keeps (RFC 6265bis caps ``Max-Age`` at 400 days; Chrome enforces it). It is refreshed on
every answer, so it lives 400 days from the last visit. The SDK reads it first, so the id
survives the wipe of localStorage. Safari 16.4+ also caps server-set cookies at 7 days when
the answering server's IP address is unlike the site's (its CNAME-cloaking defence):
serve the tracking host from the shop's own IP range or behind the shop's reverse proxy.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from tracklayer.model import Event
from tracklayer.sources.http import Refusal, error, read_body
from tracklayer.sources.intake import Intake

SDK_FILE = "sdk.js"
# sdk.js has no version in its URL: browsers may reuse it for an hour, then revalidate
# with the ETag (a 304 costs a round trip, not the body).
SDK_CACHE_CONTROL = "public, max-age=3600, stale-while-revalidate=86400"
# The settings change only when write keys do; short so a removed key stops soon.
SETTINGS_CACHE_CONTROL = "public, max-age=300"

VISITOR_COOKIE = "tl_aid"
VISITOR_MAX_AGE = 400 * 86400  # the longest Max-Age browsers keep (RFC 6265bis, Chrome)
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9._:-]{1,100}")
_HOST = re.compile(r"(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}|\[[0-9A-Fa-f:.]+\]")
_PORT = re.compile(r":\d{1,5}")

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Script:
    """The SDK's bytes, read once: plain and gzipped, with their validator."""

    body: bytes
    gzipped: bytes
    etag: str

    @classmethod
    def load(cls) -> Script | None:
        try:
            body = resources.files("tracklayer.sources").joinpath(SDK_FILE).read_bytes()
        except (FileNotFoundError, OSError):
            return None
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body, gzip.compress(body, 9, mtime=0), f'"{digest}"')


class Public:
    """The scheme and host the browser used, behind ``server.trusted_proxies`` too."""

    def __init__(self, trusted: Sequence[str]) -> None:
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted]

    def _from_proxy(self, request: web.Request) -> bool:
        try:
            remote = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return False
        return any(remote in network for network in self.trusted)

    def of(self, request: web.Request) -> tuple[str, str]:
        """(``http``/``https``, ``host[:port]``). ``X-Forwarded-Proto``/``-Host`` count only
        from a trusted proxy (anyone else could point the settings at their own host)."""
        scheme, host = request.scheme, request.host
        if self._from_proxy(request):
            proto = _first(request.headers.get("X-Forwarded-Proto", "")).lower()
            if proto in ("http", "https"):
                scheme = proto
            forwarded = _first(request.headers.get("X-Forwarded-Host", ""))
            if forwarded and valid_host(forwarded):
                host = forwarded
        if not valid_host(host):
            raise Refusal(400, "invalid_host", "the Host header is not a host name")
        return scheme, host


@lru_cache(maxsize=8)
def public_for(trusted: tuple[str, ...]) -> Public:
    """One ``Public`` per distinct ``server.trusted_proxies`` (they change only on restart)."""
    return Public(trusted)


def _first(value: str) -> str:
    return value.split(",", 1)[0].strip()


def valid_host(host: str) -> bool:
    """``name``, ``name:port``, ``[v6]`` or ``[v6]:port``, nothing else (no paths, no
    spaces): the value is written into a JSON document browsers act on."""
    name, port = host, ""
    if host.startswith("["):
        end = host.find("]")
        name, port = host[: end + 1], host[end + 1 :]
    elif host.count(":") == 1:
        name, _, digits = host.partition(":")
        port = ":" + digits
    if port and not _PORT.fullmatch(port):
        return False
    return bool(name) and _HOST.fullmatch(name) is not None


def settings_document(write_key: str, api_host: str, protocol: str) -> dict:
    """analytics-next's source settings, trimmed to what makes it send here.

    analytics-next builds the ``Segment.io`` plugin only from
    ``integrations["Segment.io"]`` of this document (its ``mergedOptions`` walks the
    document's integrations), takes the write key it sends from ``apiKey``, and posts to
    ``{protocol}://{apiHost}/t|i|p|...``; ``apiHost`` is ``host/basePath`` without a
    scheme, as in Segment's own ``api.segment.io/v1`` (analytics-next
    ``packages/browser/src/plugins/segmentio``, ``lib/merged-options.ts``). No other
    integration is listed, so it loads no device-mode bundles from this host; metrics are
    off (``sampleRate: 0``): they are Segment's telemetry and this host discards them.
    """
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "metrics": {"sampleRate": 0},
        "remotePlugins": [],
        "enabledMiddleware": {},
        "middlewareSettings": {},
        "legacyVideoPluginsEnabled": False,
        "analyticsNextEnabled": True,
    }


class BrowserSource:
    """``GET /sdk.js``, the analytics.js settings and ``POST /v1/m``; ``intake()`` is read
    on each request since reloads swap it."""

    def __init__(self, intake: Callable[[], Intake]) -> None:
        self.intake = intake
        self._script: Script | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/sdk.js", self.sdk)
        app.router.add_route("OPTIONS", "/sdk.js", self.preflight)
        app.router.add_get("/v1/projects/{write_key}/settings", self.settings)
        app.router.add_route("OPTIONS", "/v1/projects/{write_key}/settings", self.preflight)
        app.router.add_post("/v1/m", self.remote_metrics)
        app.router.add_route("OPTIONS", "/v1/m", self.preflight)

    async def preflight(self, request: web.Request) -> web.Response:
        return self.intake().cors.preflight(request)

    async def sdk(self, request: web.Request) -> web.Response:
        intake = self.intake()
        if self._script is None:
            self._script = Script.load()
        script = self._script
        if script is None:
            return error(404, "not_found", "sdk.js is not installed with this package")
        headers = {
            "Cache-Control": SDK_CACHE_CONTROL,
            "ETag": script.etag,
            "X-Content-Type-Options": "nosniff",
            **intake.cors.headers(request),
        }
        headers["Vary"] = ", ".join(v for v in (headers.get("Vary"), "Accept-Encoding") if v)
        if script.etag in _etags(request.headers.get("If-None-Match", "")):
            return web.Response(status=304, headers=headers)
        body = script.body
        if _accepts_gzip(request.headers.get("Accept-Encoding", "")):
            body = script.gzipped
            headers["Content-Encoding"] = "gzip"
        return web.Response(
            body=body,
            headers=headers,
            content_type="application/javascript",
            charset="utf-8",
        )

    async def settings(self, request: web.Request) -> web.Response:
        intake = self.intake()
        cors = intake.cors.headers(request)
        write_key = request.match_info["write_key"]
        if write_key not in intake.by_key:
            response = error(404, "not_found", "unknown write key")
            response.headers.update(cors)
            return response
        try:
            scheme, host = public_for(tuple(intake.config.server.trusted_proxies)).of(request)
        except Refusal as refusal:
            response = refusal.response()
            response.headers.update(cors)
            return response
        document = settings_document(write_key, f"{host}/v1", scheme)
        headers = {"Cache-Control": SETTINGS_CACHE_CONTROL, **cors}
        return web.Response(
            body=_encode(document), headers=headers, content_type="application/json"
        )

    async def remote_metrics(self, request: web.Request) -> web.Response:
        """analytics.js posts its own telemetry here (``{"series": [...]}``); we have no
        use for it, so it is read (bounded) and dropped."""
        intake = self.intake()
        try:
            await read_body(request, intake.max_body)
            response = web.json_response({"success": True})
        except Refusal as refusal:
            response = refusal.response()
        response.headers.update(intake.cors.headers(request))
        return response


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _accepts_gzip(header: str) -> bool:
    for part in header.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() == "gzip":
            quality = params.strip().removeprefix("q=")
            return not params or quality not in ("0", "0.0", "0.00", "0.000")
    return False


# the visitor cookie ---------------------------------------------------------------------


def cookie_domain(host: str, origin: str) -> str:
    """The ``Domain`` for a cookie the page's site can read: the labels the tracking host
    and the page's host share (``t.shop.example.com`` + ``www.shop.example.com`` →
    ``shop.example.com``), or "" for a host-only cookie (IP addresses, one-label names,
    or the page on this very host). A shared suffix that is a public suffix (``co.uk``)
    is refused by the browser itself, which then keeps no cookie rather than a wrong one.
    """
    page = (urlsplit(origin).hostname or "").lower().rstrip(".")
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else ""
    name = name.lower().rstrip(".")
    if not page or not name or page == name or _is_ip(page) or _is_ip(name):
        return ""
    shared: list[str] = []
    for mine, theirs in zip(reversed(name.split(".")), reversed(page.split(".")), strict=False):
        if mine != theirs:
            break
        shared.append(mine)
    return ".".join(reversed(shared)) if len(shared) >= 2 else ""


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def visitor_cookie(anonymous_id: str, domain: str, secure: bool) -> str:
    """The ``Set-Cookie`` value. Not HttpOnly: the SDK reads it to keep the same id.
    SameSite=Lax: the tracking subdomain is same-site with the shop, so it is sent."""
    parts = [f"{VISITOR_COOKIE}={anonymous_id}", f"Max-Age={VISITOR_MAX_AGE}", "Path=/"]
    if domain:
        parts.append(f"Domain={domain}")
    parts.append("SameSite=Lax")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def remember_visitor(
    request: web.Request, response: web.StreamResponse, events: Sequence[Event], intake: Intake
) -> None:
    """On a browser's successful native request, (re)set the anonymous-id cookie to the id
    the SDK used, from this host, so it outlives script-written storage (module docstring).
    Requests without an ``Origin`` (servers) get no cookie."""
    origin = request.headers.get("Origin")
    if not origin or response.status != 200:
        return
    anonymous_id = next((e.user.anonymous_id for e in reversed(events) if e.user.anonymous_id), "")
    if not _COOKIE_VALUE.fullmatch(anonymous_id):
        return
    try:
        scheme, host = public_for(tuple(intake.config.server.trusted_proxies)).of(request)
    except Refusal:
        return
    cookie = visitor_cookie(anonymous_id, cookie_domain(host, origin), scheme == "https")
    response.headers.add("Set-Cookie", cookie)
