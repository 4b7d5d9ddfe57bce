"""A fake TikTok API for Business ``/open_api/v1.3/event/track/`` (Events API 2.0), checked
the way TikTok documents it and answering as TikTok does: HTTP 200 with a ``code``.

Checks: ``Access-Token`` header (else code 40105); ``event_source`` one of web/app/offline/crm
and ``event_source_id`` the pixel code (else 40001 "No permission to operate pixel code");
1 to 1,000 events in ``data`` (else 40002); each with ``event``, ``event_time`` as integer
Unix seconds not in the future, ``event_id`` a string, ``user.email``/``phone``/
``external_id`` as 64 lowercase hex (string or list), ``ip`` a raw IP, ``properties``
value/currency/contents/content_type, ``limited_data_use`` a boolean. Success:
``{"code": 0, "message": "OK", "request_id", "data": {}}``; ``throttle()`` gives 40100.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from typing import Any

from aiohttp import web

from tests.fakes.webhook import Answer, FakeWebhook

HEX64 = re.compile(r"[0-9a-f]{64}")
SOURCES = {"web", "app", "offline", "crm"}


def tiktok_answer(code: int, message: str, status: int = 200) -> Answer:
    body = {"code": code, "message": message, "request_id": "202612030900fake", "data": {}}
    return Answer(status, {}, json.dumps(body).encode())


def throttle() -> Answer:
    return tiktok_answer(40100, "Too many requests. Please retry in some time.")


class FakeTikTok(FakeWebhook):
    """``await FakeTikTok(pixel_code, access_token).start()``; ``endpoint`` is its base URL."""

    def __init__(self, pixel_code: str = "CTEST123PIXEL", access_token: str = "tt-token") -> None:
        super().__init__()
        self.pixel_code = pixel_code
        self.access_token = access_token
        self.kept: list[dict] = []
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
        if answer.status == 200 and json.loads(answer.body or b"{}").get("code") == 0:
            self.kept.extend(events)
        return await self._answer(request, events, answer)

    def _check(self, request: web.Request, raw: bytes) -> tuple[Any, list[str], Answer]:  # type: ignore[override]
        problems: list[str] = []
        if request.path != "/open_api/v1.3/event/track/":
            return {}, [f"unknown path {request.path}"], Answer(404, {}, b"404 page not found")
        if request.headers.get("Access-Token") != self.access_token:
            problems.append("wrong or missing Access-Token header")
            return (
                {},
                problems,
                tiktok_answer(40105, "Access token is incorrect or has been revoked."),
            )
        if request.headers.get("Content-Type", "").split(";")[0] != "application/json":
            problems.append("Content-Type is not application/json")
        try:
            body = json.loads(raw)
        except ValueError:
            return {}, ["body is not JSON"], tiktok_answer(40002, "Invalid JSON")
        if body.get("event_source") not in SOURCES:
            problems.append(f"event_source {body.get('event_source')!r} is not web/app/offline/crm")
        if body.get("event_source_id") != self.pixel_code:
            problems.append("event_source_id is not the pixel code")
            return (
                body,
                problems,
                tiktok_answer(
                    40001, f"No permission to operate pixel code: {body.get('event_source_id')}"
                ),
            )
        data = body.get("data")
        if not isinstance(data, list) or not 1 <= len(data) <= 1000:
            problems.append(f"data must hold 1 to 1000 events, got {len(data or [])}")
            return body, problems, tiktok_answer(40002, "data: length must be between 1 and 1000")
        now = time.time()
        first: str | None = None
        for i, event in enumerate(data):
            for problem in self._check_event(event, now):
                problems.append(f"data[{i}]: {problem}")
                first = first or f"data[{i}].{problem}"
        if first:
            return body, problems, tiktok_answer(40002, first)
        return body, problems, tiktok_answer(0, "OK")

    @staticmethod
    def _check_event(event: dict, now: float) -> list[str]:
        problems = []
        if not isinstance(event.get("event"), str) or not event["event"]:
            problems.append("event is required")
        moment = event.get("event_time")
        if not isinstance(moment, int) or isinstance(moment, bool):
            problems.append("event_time must be an integer of Unix seconds")
        elif moment > now + 5 or moment > 10**11:
            problems.append("event_time is in the future or not seconds")
        if "event_id" in event and not isinstance(event["event_id"], str):
            problems.append("event_id must be a string")
        if not isinstance(event.get("limited_data_use", False), bool):
            problems.append("limited_data_use must be a boolean")
        user = event.get("user", {})
        for key in ("email", "phone", "external_id"):
            if key in user:
                values = user[key] if isinstance(user[key], list) else [user[key]]
                if not all(isinstance(v, str) and HEX64.fullmatch(v) for v in values):
                    problems.append(f"user.{key} must be SHA-256 lowercase hex")
        if "ip" in user:
            try:
                ipaddress.ip_address(user["ip"])
            except ValueError:
                problems.append("user.ip is not a raw IP address")
        properties = event.get("properties", {})
        if "value" in properties and not isinstance(properties["value"], int | float):
            problems.append("properties.value must be a number")
        if "currency" in properties and not re.fullmatch(r"[A-Z]{3}", str(properties["currency"])):
            problems.append("properties.currency must be ISO 4217")
        if properties.get("content_type", "product") not in ("product", "product_group"):
            problems.append("properties.content_type must be product or product_group")
        for content in properties.get("contents", []):
            if not isinstance(content.get("content_id"), str):
                problems.append("contents[].content_id must be a string")
            if "quantity" in content and not isinstance(content["quantity"], int):
                problems.append("contents[].quantity must be an integer")
            if "price" in content and not isinstance(content["price"], int | float):
                problems.append("contents[].price must be a number")
        return problems
