"""What every destination plugin shares: common config keys and the sans-IO interface.

A plugin is data in, data out: ``build()`` turns canonical events into HTTP requests and
``classify()`` turns the platform's answer into one outcome per event. Pacing, retries and
bookkeeping live in ``delivery/``, so a plugin never touches sockets, SQLite or tasks.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import ClassVar, Literal, Protocol

import msgspec

from tracklayer.duration import Duration
from tracklayer.model import Event, Outcome


class RateLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A token bucket: ``rps`` requests per second, up to ``burst`` at once (default ``rps``)."""

    rps: float
    burst: float = 0.0

    def __post_init__(self) -> None:
        if self.rps <= 0:
            raise ValueError("rps: must be greater than 0")
        if self.burst < 0:
            raise ValueError("burst: cannot be negative")

    @property
    def capacity(self) -> float:
        return self.burst or max(1.0, self.rps)


class BatchPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Send when ``max_events`` are waiting or the oldest has waited ``max_wait``."""

    max_events: int = 100
    max_wait: Duration = Duration(1.0)

    def __post_init__(self) -> None:
        if self.max_events < 1:
            raise ValueError("max_events: must be at least 1")


class RetryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Exponential backoff with full jitter between ``initial_backoff`` and ``max_backoff``;
    an event is dead-lettered after ``max_attempts`` sends or ``max_age`` since receipt."""

    max_attempts: int = 10
    max_age: Duration = Duration(86400.0)
    initial_backoff: Duration = Duration(1.0)
    max_backoff: Duration = Duration(600.0)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts: must be at least 1")


class DestinationConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    """Keys every destination type accepts. ``rate_limit`` and ``batch`` default per platform."""

    id: str
    mode: Literal["live", "observe"] = "live"
    endpoint: str = ""
    events: list[str] | None = None
    rename: dict[str, str] = {}
    requires_consent: list[str] = []
    rate_limit: RateLimit | None = None
    batch: BatchPolicy | None = None
    retry: RetryPolicy = RetryPolicy()
    timeout: Duration = Duration(10.0)
    max_in_flight: int = 4

    def require_http_url(self, key: str) -> None:
        """The URL at ``key`` (an ``endpoint`` override or a webhook ``url``) is http(s)."""
        if not getattr(self, key).startswith(("http://", "https://")):
            raise ValueError(f"{key}: must start with http:// or https://")

    def require_live(self, *keys: str) -> None:
        """Credentials a live destination cannot do without (observe mode runs without)."""
        if self.mode != "live":
            return
        for key in keys:
            if not getattr(self, key):
                raise ValueError(f"{key}: required in live mode")

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("id: must not be empty")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight: must be at least 1")


class Identifier(msgspec.Struct, frozen=True):
    """One identifier a destination sends: a user field, the platform family whose
    normalisation rules apply (``meta``, ``google``, ``tiktok``: see
    ``pipeline/normalize.py``), and whether it goes out as SHA-256 or as the normalised
    value. The pipeline computes exactly the identifiers configured destinations declare
    and puts them on the event: ``event.hashed[key]`` or ``event.normalized[key]``."""

    field: str
    variant: str = "meta"
    form: Literal["hashed", "raw"] = "hashed"

    @property
    def key(self) -> str:
        return f"{self.variant}.{self.field}"


def identifiers(variant: str, form: str, *fields: str) -> tuple[Identifier, ...]:
    """Shorthand for a plugin's declaration: ``identifiers("meta", "hashed", "email", ...)``."""
    return tuple(Identifier(field, variant, form) for field in fields)  # type: ignore[arg-type]


class Request(msgspec.Struct, frozen=True):
    """One HTTP request for the events at ``indexes`` of the batch given to ``build()``."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    indexes: list[int]


class Response(msgspec.Struct, frozen=True):
    """The platform's HTTP answer to one request."""

    status: int
    headers: dict[str, str]
    body: bytes


class Destination(Protocol):
    """The interface ``delivery/`` drives. Implementations are plain classes, one per file."""

    config_type: ClassVar[type[DestinationConfig]]
    default_batch: ClassVar[BatchPolicy]
    default_rate_limit: ClassVar[RateLimit]
    identifiers: ClassVar[tuple[Identifier, ...]]

    def validate(self, event: Event) -> Outcome | None:
        """A rejection when the platform would refuse ``event`` alone, else None."""

    def build(self, events: list[Event]) -> list[Request]:
        """The requests that carry ``events``; every index appears in exactly one request."""

    def classify(self, request: Request, response: Response) -> list[Outcome]:
        """One outcome per index of ``request``, read from the platform's answer."""


class Scored(Protocol):
    """Optional, for match quality: the weight of each identifier key the platform matches
    on (``match_weights``, a ClassVar, each weight with its reason in a comment) and the keys
    one event's final payload carries, present and valid (``match_keys``)."""

    match_weights: ClassVar[dict[str, float]]

    def match_keys(self, event: Event) -> set[str]: ...


class Authenticating(Protocol):
    """Optional, for platforms whose requests need a short-lived token (OAuth refresh-token
    flow). Delivery calls ``token_request`` before each batch; when it returns a request,
    delivery sends it and hands the answer to ``token_response``, which keeps the token
    (for ``build`` to use) or returns the outcome every event of the batch gets instead."""

    def token_request(self, now: float) -> Request | None: ...

    def token_response(self, response: Response, now: float) -> Outcome | None: ...


def header(headers: dict[str, str], name: str) -> str:
    """A response header by case-insensitive name ("" when absent)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return ""


def retry_after_seconds(headers: dict[str, str]) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or HTTP-date), or None when absent."""
    value = header(headers, "Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def http_outcome(status: int, headers: dict[str, str], body: bytes) -> Outcome:
    """The usual reading of a status code: 2xx accepted; 408, 429, 5xx retried; other 4xx
    rejected with the status and an excerpt of the body as the reason."""
    if 200 <= status < 300:
        return Outcome("accepted")
    if status in (408, 429) or status >= 500:
        return Outcome(
            "retry",
            code=str(status),
            message=excerpt(body),
            retry_after=retry_after_seconds(headers),
        )
    return Outcome("rejected", code=str(status), message=excerpt(body))


def excerpt(body: bytes, limit: int = 300) -> str:
    """The start of a response body as text, for reasons and logs."""
    text = body[:limit].decode("utf-8", "replace").strip()
    return text + ("…" if len(body) > limit else "")
