"""Google Ads conversions: the Data Manager API v1 (default) or, for accounts still allowed to
use it, the Google Ads API ``UploadClickConversions`` (v26 by default).

Data Manager follows Google's documentation at developers.google.com/data-manager/api:
"events.ingest" (``POST /v1/events:ingest``, at most 2,000 events, ``validateOnly``,
``encoding``), the ``Event``, ``Destination``, ``UserData``/``AddressInfo``, ``AdIdentifiers``,
``Consent`` and ``CartData`` references, "Format user data" (SHA-256 hex of normalised email,
E.164 phone and names; region and postal code unhashed), "Understand API errors" (fast-fail:
one invalid record fails the request; ``BadRequest.fieldViolations`` name it) and "Limits and
quotas" (300 requests a minute per project, 429 RESOURCE_EXHAUSTED). Google stopped taking new
``UploadClickConversions`` adopters on 2026-06-15 (Google Ads developer blog), hence the default.

``api: click_conversions`` follows the Google Ads API v26 reference for
``ConversionUploadService.UploadClickConversions`` (``developer-token`` and
``login-customer-id`` headers, ``partialFailure``: per-row errors in
``partialFailureError.details[].errors[].location``, empty ``{}`` result rows) and its 2,000
conversions per request limit. Both use an OAuth 2.0 refresh token
(``POST https://oauth2.googleapis.com/token``, ``grant_type=refresh_token``); scope
``datamanager`` resp. ``adwords`` is the token's.

Our rules where the documentation leaves a choice:

- Only ``purchase`` is sent unless ``events`` lists more: every event becomes a conversion of
  the one configured conversion action.
- One click id per event, gclid before gbraid before wbraid (Google Ads treats them as
  alternatives); ``transactionId``/``orderId`` is the order id, else the event id.
- eventSource: ``WEB`` with a page URL and user agent, ``APP`` from mobile libraries or screen
  calls, else ``OTHER``.
- Consent: purposes ``ad_user_data`` / ``ad_personalization`` when the event states them,
  else the ``ads`` purpose for both; unknown is left unspecified (omitted).
- Events older than 90 days are refused: no Google Ads click-through window is longer.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode

import msgspec

from tracklayer import __version__
from tracklayer.destinations import commerce
from tracklayer.destinations.base import (
    BatchPolicy,
    DestinationConfig,
    Identifier,
    RateLimit,
    Request,
    Response,
    excerpt,
    http_outcome,
    identifiers,
    retry_after_seconds,
)
from tracklayer.duration import Duration
from tracklayer.model import Event, Outcome

DATA_MANAGER_ENDPOINT = "https://datamanager.googleapis.com"
GOOGLE_ADS_ENDPOINT = "https://googleads.googleapis.com"
TOKEN_URL = "https://oauth2.googleapis.com/token"
DEFAULT_ADS_VERSION = "v26"  # "If you are new to the Google Ads API, we recommend ... v26"
MAX_EVENTS = 2000  # IngestEventsRequest: 2,000 events; UploadClickConversions: < 2,001
MAX_IDENTIFIERS = 10  # "10 user identifiers in the UserData for an Event"
MAX_AGE = 90 * 86400.0
TOKEN_MARGIN = 60.0  # refresh a token this long before Google says it expires

CLICK_IDS = ("gclid", "gbraid", "wbraid")
MOBILE_LIBRARIES = (
    "analytics-ios",
    "analytics-android",
    "analytics-swift",
    "analytics-kotlin",
    "analytics-react-native",
    "analytics-flutter",
)
# google.rpc status → retry? (API design guide, error codes)
RETRY_STATUSES = frozenset(
    {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED"}
)
_DM_EVENT_FIELD = re.compile(r"(?:^|\.)events\[(\d+)\]")
_NOT_EVENTS = frozenset({"identify", "group", "alias"})


class GoogleOAuth(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An OAuth 2.0 client and the refresh token it was granted."""

    client_id: str = ""
    client_secret: str = ""
    refresh_token: str = ""
    token_url: str = TOKEN_URL


