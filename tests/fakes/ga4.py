"""A fake GA4 Measurement Protocol collector: ``/mp/collect`` and the validation server
``/debug/mp/collect``, checked the way Google's Measurement Protocol reference describes.

Checks: ``measurement_id`` (or ``firebase_app_id``) and ``api_secret`` in the query;
``client_id`` (or ``app_instance_id``); ``user_id`` at most 256 characters; ``timestamp_micros``
integers of microseconds within the last 72 hours; 1 to 25 events; event names (letters,
digits, ``_``, start with a letter, at most 40 characters, not reserved); at most 25 params,
names at most 40 characters, string values at most 100; ``items`` with ``item_id`` or
``item_name``; ``user_data`` hashed fields as 64 lowercase hex, address fields unhashed;
``consent`` GRANTED/DENIED; body under 130 kB.

Like the real thing, ``/mp/collect`` answers ``204`` whatever it got (only valid events are
"kept"); ``/debug/mp/collect`` answers ``200 {"validationMessages": [...]}``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from aiohttp import web

from tests.fakes.webhook import Answer, FakeWebhook

HEX64 = re.compile(r"[0-9a-f]{64}")
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
RESERVED = {"first_open", "first_visit", "session_start", "user_engagement", "app_remove", "error"}
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.")
SEVENTY_TWO_HOURS = 72 * 3600 * 1_000_000


def validation(messages: list[tuple[str, str, str]]) -> Answer:
    """A validation server answer: (fieldPath, description, validationCode) messages."""
    body = {
        "validationMessages": [
            {"fieldPath": path, "description": text, "validationCode": code}
            for path, text, code in messages
        ]
    }
    return Answer(200, {}, json.dumps(body).encode())


class FakeGA4(FakeWebhook):
    """``await FakeGA4(measurement_id, api_secret).start()``; ``endpoint`` is its base URL."""

    def __init__(self, measurement_id: str = "G-TEST123", api_secret: str = "ga-secret") -> None:
        super().__init__()
        self.measurement_id = measurement_id
        self.api_secret = api_secret
        self.kept: list[dict] = []
        self.bodies: list[dict] = []

    @property
    def accepted_events(self) -> list[dict]:
        return self.kept

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        scripted = self.script.pop(0) if self.script else None
        debug = request.path == "/debug/mp/collect"
        body, messages = self._check(request, raw)
        if request.path not in ("/mp/collect", "/debug/mp/collect"):
            messages.append(("", f"unknown path {request.path}", "VALUE_INVALID"))
        self.problems.extend(f"{path}: {text}" for path, text, _ in messages)
        natural = validation(messages) if debug else Answer(204, {}, b"")
        answer = scripted or natural
        events = body.get("events", []) if isinstance(body, dict) else []
        if isinstance(body, dict):
            self.bodies.append({**body, "_path": request.path})
        if not debug and 200 <= answer.status < 300 and not messages:
            self.kept.extend(events)
        return await self._answer(request, events, answer)

    def _check(self, request: web.Request, raw: bytes) -> tuple[Any, list[tuple[str, str, str]]]:  # type: ignore[override]
        messages: list[tuple[str, str, str]] = []

        def bad(path: str, text: str, code: str = "VALUE_INVALID") -> None:
            messages.append((path, text, code))

        query = request.query
        stream = query.get("measurement_id") or query.get("firebase_app_id")
        if stream != self.measurement_id or query.get("api_secret") != self.api_secret:
            bad("", "wrong measurement_id or api_secret")
        if len(raw) >= 130_000:
            bad("", "post body must be smaller than 130kB", "VALUE_OUT_OF_BOUNDS")
        try:
            body = json.loads(raw)
        except ValueError:
            bad("", "body is not JSON")
            return {}, messages
        client = body.get("client_id") or body.get("app_instance_id")
        if not isinstance(client, str) or not client:
            bad("client_id", "client_id is required", "VALUE_REQUIRED")
        if "user_id" in body and (
            not isinstance(body["user_id"], str) or len(body["user_id"]) > 256
        ):
            bad("user_id", "user_id must be a string of at most 256 characters")
        for key, value in body.get("consent", {}).items():
            if key not in ("ad_user_data", "ad_personalization") or value not in (
                "GRANTED",
                "DENIED",
            ):
                bad(f"consent.{key}", f"consent value {value!r} is invalid")
        self._check_user_data(body.get("user_data"), bad)
        now = time.time() * 1_000_000
        if "timestamp_micros" in body:
            self._check_time("timestamp_micros", body["timestamp_micros"], now, bad)
        events = body.get("events")
        if not isinstance(events, list) or not events:
            bad("events", "events is required", "VALUE_REQUIRED")
            return body, messages
        if len(events) > 25:
            bad("events", f"{len(events)} events: at most 25 per request", "EXCEEDED_MAX_ENTITIES")
        for i, event in enumerate(events):
            name = event.get("name", "")
            if not NAME.fullmatch(name) or name in RESERVED or name.startswith(RESERVED_PREFIXES):
                bad("events", f"Event at index: [{i}] has invalid name [{name}].", "NAME_INVALID")
            if "timestamp_micros" in event:
                self._check_time(
                    f"events[{i}].timestamp_micros", event["timestamp_micros"], now, bad
                )
            params = event.get("params", {})
            if len(params) > 25:
                bad(
                    "events",
                    f"Event at index: [{i}] has more than 25 params.",
                    "EXCEEDED_MAX_ENTITIES",
                )
            for key, value in params.items():
                if len(key) > 40:
                    bad(
                        "events",
                        f"Event at index: [{i}] param name {key} is too long.",
                        "NAME_INVALID",
                    )
                if (
                    isinstance(value, str)
                    and len(value) > 100
                    and key not in ("page_location", "page_referrer")
                ):
                    bad(
                        "events",
                        f"Event at index: [{i}] param {key} value too long.",
                        "VALUE_OUT_OF_BOUNDS",
                    )
                if key != "items" and isinstance(value, list | dict):
                    bad(
                        "events",
                        f"Event at index: [{i}] param {key} must be a scalar.",
                        "VALUE_INVALID",
                    )
            for item in params.get("items", []):
                if not (item.get("item_id") or item.get("item_name")):
                    bad(
                        "events",
                        f"Event at index: [{i}] has an item without item_id or item_name.",
                        "VALUE_REQUIRED",
                    )
            if "value" in params and not re.fullmatch(r"[A-Z]{3}", str(params.get("currency", ""))):
                bad(
                    "events",
                    f"Event at index: [{i}] has a value without a valid currency.",
                    "VALUE_REQUIRED",
                )
        return body, messages

    @staticmethod
    def _check_time(path: str, micros: Any, now: float, bad) -> None:
        if not isinstance(micros, int) or isinstance(micros, bool):
            bad(path, "timestamp_micros must be an integer")
        elif micros > now + 5_000_000:
            bad(path, "timestamp_micros is in the future", "VALUE_OUT_OF_BOUNDS")
        elif now - micros > SEVENTY_TWO_HOURS:
            bad(path, "timestamp_micros is more than 72 hours in the past", "VALUE_OUT_OF_BOUNDS")
        elif micros < 10**15:
            bad(path, "timestamp_micros is not in microseconds")

    @staticmethod
    def _check_user_data(user_data: Any, bad) -> None:
        if user_data is None:
            return
        for key in ("sha256_email_address", "sha256_phone_number"):
            values = user_data.get(key, [])
            for value in values if isinstance(values, list) else [values]:
                if not HEX64.fullmatch(str(value)):
                    bad(f"user_data.{key}", "must be SHA-256 hex encoded")
        addresses = user_data.get("address", [])
        for address in addresses if isinstance(addresses, list) else [addresses]:
            for key in ("sha256_first_name", "sha256_last_name", "sha256_street"):
                if key in address and not HEX64.fullmatch(str(address[key])):
                    bad(f"user_data.address.{key}", "must be SHA-256 hex encoded")
            for key in ("city", "region", "postal_code", "country"):
                if key in address and HEX64.fullmatch(str(address[key])):
                    bad(f"user_data.address.{key}", "must not be hashed")
            if "country" in address and not re.fullmatch(r"[A-Z]{2}", address["country"]):
                bad("user_data.address.country", "must be ISO 3166-1 alpha-2")
