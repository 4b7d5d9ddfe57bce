"""A fake Meta Graph API ``/{version}/{pixel_id}/events`` edge that checks every server event the
way Meta's Conversions API documentation describes it and answers the way Meta answers.

Checks (each violation goes to ``problems``; the request then gets Meta's error, as the real
API rejects the whole batch for one bad event): the path and token; ``data`` of 1 to 1,000
events; ``event_name``; ``event_time`` an integer of Unix seconds, not in the future and at
most 7 days old (error 100/2804003); ``action_source`` one of the nine values, website
events with ``event_source_url`` and ``client_user_agent``; ``user_data`` hashed keys as 64
lowercase hex (string or list), ``client_ip_address`` a raw IP, ``fbc``/``fbp`` in Meta's
cookie format, not one of the too-broad key sets; ``custom_data`` value/currency (required
for Purchase), contents; ``data_processing_options``. Success answers
``{"events_received", "messages", "fbtrace_id"}``; ``script`` overrides (see ``meta_error``).
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from tests.fakes.webhook import Answer, FakeWebhook

HEX64 = re.compile(r"[0-9a-f]{64}")
FBC = re.compile(r"fb\.\d\.\d{13}\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]{2,8})?")
FBP = re.compile(r"fb\.\d\.\d{13}\.\d+(\.[A-Za-z0-9_-]{2,8})?")
ACTION_SOURCES = {
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
}
HASHED = ("em", "ph", "fn", "ln", "db", "ge", "ct", "st", "zp", "country", "external_id")
TOO_BROAD = (
    {"ct", "country", "st", "zp", "ge", "client_user_agent"},
    {"db", "client_user_agent"},
    {"fn", "ge"},
    {"ln", "ge"},
)
SEVEN_DAYS = 7 * 86400


def meta_error(
    code: int,
    subcode: int | None = None,
    message: str = "An error occurred",
    status: int = 400,
    headers: dict[str, str] | None = None,
    transient: bool = False,
    title: str = "",
    user_message: str = "",
) -> Answer:
    """A Graph API error answer (Error Handling page's envelope)."""
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "is_transient": transient,
        "fbtrace_id": "AbCdEfGhIjK",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    if title:
        error["error_user_title"] = title
    if user_message:
        error["error_user_msg"] = user_message
    return Answer(status, headers or {}, json.dumps({"error": error}).encode())


def buc_header(minutes: float) -> dict[str, str]:
    """An ``X-Business-Use-Case-Usage`` header asking to wait ``minutes``."""
    usage = {
        "1234567890": [
            {
                "type": "ads_management",
                "call_count": 100,
                "total_cputime": 30,
                "total_time": 40,
                "estimated_time_to_regain_access": minutes,
            }
        ]
    }
    return {"X-Business-Use-Case-Usage": json.dumps(usage)}


class FakeMeta(FakeWebhook):
    """``await FakeMeta(pixel_id, access_token).start()``; ``endpoint`` is its base URL."""

    def __init__(self, pixel_id: str = "1234567890", access_token: str = "meta-token") -> None:
        super().__init__()
        self.pixel_id = pixel_id
        self.access_token = access_token
        self.kept: list[dict] = []  # server events Meta accepted
        self.bodies: list[dict] = []

    @property
    def accepted_events(self) -> list[dict]:
        return self.kept

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        scripted = self.script.pop(0) if self.script else None
        body, problems, natural = self._check(request, raw)
        self.problems.extend(problems)
        answer = scripted or natural
        events = body.get("data", []) if isinstance(body, dict) else []
        if isinstance(body, dict):
            self.bodies.append(body)
        if 200 <= answer.status < 300 and b"events_received" in answer.body:
            self.kept.extend(events)
        return await self._answer(request, events, answer)

    def _check(self, request: web.Request, raw: bytes) -> tuple[Any, list[str], Answer]:  # type: ignore[override]
        problems: list[str] = []
        match = re.fullmatch(r"/(v\d+\.\d+)/(\d+)/events", request.path)
        if not match:
            problems.append(f"path {request.path} is not /{{version}}/{{pixel_id}}/events")
            return {}, problems, meta_error(100, message="Unsupported post request", status=400)
        if request.headers.get("Content-Type", "").split(";")[0] != "application/json":
            problems.append("Content-Type is not application/json")
        try:
            body = json.loads(raw)
        except ValueError:
            problems.append("body is not JSON")
            return {}, problems, meta_error(100, message="Invalid JSON")
        token = (
            body.get("access_token")
            or parse_qs(request.query_string).get("access_token", [""])[0]
            or request.headers.get("Authorization", "").removeprefix("Bearer ")
        )
        if token != self.access_token:
            problems.append("wrong or missing access_token")
            return body, problems, meta_error(190, message="Invalid OAuth access token.")
        if match.group(2) != self.pixel_id:
            problems.append(f"unknown pixel {match.group(2)}")
            return (
                body,
                problems,
                meta_error(100, 33, "Unsupported post request. Object does not exist"),
            )
        data = body.get("data")
        if not isinstance(data, list) or not data:
            problems.append("data must be a non-empty list")
            return body, problems, meta_error(100, message="(#100) The parameter data is required")
        if len(data) > 1000:
            problems.append(f"{len(data)} events in one request (max 1000)")
            return body, problems, meta_error(100, message="(#100) Too many events, max 1000")
        if "test_event_code" in body and not isinstance(body["test_event_code"], str):
            problems.append("test_event_code is not a string")
        first_error: Answer | None = None
        now = time.time()
        for i, event in enumerate(data):
            found, error = self._check_event(event, now)
            problems.extend(f"data[{i}]: {p}" for p in found)
            first_error = first_error or error
        if first_error:
            return body, problems, first_error
        success = {"events_received": len(data), "messages": [], "fbtrace_id": "AbCdEfGhIjK"}
        return body, problems, Answer(200, {}, json.dumps(success).encode())

    def _check_event(self, event: Any, now: float) -> tuple[list[str], Answer | None]:
        problems: list[str] = []
        invalid = meta_error(100, message="(#100) Invalid parameter")
        if not isinstance(event, dict):
            return ["event is not an object"], invalid
        if not isinstance(event.get("event_name"), str) or not event["event_name"]:
            problems.append("event_name missing")
        moment = event.get("event_time")
        if not isinstance(moment, int) or isinstance(moment, bool):
            problems.append(f"event_time {moment!r} is not an integer of Unix seconds")
        elif moment > now + 5 or moment > 10**11:
            problems.append("event_time is in the future or not in seconds")
        elif now - moment > SEVEN_DAYS:
            problems.append("event_time older than 7 days")
            return problems, meta_error(
                100,
                2804003,
                "Invalid parameter",
                title="Event Timestamp Too Old",
                user_message="The timestamp for this event is too far in the past. Events need"
                " to be sent from your server within 7 days of when they occurred.",
            )
        if "event_id" in event and not isinstance(event["event_id"], str):
            problems.append("event_id is not a string")
        source = event.get("action_source")
        if source not in ACTION_SOURCES:
            problems.append(f"action_source {source!r} is not one of Meta's values")
        user = event.get("user_data")
        if not isinstance(user, dict) or not user:
            problems.append("user_data missing")
            user = {}
        if source == "website":
            if not isinstance(event.get("event_source_url"), str):
                problems.append("website event without event_source_url")
            if not isinstance(user.get("client_user_agent"), str):
                problems.append("website event without client_user_agent")
        for key in HASHED:
            if key in user:
                values = user[key] if isinstance(user[key], list) else [user[key]]
                for value in values:
                    if not isinstance(value, str) or not HEX64.fullmatch(value):
                        problems.append(f"user_data.{key} is not SHA-256 lowercase hex")
        if "client_ip_address" in user:
            try:
                ipaddress.ip_address(user["client_ip_address"])
            except (ValueError, TypeError):
                problems.append("client_ip_address is not a raw IP address")
        if "fbc" in user and not (isinstance(user["fbc"], str) and FBC.fullmatch(user["fbc"])):
            problems.append(f"fbc {user['fbc']!r} is not fb.<n>.<ms>.<fbclid>")
        if "fbp" in user and not (isinstance(user["fbp"], str) and FBP.fullmatch(user["fbp"])):
            problems.append(f"fbp {user['fbp']!r} is not fb.<n>.<ms>.<random>")
        if user and any(set(user) <= broad for broad in TOO_BROAD):
            problems.append(f"user_data {sorted(user)} is too broad")
        custom = event.get("custom_data", {})
        if not isinstance(custom, dict):
            problems.append("custom_data is not an object")
            custom = {}
        if "value" in custom and not isinstance(custom["value"], int | float):
            problems.append("custom_data.value is not a number")
        if "currency" in custom and not re.fullmatch(r"[A-Za-z]{3}", str(custom["currency"])):
            problems.append("custom_data.currency is not ISO 4217")
        if event.get("event_name") == "Purchase" and not {"value", "currency"} <= set(custom):
            problems.append("Purchase without value and currency")
        for content in custom.get("contents", []):
            if not isinstance(content.get("id"), str) or not isinstance(
                content.get("quantity"), int
            ):
                problems.append("contents need a string id and an integer quantity")
        options = event.get("data_processing_options")
        if options is not None:
            if not isinstance(options, list) or set(options) - {"LDU"}:
                problems.append("data_processing_options may only hold LDU")
            elif options:
                if event.get("data_processing_options_country") not in (0, 1):
                    problems.append("LDU without data_processing_options_country 0 or 1")
                if event.get("data_processing_options_state") not in (0, 1000):
                    problems.append("LDU without data_processing_options_state 0 or 1000")
        return problems, invalid if problems else None