class GoogleAdsConfig(DestinationConfig, tag="google_ads"):
    """``google_ads`` destination keys (CONTRACT.md); ``validate_only`` asks Google to check
    requests without recording anything (what ``send-test`` uses)."""

    api: Literal["data_manager", "click_conversions"] = "data_manager"
    customer_id: str = ""
    conversion_action_id: str = ""
    login_customer_id: str = ""
    developer_token: str = ""
    api_version: str = DEFAULT_ADS_VERSION
    oauth: GoogleOAuth = GoogleOAuth()
    validate_only: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.endpoint:  # optional: the platform's own endpoint by default
            self.require_http_url("endpoint")
        for key in ("customer_id", "login_customer_id"):
            value = getattr(self, key)
            if value and not value.replace("-", "").isdigit():
                raise ValueError(
                    f"{key}: expected a Google Ads customer id (digits, e.g. 123-456-7890)"
                )
        if self.conversion_action_id and not self.conversion_action_id.isdigit():
            raise ValueError("conversion_action_id: expected the numeric conversion action id")
        if not re.fullmatch(r"v\d+", self.api_version):
            raise ValueError(
                f"api_version: expected a Google Ads API version like {DEFAULT_ADS_VERSION}"
            )
        if self.mode != "live":
            return
        self.require_live("customer_id", "conversion_action_id")
        if self.api == "click_conversions" and not self.developer_token:
            raise ValueError("developer_token: required in live mode for api: click_conversions")
        for key in ("client_id", "client_secret", "refresh_token"):
            if not getattr(self.oauth, key):
                raise ValueError(f"oauth: {key} is required in live mode")

    @property
    def base_url(self) -> str:
        default = DATA_MANAGER_ENDPOINT if self.api == "data_manager" else GOOGLE_ADS_ENDPOINT
        return (self.endpoint or default).rstrip("/")

    @property
    def customer(self) -> str:
        return self.customer_id.replace("-", "")


_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def google_consent(event: Event) -> dict[str, bool]:
    """Google's two consent signals from the event's purposes: explicit ``ad_user_data`` /
    ``ad_personalization`` purposes when present, else the ``ads`` purpose for both. A
    signal nothing speaks to is absent (Google treats it as unspecified)."""
    consent = event.consent
    signals: dict[str, bool] = {}
    for signal in ("ad_user_data", "ad_personalization"):
        if signal in consent:
            signals[signal] = bool(consent[signal])
        elif "ads" in consent:
            signals[signal] = bool(consent["ads"])
    return signals


def event_source(event: Event) -> str:
    """WEB, APP or OTHER (Data Manager ``EventSource``), by the rule in the module doc."""
    if event.context.page_url and event.user.user_agent:
        return "WEB"
    if event.type == "screen" or event.context.library.startswith(MOBILE_LIBRARIES):
        return "APP"
    return "OTHER"


