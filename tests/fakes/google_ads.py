"""A fake Google: the OAuth token endpoint, the Data Manager API ``/v1/events:ingest`` and the
Google Ads API ``/v{N}/customers/{id}:uploadClickConversions``, checked the way Google
documents them and answering the way Google answers.

Token: ``grant_type=refresh_token`` with the right client and refresh token, else
``400 {"error": "invalid_grant"}``. Every API call needs ``Authorization: Bearer`` with an
issued token (else ``401 UNAUTHENTICATED``).

Data Manager (fast-fail: one bad event fails the request with ``400 INVALID_ARGUMENT`` and a
``BadRequest`` naming ``events[i]``): destinations with a ``GOOGLE_ADS`` operating account
and a numeric ``productDestinationId``; 1 to 2,000 events; ``encoding`` HEX with user data;
``eventTimestamp`` RFC 3339, not in the future, at most 90 days old; ``eventSource``
enum; at most one click id; ``userData.userIdentifiers`` (1 to 10, each exactly one of
``emailAddress``/``phoneNumber`` as 64 lowercase hex or ``address`` with hashed names, a
2-letter ``regionCode`` and a ``postalCode``); consent enums. Success: ``{"requestId"}``.

UploadClickConversions: ``developer-token`` header, ``partialFailure: true``, at most 2,000
conversions, ``conversionAction`` resource names, ``yyyy-mm-dd hh:mm:ss+hh:mm`` times, hashed
identifiers; bad rows come back as ``{}`` with ``partialFailureError``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from tests.fakes.webhook import Answer, FakeWebhook, Received

HEX64 = re.compile(r"[0-9a-f]{64}")
ADS_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")
EVENT_SOURCES = {"WEB", "APP", "IN_STORE", "PHONE", "OTHER"}
CONSENT = {"CONSENT_GRANTED", "CONSENT_DENIED", "CONSENT_STATUS_UNSPECIFIED"}
ADS_CONSENT = {"GRANTED", "DENIED", "UNSPECIFIED"}
NINETY_DAYS = 90 * 86400


def google_error(
    status: int, state: str, message: str, violations: list[dict] | None = None, headers=None
) -> Answer:
    """A google.rpc.Status error body, with a BadRequest detail when given violations."""
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": state,
            "domain": "datamanager.googleapis.com",
            "metadata": {"requestId": "t-fake"},
        }
    ]
    if violations:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": violations}
        )
    body = {"error": {"code": status, "message": message, "status": state, "details": details}}
    return Answer(status, headers or {}, json.dumps(body).encode())


def partial_failure(count: int, rows: dict[int, tuple[str, str, str]]) -> Answer:
    """An UploadClickConversions answer where ``rows`` (index → (error group, error code,
    message)) failed: HTTP 200, ``{}`` results and a GoogleAdsFailure."""
    results = [{} if i in rows else {"conversionAction": "customers/x"} for i in range(count)]
    errors = [
        {
            "errorCode": {group: code},
            "message": message,
            "location": {"fieldPathElements": [{"fieldName": "conversions", "index": i}]},
        }
        for i, (group, code, message) in rows.items()
    ]
    body = {
        "results": results,
        "partialFailureError": {
            "code": 3,
            "message": "; ".join(f"{m}, at conversions[{i}]" for i, (_, _, m) in rows.items()),
            "details": [
                {
                    "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                    "errors": errors,
                    "requestId": "fake",
                }
            ],
        },
    }
    return Answer(200, {}, json.dumps(body).encode())


class FakeGoogleAds(FakeWebhook):
    """``await FakeGoogleAds().start()``; ``endpoint`` (API base) and ``token_url``."""

    def __init__(
        self,
        client_id: str = "client-1",
        client_secret: str = "secret-1",
        refresh_token: str = "refresh-1",
        developer_token: str = "dev-token",
    ) -> None:
        super().__init__()
        self.client_id, self.client_secret = client_id, client_secret
        self.refresh_token, self.developer_token = refresh_token, developer_token
        self.issued: list[str] = []
        self.token_requests = 0
        self.kept: list[dict] = []
        self.bodies: list[dict] = []
        self.token_script: list[Answer] = []

    @property
    def token_url(self) -> str:
        return self.endpoint + "/token"

    @property
    def accepted_events(self) -> list[dict]:
        return self.kept

    @property
    def api_requests(self) -> list[Received]:
        return [r for r in self.requests if r.path != "/token"]

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.path == "/token":
            answer = self.token_script.pop(0) if self.token_script else self._token(raw)
            self.token_requests += 1
            self.requests.append(Received(time.monotonic(), "/token", {}, [], answer.status))
            return web.Response(status=answer.status, headers=answer.headers, body=answer.body)
        scripted = self.script.pop(0) if self.script else None
        if request.path == "/v1/events:ingest":
            body, problems, natural, key = self._ingest(request, raw)
        elif re.fullmatch(r"/v\d+/customers/\d+:uploadClickConversions", request.path):
            body, problems, natural, key = self._upload(request, raw)
        else:
            body, problems, natural, key = {}, [f"unknown path {request.path}"], Answer(404), ""
        self.problems.extend(problems)
        answer = scripted or natural
        items = body.get(key, []) if isinstance(body, dict) else []
        if isinstance(body, dict):
            self.bodies.append(body)
        if 200 <= answer.status < 300:
            document = json.loads(answer.body or b"{}")
            results = document.get("results")
            if results is None:
                self.kept.extend(items)
            else:
                self.kept.extend(item for item, r in zip(items, results, strict=False) if r)
        return await self._answer(request, items, answer)

    # OAuth ------------------------------------------------------------------------------

    def _token(self, raw: bytes) -> Answer:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        expected = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
        }
        if form != expected:
            body = {"error": "invalid_grant", "error_description": "Bad Request"}
            return Answer(400, {}, json.dumps(body).encode())
        token = f"ya29.fake-{len(self.issued) + 1}"
        self.issued.append(token)
        body = {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        return Answer(200, {}, json.dumps(body).encode())

    def _authorized(self, request: web.Request) -> bool:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return token in self.issued

    # Data Manager -----------------------------------------------------------------------

    def _ingest(self, request: web.Request, raw: bytes) -> tuple[Any, list[str], Answer, str]:
        problems: list[str] = []
        if not self._authorized(request):
            problems.append("no valid Bearer token")
            return (
                {},
                problems,
                google_error(
                    401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
                ),
                "events",
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return (
                {},
                ["body is not JSON"],
                google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload"),
                "events",
            )
        for i, destination in enumerate(body.get("destinations") or [None]):
            account = (destination or {}).get("operatingAccount", {})
            if (
                account.get("accountType") != "GOOGLE_ADS"
                or not str(account.get("accountId", "")).isdigit()
            ):
                problems.append(
                    f"destinations[{i}].operatingAccount is not a GOOGLE_ADS account id"
                )
            if not str((destination or {}).get("productDestinationId", "")).isdigit():
                problems.append(
                    f"destinations[{i}].productDestinationId is not a conversion action id"
                )
        events = body.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= 2000:
            problems.append(f"events must hold 1 to 2000 events, got {len(events or [])}")
            return (
                body,
                problems,
                google_error(400, "INVALID_ARGUMENT", "There was a problem with the request."),
                "events",
            )
        if any("userData" in e for e in events) and body.get("encoding") != "HEX":
            problems.append("encoding must be HEX when events carry userData")
        if not isinstance(body.get("validateOnly", False), bool):
            problems.append("validateOnly is not a boolean")
        violations = []
        now = time.time()
        for i, event in enumerate(events):
            for problem in self._check_event(event, now):
                problems.append(f"events[{i}]: {problem}")
                violations.append(
                    {"field": f"events[{i}]", "description": problem, "reason": "INVALID_ARGUMENT"}
                )
        if violations:
            return (
                body,
                problems,
                google_error(
                    400, "INVALID_ARGUMENT", "There was a problem with the request.", violations
                ),
                "events",
            )
        if problems:
            return (
                body,
                problems,
                google_error(400, "INVALID_ARGUMENT", "There was a problem with the request."),
                "events",
            )
        return (
            body,
            problems,
            Answer(200, {}, json.dumps({"requestId": str(uuid.uuid4())}).encode()),
            "events",
        )

    def _check_event(self, event: dict, now: float) -> list[str]:
        problems = []
        try:
            moment = datetime.fromisoformat(
                str(event.get("eventTimestamp", "")).replace("Z", "+00:00")
            )
            if moment.tzinfo is None:
                problems.append("eventTimestamp has no offset")
            elif moment.timestamp() > now + 5:
                problems.append("eventTimestamp is in the future")
            elif now - moment.timestamp() > NINETY_DAYS:
                problems.append("eventTimestamp is older than 90 days")
        except ValueError:
            problems.append(f"eventTimestamp {event.get('eventTimestamp')!r} is not RFC 3339")
        if event.get("eventSource") not in EVENT_SOURCES:
            problems.append(f"eventSource {event.get('eventSource')!r} is not an EventSource")
        if not isinstance(event.get("transactionId", ""), str):
            problems.append("transactionId is not a string")
        if "conversionValue" in event and not isinstance(event["conversionValue"], int | float):
            problems.append("conversionValue is not a number")
        if "currency" in event and not re.fullmatch(r"[A-Z]{3}", str(event["currency"])):
            problems.append("currency is not an ISO 4217 code")
        ads = event.get("adIdentifiers", {})
        if sum(1 for key in ("gclid", "gbraid", "wbraid") if ads.get(key)) > 1:
            problems.append("more than one of gclid, gbraid, wbraid")
        unknown = set(ads) - {
            "gclid",
            "gbraid",
            "wbraid",
            "sessionAttributes",
            "landingPageDeviceInfo",
        }
        if unknown:
            problems.append(f"unknown adIdentifiers {sorted(unknown)}")
        if "userData" in event:
            identifiers = event["userData"].get("userIdentifiers")
            if not isinstance(identifiers, list) or not 1 <= len(identifiers) <= 10:
                problems.append("userData needs 1 to 10 userIdentifiers")
                identifiers = []
            for identifier in identifiers:
                problems.extend(_identifier_problems(identifier))
        for key, value in event.get("consent", {}).items():
            if key not in ("adUserData", "adPersonalization") or value not in CONSENT:
                problems.append(f"consent.{key}={value!r} is not a ConsentStatus")
        for item in event.get("cartData", {}).get("items", []):
            if not isinstance(item.get("merchantProductId"), str):
                problems.append("cartData item without merchantProductId")
        if (
            not ads.get("gclid")
            and not ads.get("gbraid")
            and not ads.get("wbraid")
            and "userData" not in event
        ):
            problems.append("no ad identifier and no user data to match on")
        return problems

    # UploadClickConversions -------------------------------------------------------------

    def _upload(self, request: web.Request, raw: bytes) -> tuple[Any, list[str], Answer, str]:
        problems: list[str] = []
        if not self._authorized(request):
            problems.append("no valid Bearer token")
            return (
                {},
                problems,
                google_error(
                    401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
                ),
                "conversions",
            )
        if request.headers.get("developer-token") != self.developer_token:
            problems.append("missing or wrong developer-token header")
            return (
                {},
                problems,
                google_error(401, "UNAUTHENTICATED", "The developer token is not valid."),
                "conversions",
            )
        body = json.loads(raw)
        customer = re.search(r"customers/(\d+):", request.path).group(1)  # type: ignore[union-attr]
        if body.get("partialFailure") is not True:
            problems.append("partialFailure must be true for uploadClickConversions")
        conversions = body.get("conversions") or []
        if not 1 <= len(conversions) <= 2000:
            problems.append(f"{len(conversions)} conversions (1 to 2000 allowed)")
            return (
                body,
                problems,
                google_error(400, "INVALID_ARGUMENT", "TOO_MANY_CONVERSIONS_IN_REQUEST"),
                "conversions",
            )
        bad: dict[int, tuple[str, str, str]] = {}
        for i, conversion in enumerate(conversions):
            found = []
            if not re.fullmatch(
                rf"customers/{customer}/conversionActions/\d+",
                conversion.get("conversionAction", ""),
            ):
                found.append("conversionAction is not customers/{id}/conversionActions/{id}")
            if not ADS_TIME.fullmatch(conversion.get("conversionDateTime", "")):
                found.append("conversionDateTime is not yyyy-mm-dd hh:mm:ss+hh:mm")
            if sum(1 for key in ("gclid", "gbraid", "wbraid") if conversion.get(key)) > 1:
                found.append("more than one click id")
            for identifier in conversion.get("userIdentifiers", []):
                kinds = set(identifier) - {"userIdentifierSource"}
                if len(kinds) != 1:
                    found.append("a UserIdentifier holds exactly one identifier")
                for key in ("hashedEmail", "hashedPhoneNumber"):
                    if key in identifier and not HEX64.fullmatch(identifier[key]):
                        found.append(f"{key} is not SHA-256 lowercase hex")
            if conversion.get("consent", {}).get("adUserData", "GRANTED") not in ADS_CONSENT:
                found.append("consent.adUserData is not a ConsentStatus")
            if "adPersonalization" in conversion.get("consent", {}):
                found.append("adPersonalization cannot be set for click conversions")
            problems.extend(f"conversions[{i}]: {p}" for p in found)
            if found:
                bad[i] = ("conversionUploadError", "INVALID_CONVERSION", "; ".join(found))
        return body, problems, partial_failure(len(conversions), bad), "conversions"


def _identifier_problems(identifier: dict) -> list[str]:
    if len(identifier) != 1:
        return ["a UserIdentifier holds exactly one of emailAddress, phoneNumber, address"]
    problems = []
    for key in ("emailAddress", "phoneNumber"):
        if key in identifier and not HEX64.fullmatch(str(identifier[key])):
            problems.append(f"{key} is not SHA-256 lowercase hex")
    address = identifier.get("address")
    if address is not None:
        if set(address) != {"givenName", "familyName", "regionCode", "postalCode"}:
            problems.append("address needs givenName, familyName, regionCode and postalCode")
        for key in ("givenName", "familyName"):
            if not HEX64.fullmatch(str(address.get(key, ""))):
                problems.append(f"address.{key} is not SHA-256 lowercase hex")
        if not re.fullmatch(r"[A-Z]{2}", str(address.get("regionCode", ""))):
            problems.append("address.regionCode is not ISO 3166-1 alpha-2")
    return problems
