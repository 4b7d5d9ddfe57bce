"""Turning msgspec's decode errors into answers that name the field."""

from __future__ import annotations

import re

import msgspec

from tracklayer.model import Rejection
from tracklayer.sources.http import Refusal

_AT = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def describe(error: msgspec.ValidationError, prefix: str = "") -> str:
    """``Expected `str`, got `int` - at `$.userId``` → ``userId: expected `str`, got `int```."""
    match = _AT.match(str(error))
    assert match is not None
    problem = match.group("problem")
    path = (match.group("path") or "").lstrip(".")
    missing = re.match(r"Object missing required field `(.+)`", problem)
    if missing:
        path, problem = ".".join(p for p in (path, missing.group(1)) if p), "required"
    path = ".".join(p for p in (prefix, path) if p)
    problem = problem[:1].lower() + problem[1:]
    return f"{path}: {problem}" if path else problem


def decode_or_refuse(body: bytes, kind: type, prefix: str = ""):
    """Decode the request body (or a raw part of it); malformed JSON and wrong shapes become
    400s."""
    if not bytes(body).strip():
        raise Refusal(400, "invalid_json", "the request body is empty")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as error:
        raise Refusal(400, "invalid_event", describe(error, prefix)) from None
    except msgspec.DecodeError as error:
        raise Refusal(400, "invalid_json", f"malformed JSON: {error}") from None


def decode_item(raw: msgspec.Raw, kind: type, index: int):
    """One message of a batch, or a ``Rejection`` for its index."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as error:
        return Rejection(index, "invalid_event", describe(error))
    except msgspec.DecodeError as error:  # cannot happen for Raw from a valid document
        return Rejection(index, "invalid_json", str(error))