class GoogleAdsDestination:
    """Google Ads offline/online click conversions."""

    config_type: ClassVar[type[DestinationConfig]] = GoogleAdsConfig
    default_batch: ClassVar[BatchPolicy] = BatchPolicy(
        max_events=MAX_EVENTS, max_wait=Duration(5.0)
    )
    # Data Manager: 300 requests a minute and 100,000 a day per Cloud project.
    default_rate_limit: ClassVar[RateLimit] = RateLimit(rps=1, burst=5)
    identifiers: ClassVar[tuple[Identifier, ...]] = (
        *identifiers("google", "hashed", "email", "phone", "first_name", "last_name"),
        *identifiers("google", "raw", "zip", "country"),
    )

    # Match quality (Scored): a click id ties the conversion to the ad click itself; email is
    # the main key of enhanced conversions, phone the second; a name-and-address identifier
    # matches only with all four parts; the landing device (user agent, IP) helps Google
    # model what cannot be matched.
    match_weights: ClassVar[dict[str, float]] = {
        "click_id": 4.0,
        "email": 3.0,
        "phone": 2.0,
        "address": 1.0,
        "device": 0.5,
    }

    def __init__(self, config: GoogleAdsConfig, clock=time.time) -> None:
        self.config = config
        self.clock = clock
        self._token = ""
        self._expires = 0.0

    def match_keys(self, event: Event) -> set[str]:
        keys = {kind for kind, _ in self.user_identifiers(event)}
        if self.click_id(event):
            keys.add("click_id")
        if event.user.user_agent or event.user.ip:
            keys.add("device")
        return keys

    # OAuth (Authenticating) ---------------------------------------------------------------

    def token_request(self, now: float) -> Request | None:
        if self._token and now < self._expires - TOKEN_MARGIN:
            return None
        oauth = self.config.oauth
        body = urlencode(
            {
                "grant_type": "refresh_token",
                "client_id": oauth.client_id,
                "client_secret": oauth.client_secret,
                "refresh_token": oauth.refresh_token,
            }
        ).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return Request("POST", oauth.token_url, headers, body, [])

    def token_response(self, response: Response, now: float) -> Outcome | None:
        document = _json(response.body)
        if 200 <= response.status < 300 and isinstance(document, dict):
            token = document.get("access_token")
            if isinstance(token, str) and token:
                lifetime = commerce.number(document.get("expires_in")) or 3600.0
                self._token, self._expires = token, now + lifetime
                return None
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            code = f"oauth_{document['error']}"
            message = str(document.get("error_description") or document["error"])
            if response.status in (408, 429) or response.status >= 500:
                return Outcome(
                    "retry",
                    code=code,
                    message=message,
                    retry_after=retry_after_seconds(response.headers),
                )
            return Outcome("rejected", code=code, message=f"token refresh refused: {message}")
        outcome = http_outcome(response.status, response.headers, response.body)
        if outcome.kind == "accepted":
            return Outcome("retry", code="oauth_unreadable", message=excerpt(response.body))
        return outcome

    # validate -----------------------------------------------------------------------------

    def validate(self, event: Event) -> Outcome | None:
        if event.type in _NOT_EVENTS:
            return Outcome("suppressed", code="filter", message=f"{event.type} is not a conversion")
        if self.config.events is None and event.name != "purchase":
            return Outcome(
                "suppressed",
                code="filter",
                message="google_ads sends purchase conversions unless events lists more",
            )
        now = self.clock()
        if now - event.timestamp > MAX_AGE:
            return Outcome(
                "rejected",
                code="too_old",
                message="conversion is older than 90 days, past every Google Ads click window",
            )
        if event.timestamp > now + 1:
            return Outcome(
                "rejected", code="future_time", message="conversion time is in the future"
            )
        if not self.click_id(event) and not self.user_identifiers(event):
            return Outcome(
                "rejected",
                code="no_identifiers",
                message="needs a gclid, gbraid or wbraid, or an email, phone or name and address",
            )
        return None

    # build --------------------------------------------------------------------------------

    def build(self, events: list[Event]) -> list[Request]:
        requests = []
        for start in range(0, len(events), MAX_EVENTS):
            chunk = events[start : start + MAX_EVENTS]
            indexes = list(range(start, start + len(chunk)))
            if self.config.api == "data_manager":
                requests.append(self.ingest_request(chunk, indexes))
            else:
                requests.append(self.upload_request(chunk, indexes))
        return requests

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "User-Agent": f"TrackLayer/{__version__}",
        }

    def click_id(self, event: Event) -> tuple[str, str] | None:
        for name in CLICK_IDS:
            value = event.user.click_ids.get(name)
            if value:
                return name, value
        return None

    def transaction_id(self, event: Event) -> str:
        return event.order_id or event.event_id

    def user_identifiers(self, event: Event) -> list[tuple[str, Any]]:
        """(kind, value) pairs: ("email", hex), ("phone", hex), ("address", parts)."""
        hashed, raw = event.hashed, event.normalized
        found: list[tuple[str, Any]] = []
        if hashed.get("google.email"):
            found.append(("email", hashed["google.email"]))
        if hashed.get("google.phone"):
            found.append(("phone", hashed["google.phone"]))
        address = {
            "first_name": hashed.get("google.first_name", ""),
            "last_name": hashed.get("google.last_name", ""),
            "country": raw.get("google.country", "").upper(),
            "zip": raw.get("google.zip", ""),
        }
        if all(address.values()):  # AddressInfo: all four fields are required
            found.append(("address", address))
        return found[:MAX_IDENTIFIERS]

    # Data Manager -------------------------------------------------------------------------

    def ingest_request(self, events: list[Event], indexes: list[int]) -> Request:
        config = self.config
        destination: dict[str, Any] = {
            "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": config.customer},
            "productDestinationId": config.conversion_action_id,
        }
        if config.login_customer_id:
            destination["loginAccount"] = {
                "accountType": "GOOGLE_ADS",
                "accountId": config.login_customer_id.replace("-", ""),
            }
        body = {
            "destinations": [destination],
            "events": [self.ingest_event(event) for event in events],
            "encoding": "HEX",
            "validateOnly": config.validate_only,
        }
        url = f"{config.base_url}/v1/events:ingest"
        return Request("POST", url, self.headers(), _encoder.encode(body), indexes)

    def ingest_event(self, event: Event) -> dict[str, Any]:
        """One ``Event`` of an IngestEventsRequest."""
        item: dict[str, Any] = {
            "eventTimestamp": rfc3339(event.timestamp),
            "transactionId": self.transaction_id(event),
            "eventSource": event_source(event),
        }
        value = commerce.value(event.properties)
        if value is not None:
            item["conversionValue"] = value
        currency = commerce.currency(event.properties)
        if currency:
            item["currency"] = currency
        ad_identifiers: dict[str, Any] = {}
        click = self.click_id(event)
        if click:
            ad_identifiers[click[0]] = click[1]
        device = {}
        if event.user.user_agent:
            device["userAgent"] = event.user.user_agent
        if event.user.ip:
            device["ipAddress"] = event.user.ip
        if device:
            ad_identifiers["landingPageDeviceInfo"] = device
        if ad_identifiers:
            item["adIdentifiers"] = ad_identifiers
        user_identifiers = []
        for kind, found in self.user_identifiers(event):
            if kind == "email":
                user_identifiers.append({"emailAddress": found})
            elif kind == "phone":
                user_identifiers.append({"phoneNumber": found})
            else:
                user_identifiers.append(
                    {
                        "address": {
                            "givenName": found["first_name"],
                            "familyName": found["last_name"],
                            "regionCode": found["country"],
                            "postalCode": found["zip"],
                        }
                    }
                )
        if user_identifiers:  # an empty userData is an error, so it is omitted
            item["userData"] = {"userIdentifiers": user_identifiers}
        consent = {
            _DM_CONSENT_FIELDS[signal]: "CONSENT_GRANTED" if granted else "CONSENT_DENIED"
            for signal, granted in google_consent(event).items()
        }
        if consent:
            item["consent"] = consent
        lines = commerce.items(event.properties)
        if lines:
            cart = []
            for line in lines:
                entry: dict[str, Any] = {"merchantProductId": line.id, "quantity": line.quantity}
                if line.price is not None:
                    entry["unitPrice"] = line.price
                cart.append(entry)
            item["cartData"] = {"items": cart}
        return item

    # UploadClickConversions ---------------------------------------------------------------

    def upload_request(self, events: list[Event], indexes: list[int]) -> Request:
        config = self.config
        headers = self.headers()
        headers["developer-token"] = config.developer_token
        if config.login_customer_id:
            headers["login-customer-id"] = config.login_customer_id.replace("-", "")
        body = {
            "conversions": [self.click_conversion(event) for event in events],
            "partialFailure": True,
            "validateOnly": config.validate_only,
        }
        url = (
            f"{config.base_url}/{config.api_version}/customers/{config.customer}"
            ":uploadClickConversions"
        )
        return Request("POST", url, headers, _encoder.encode(body), indexes)

    def click_conversion(self, event: Event) -> dict[str, Any]:
        """One ``ClickConversion``."""
        config = self.config
        conversion: dict[str, Any] = {
            "conversionAction": (
                f"customers/{config.customer}/conversionActions/{config.conversion_action_id}"
            ),
            "conversionDateTime": ads_datetime(event.timestamp),
            "orderId": self.transaction_id(event),
        }
        click = self.click_id(event)
        if click:
            conversion[click[0]] = click[1]
        value = commerce.value(event.properties)
        if value is not None:
            conversion["conversionValue"] = value
        currency = commerce.currency(event.properties)
        if currency:
            conversion["currencyCode"] = currency
        user_identifiers = []
        for kind, found in self.user_identifiers(event):
            # UserIdentifier is a oneof: one identifier per element.
            if kind == "email":
                user_identifiers.append({"hashedEmail": found})
            elif kind == "phone":
                user_identifiers.append({"hashedPhoneNumber": found})
            else:
                user_identifiers.append(
                    {
                        "addressInfo": {
                            "hashedFirstName": found["first_name"],
                            "hashedLastName": found["last_name"],
                            "countryCode": found["country"],
                            "postalCode": found["zip"],
                        }
                    }
                )
        if user_identifiers:
            conversion["userIdentifiers"] = user_identifiers
        signals = google_consent(event)
        if "ad_user_data" in signals:
            # adPersonalization "can only be set for OfflineUserDataJobService and UserDataService"
            conversion["consent"] = {
                "adUserData": "GRANTED" if signals["ad_user_data"] else "DENIED"
            }
        return conversion

    # classify -----------------------------------------------------------------------------

    def classify(self, request: Request, response: Response) -> list[Outcome]:
        count = len(request.indexes)
        document = _json(response.body)
        error = document.get("error") if isinstance(document, dict) else None
        if isinstance(error, dict):
            return self.error_outcomes(request, response, error)
        if not 200 <= response.status < 300:
            return [http_outcome(response.status, response.headers, response.body)] * count
        if not isinstance(document, dict):
            return [Outcome("warning", code="unreadable", message=excerpt(response.body))] * count
        if self.config.api == "data_manager":
            request_id = str(document.get("requestId") or "")
            return [
                Outcome("accepted", message=f"requestId {request_id}" if request_id else "")
            ] * count
        return self.partial_failure_outcomes(count, document)

    def error_outcomes(
        self, request: Request, response: Response, error: dict[str, Any]
    ) -> list[Outcome]:
        count = len(request.indexes)
        status = str(error.get("status") or response.status)
        message = str(error.get("message") or excerpt(response.body))
        details = error.get("details") if isinstance(error.get("details"), list) else []
        if status == "UNAUTHENTICATED" or response.status == 401:
            self._token, self._expires = "", 0.0  # the next batch fetches a fresh token
            return [Outcome("retry", code=status, message=message)] * count
        if status in RETRY_STATUSES or response.status in (408, 429) or response.status >= 500:
            throttled = status == "RESOURCE_EXHAUSTED" or response.status == 429
            return [
                Outcome(
                    "retry",
                    code=status,
                    message=message,
                    retry_after=retry_after_seconds(response.headers),
                    throttled=throttled,
                )
            ] * count
        blamed = self.blamed_rows(details, count)
        if not blamed:
            return [
                Outcome("rejected", code=status, message=_detail_message(details) or message)
            ] * count
        outcomes = []
        for row in range(count):
            if row in blamed:
                outcomes.append(Outcome("rejected", code=blamed[row][0], message=blamed[row][1]))
            else:
                # Fast-fail: nothing in the request was processed; the others go again.
                outcomes.append(
                    Outcome(
                        "retry",
                        code="batch_rejected",
                        message=f"another event of the request was invalid: {message}",
                    )
                )
        return outcomes

    def blamed_rows(self, details: list[Any], count: int) -> dict[int, tuple[str, str]]:
        """Row → (reason, description) from BadRequest field violations (Data Manager) or
        GoogleAdsFailure errors (Google Ads API) that point at one event."""
        blamed: dict[int, tuple[str, str]] = {}
        for detail in details:
            if not isinstance(detail, dict):
                continue
            for violation in detail.get("fieldViolations") or []:
                match = _DM_EVENT_FIELD.search(str(violation.get("field", "")))
                if match and int(match.group(1)) < count:
                    reason = str(violation.get("reason") or "INVALID_ARGUMENT")
                    text = f"{violation.get('field')}: {violation.get('description', '')}".strip()
                    blamed.setdefault(int(match.group(1)), (reason, text))
            for failure in detail.get("errors") or []:
                row = _ads_row(failure)
                if row is not None and row < count:
                    blamed.setdefault(row, (_ads_code(failure), str(failure.get("message", ""))))
        return blamed

    def partial_failure_outcomes(self, count: int, document: dict[str, Any]) -> list[Outcome]:
        """UploadClickConversions with partialFailure: rows named in partialFailureError are
        refused (retried when Google says the error is transient), the rest accepted."""
        failure = document.get("partialFailureError")
        details = failure.get("details") if isinstance(failure, dict) else None
        blamed = self.blamed_rows(details if isinstance(details, list) else [], count)
        results = document.get("results") if isinstance(document.get("results"), list) else []
        outcomes = []
        for row in range(count):
            if row in blamed:
                code, text = blamed[row]
                if code.startswith(("internalError", "quotaError")) or code.endswith(
                    "CONCURRENT_MODIFICATION"
                ):
                    outcomes.append(
                        Outcome(
                            "retry",
                            code=code,
                            message=text,
                            throttled=code.startswith("quotaError"),
                        )
                    )
                else:
                    outcomes.append(Outcome("rejected", code=code, message=text))
            elif row < len(results) and results[row] == {} and not self.config.validate_only:
                outcomes.append(
                    Outcome(
                        "rejected",
                        code="failed_row",
                        message=(failure or {}).get(
                            "message", "Google returned an empty result for this conversion"
                        ),
                    )
                )
            else:
                outcomes.append(Outcome("accepted"))
        return outcomes


