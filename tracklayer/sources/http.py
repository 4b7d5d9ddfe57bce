"""What every HTTP source shares: answers in Segment's shapes, bounded body reading with
gzip, write-key extraction, the client's address behind trusted proxies, and CORS."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import zlib
from collections.abc import Iterable

import msgspec
from aiohttp import web

from tracklayer.model import Rejection

_encode = msgspec.json.Encoder().encode
SUCCESS = b'{"success":true}'


class Refusal(Exception):
    """A request answered with an error; becomes ``{"success": false, code, message}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def response(self) -> web.Response:
        return error(self.status, self.code, self.message, self.headers)


def error(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    body = _encode({"success": False, "code": code, "message": message})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def success(accepted: int, rejected: list[Rejection]) -> web.Response:
    """200 always (Segment's clients retry anything else); partial batches list rejects."""
    if not rejected:
        return web.Response(body=SUCCESS, content_type="application/json")
    body = _encode({"success": True, "accepted": accepted, "rejected": rejected})
    return web.Response(body=body, content_type="application/json")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, inflated when gzip, refused past ``limit`` bytes either way."""
    length = request.content_length
    if length is not None:
        if length > limit:
            raise too_large(limit)
        body = await request.read()  # bounded by the Content-Length just checked
    else:  # chunked: count as it arrives
        chunks = bytearray()
        async for chunk in request.content.iter_chunked(65536):
            chunks += chunk
            if len(chunks) > limit:
                raise too_large(limit)
        body = bytes(chunks)
    encoding = request.headers.get("Content-Encoding")
    if encoding is None:
        return body
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return inflate(body, limit)
    if encoding not in ("", "identity"):
        raise Refusal(400, "invalid_json", f"unsupported Content-Encoding {encoding!r}")
    return body


def inflate(body: bytes, limit: int) -> bytes:
    """gunzip ``body`` without ever holding more than ``limit + 1`` inflated bytes."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise Refusal(400, "invalid_json", "malformed gzip body") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise too_large(limit, inflated=True)
    if not inflater.eof:
        raise Refusal(400, "invalid_json", "truncated gzip body")
    return data


def too_large(limit: int, inflated: bool = False) -> Refusal:
    what = "inflated body" if inflated else "body"
    return Refusal(413, "too_large", f"{what} exceeds server.max_body_bytes ({limit} bytes)")


_decoded_keys: dict[str, str] = {}  # header value → write key: clients repeat one header


def basic_auth_key(request: web.Request) -> str | None:
    """The write key from ``Authorization: Basic`` (``key:`` or plain ``key``), if any."""
    header = request.headers.get("Authorization", "")
    known = _decoded_keys.get(header)
    if known is not None:
        return known
    key = _basic_auth_key(header)
    if key is not None:
        if len(_decoded_keys) >= 1024:  # bounded: unknown keys must not grow it forever
            _decoded_keys.clear()
        _decoded_keys[header] = key
    return key


def _basic_auth_key(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Refusal(401, "unauthorized", "malformed Basic authorization header") from None
    return decoded.partition(":")[0]


class ClientAddress:
    """The visitor's IP: ``X-Forwarded-For`` honoured only from ``trusted_proxies``."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted]
        self._verdicts: dict[str, bool] = {}  # address → trusted; peers are few, parsing is not

    def _is_trusted(self, address: str) -> bool:
        if not self.trusted:
            return False
        verdict = self._verdicts.get(address)
        if verdict is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                verdict = False
            else:
                verdict = any(ip in network for network in self.trusted)
            if len(self._verdicts) >= 10_000:
                self._verdicts.clear()
            self._verdicts[address] = verdict
        return verdict

    def of(self, request: web.Request) -> str:
        remote = request.remote or ""
        if not self._is_trusted(remote):
            return remote
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        # walk from the nearest hop back; the first address we do not trust is the client
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return remote
        return hops[0] if hops else remote


ALLOWED_HEADERS = "Content-Type, Authorization, X-Retry-Count, X-TrackLayer-Key"


class Cors:
    """CORS for browser routes, for ``server.cors_origins`` (``*`` allows any origin)."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = set(origins)

    def headers(self, request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if not origin or not ("*" in self.origins or origin in self.origins):
            return {}
        # Echo the origin (not "*") so credentialed requests work too.
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }

    def preflight(self, request: web.Request) -> web.Response:
        headers = self.headers(request)
        if headers:
            headers.update(
                {
                    "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
                    # Listed by name: "*" does not cover Authorization (Fetch spec).
                    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                    "Access-Control-Max-Age": "86400",
                }
            )
        return web.Response(status=204, headers=headers)


def retry_after(seconds: float) -> dict[str, str]:
    wait = str(max(1, math.ceil(seconds)))
    return {"Retry-After": wait, "X-RateLimit-Reset": wait}