_DM_CONSENT_FIELDS = {"ad_user_data": "adUserData", "ad_personalization": "adPersonalization"}


def rfc3339(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds, as the Data Manager API's Timestamp JSON form takes."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ads_datetime(seconds: float) -> str:
    """Google Ads API ``yyyy-mm-dd hh:mm:ss+|-hh:mm`` (UTC)."""
    return datetime.fromtimestamp(int(seconds), tz=UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def _json(body: bytes) -> Any:
    try:
        return _decoder.decode(body) if body else None
    except msgspec.DecodeError:
        return None


def _ads_row(failure: Any) -> int | None:
    """The conversions[i] index a GoogleAdsError's location points at."""
    if not isinstance(failure, dict):
        return None
    location = failure.get("location")
    elements = location.get("fieldPathElements") if isinstance(location, dict) else None
    for element in elements if isinstance(elements, list) else []:
        if isinstance(element, dict) and element.get("fieldName") in ("conversions", "events"):
            index = element.get("index")
            if isinstance(index, int) and not isinstance(index, bool):
                return index
    return None


def _ads_code(failure: dict[str, Any]) -> str:
    """``conversionUploadError:EXPIRED_EVENT`` from ``errorCode``."""
    code = failure.get("errorCode")
    if isinstance(code, dict) and code:
        key, value = next(iter(code.items()))
        return f"{key}:{value}"
    return "GOOGLE_ADS_ERROR"


def _detail_message(details: list[Any]) -> str:
    parts = []
    for detail in details:
        if not isinstance(detail, dict):
            continue
        for violation in detail.get("fieldViolations") or []:
            parts.append(f"{violation.get('field', '')}: {violation.get('description', '')}")
        for failure in detail.get("errors") or []:
            if isinstance(failure, dict):
                parts.append(f"{_ads_code(failure)}: {failure.get('message', '')}")
    return "; ".join(parts)
