"""Every bad-input answer of CONTRACT.md, against a real in-process daemon (real HTTP on
loopback, real SQLite): the status, the JSON ``code``/``message`` Segment's clients parse,
that good messages of a partial batch still reach a webhook, and that the daemon is still
healthy and delivering after all of it."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.harness import SDK_KEY, WRITE_KEY, base_config, start_app, track, webhook

LIMIT = 16384  # server.max_body_bytes of every daemon here
LIMITED_KEY = "limited_write_key"  # a source with rate_limit {rps: 1, burst: 2}


def config(tmp_path, destinations: list[dict] | None = None, **server: Any) -> dict[str, Any]:
    cfg = base_config(tmp_path, destinations=destinations or [])
    cfg["server"].update({"max_body_bytes": LIMIT, **server})
    cfg["sources"].append(
        {
            "id": "limited",
            "type": "segment",
            "write_keys": [LIMITED_KEY],
            "rate_limit": {"rps": 1, "burst": 2},
        }
    )
    return cfg


@pytest.fixture
async def running(tmp_path, hook):
    app = await start_app(config(tmp_path, [webhook(hook.url)]))
    yield app
    await app.stop()


async def request(
    method: str,
    url: str,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    key: str | None = None,
) -> tuple[int, dict, dict[str, str]]:
    """Any method, raw bytes, optional Basic ``key:``; returns (status, JSON, headers)."""
    headers = {**(basic(key + ":") if key else {}), **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=raw, headers=headers) as response,
    ):
        text = await response.read()
        try:
            document = json.loads(text) if text else {}
        except ValueError:
            document = {"not_json": text.decode("utf-8", "replace")}
        return response.status, document, dict(response.headers)


def basic(user_part: str) -> dict[str, str]:
    """An Authorization header built by hand (``key:`` or plain ``key``)."""
    return {"Authorization": "Basic " + base64.b64encode(user_part.encode()).decode()}


def dumps(document: Any) -> bytes:
    return json.dumps(document).encode()


def native(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"name": "purchase", "user": {"user_id": "u1"}}
    event.update(fields)
    return event


def gzipped(document: Any) -> bytes:
    return gzip.compress(dumps(document))


def padded_track(size: int, message_id: str = "") -> dict[str, Any]:
    message = track("Order Completed", properties={"pad": "0" * size})
    if message_id:
        message["messageId"] = message_id
    return message


# A gzip bomb: a few KB on the wire, 5 MB once inflated (and a valid event if it were read).
BOMB = gzip.compress(dumps(padded_track(5_000_000)), compresslevel=9)
VALID_GZIP = gzipped(track("Order Completed", messageId="gz-1"))


@dataclass
class Case:
    """One bad request and the answer the contract promises for it."""

    id: str
    path: str
    raw: bytes
    status: int
    code: str | tuple[str, ...]
    names: str = ""  # a word the message must contain (the field at fault)
    key: str | None = WRITE_KEY  # Basic auth user (None: no Basic auth)
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


CASES = [
    # JSON ------------------------------------------------------------------------------
    Case("malformed-json", "/v1/track", b'{"type": "track", "userId": ', 400, "invalid_json"),
    Case("not-json-at-all", "/v1/track", b"hello there", 400, "invalid_json"),
    Case("empty-body", "/v1/track", b"", 400, "invalid_json"),
    Case("whitespace-body", "/v1/track", b"  \n ", 400, "invalid_json"),
    Case("empty-body-batch", "/v1/batch", b"", 400, "invalid_json"),
    Case("empty-body-native", "/v1/events", b"", 400, "invalid_json", key=SDK_KEY),
    Case("array-on-track", "/v1/track", b"[1,2]", 400, ("invalid_json", "invalid_event"), "object"),
    Case("array-on-batch", "/v1/batch", b"[1,2]", 400, ("invalid_json", "invalid_event"), "object"),
    Case(
        "string-on-native",
        "/v1/events",
        b'"purchase"',
        400,
        ("invalid_json", "invalid_event"),
        "object",
        key=SDK_KEY,
    ),
    # wrong types and missing fields: the message names the field -------------------------
    Case("userId-bool", "/v1/track", dumps(track(userId=True)), 400, "invalid_event", "userId"),
    Case(
        "properties-string",
        "/v1/track",
        dumps(track(properties="x")),
        400,
        "invalid_event",
        "properties",
    ),
    Case(
        "traits-list",
        "/v1/identify",
        dumps({"userId": "u1", "traits": [1]}),
        400,
        "invalid_event",
        "traits",
    ),
    Case("context-string", "/v1/track", dumps(track(context="x")), 400, "invalid_event", "context"),
    Case("batch-string", "/v1/batch", dumps({"batch": "x"}), 400, "invalid_event", "batch"),
    Case(
        "batch-missing",
        "/v1/batch",
        dumps({"sentAt": "2026-01-01T00:00:00Z"}),
        400,
        "invalid_event",
        "batch",
    ),
    Case(
        "track-without-event",
        "/v1/track",
        dumps({"type": "track", "userId": "u1"}),
        400,
        "invalid_event",
        "event",
    ),
    Case("track-blank-event", "/v1/track", dumps(track(event="  ")), 400, "invalid_event", "event"),
    Case(
        "no-user-ids",
        "/v1/track",
        dumps({"type": "track", "event": "Order Completed"}),
        400,
        "invalid_event",
        "userId",
    ),
    Case(
        "null-user-ids",
        "/v1/t",
        dumps(track(userId=None, anonymousId=None)),
        400,
        "invalid_event",
        "userId",
    ),
    Case(
        "bad-timestamp",
        "/v1/track",
        dumps(track(timestamp="yesterday at noon")),
        400,
        "invalid_event",
        "timestamp",
    ),
    Case(
        "numeric-timestamp",
        "/v1/track",
        dumps(track(timestamp=1700000000)),
        400,
        "invalid_event",
        "timestamp",
    ),
    Case(
        "bad-batch-sentAt",
        "/v1/batch",
        dumps({"batch": [track()], "sentAt": "not a time"}),
        400,
        "invalid_event",
        "sentAt",
    ),
    Case(
        "unknown-type-in-batch",
        "/v1/batch",
        dumps({"batch": [{"type": "bogus", "userId": "u1"}]}),
        400,
        "invalid_event",
        "type",
    ),
    # native /v1/events: every way of giving the key ---------------------------------------
    Case(
        "native-no-name-basic",
        "/v1/events",
        dumps({"user": {"user_id": "u1"}}),
        400,
        "invalid_event",
        "name",
        key=SDK_KEY,
    ),
    Case(
        "native-no-name-header",
        "/v1/events",
        dumps({"user": {"user_id": "u1"}}),
        400,
        "invalid_event",
        "name",
        key=None,
        headers={"X-TrackLayer-Key": SDK_KEY},
    ),
    Case(
        "native-no-name-body-key",
        "/v1/events",
        dumps({"user": {"user_id": "u1"}, "writeKey": SDK_KEY}),
        400,
        "invalid_event",
        "name",
        key=None,
    ),
    Case(
        "native-no-user-basic",
        "/v1/events",
        dumps({"name": "purchase"}),
        400,
        "invalid_event",
        "user.user_id",
        key=SDK_KEY,
    ),
    Case(
        "native-no-user-header",
        "/v1/events",
        dumps({"name": "purchase", "user": {}}),
        400,
        "invalid_event",
        "user.user_id",
        key=None,
        headers={"X-TrackLayer-Key": SDK_KEY},
    ),
    Case(
        "native-no-user-body-key",
        "/v1/events",
        dumps({"name": "purchase", "writeKey": SDK_KEY}),
        400,
        "invalid_event",
        "user.user_id",
        key=None,
    ),
    Case(
        "native-batch-no-name",
        "/v1/events",
        dumps({"batch": [{"user": {"user_id": "u1"}}]}),
        400,
        "invalid_event",
        "name",
        key=SDK_KEY,
    ),
    Case(
        "native-batch-no-user",
        "/v1/events",
        dumps({"batch": [{"name": "purchase"}], "writeKey": SDK_KEY}),
        400,
        "invalid_event",
        "user.user_id",
        key=None,
    ),
    Case(
        "native-batch-not-list",
        "/v1/events",
        dumps({"batch": {"name": "purchase"}}),
        400,
        "invalid_event",
        "batch",
        key=SDK_KEY,
    ),
    Case(
        "native-bad-timestamp",
        "/v1/events",
        dumps(native(timestamp="tomorrow")),
        400,
        "invalid_event",
        "timestamp",
        key=SDK_KEY,
    ),
    Case(
        "native-user-string",
        "/v1/events",
        dumps(native(user="u1")),
        400,
        "invalid_event",
        "user",
        key=SDK_KEY,
    ),
    # 401 ---------------------------------------------------------------------------------
    Case("no-key", "/v1/track", dumps(track()), 401, "unauthorized", key=None),
    Case("no-key-batch", "/v1/batch", dumps({"batch": [track()]}), 401, "unauthorized", key=None),
    Case("unknown-basic-key", "/v1/track", dumps(track()), 401, "unauthorized", key="nope"),
    Case(
        "unknown-plain-basic-key",
        "/v1/track",
        dumps(track()),
        401,
        "unauthorized",
        key=None,
        headers=basic("nope"),
    ),
    Case(
        "unknown-body-writeKey",
        "/v1/track",
        dumps(track(writeKey="nope")),
        401,
        "unauthorized",
        key=None,
    ),
    Case(
        "unknown-batch-writeKey",
        "/v1/batch",
        dumps({"batch": [track()], "writeKey": "nope"}),
        401,
        "unauthorized",
        key=None,
    ),
    Case(
        "malformed-basic",
        "/v1/track",
        dumps(track()),
        401,
        "unauthorized",
        key=None,
        headers={"Authorization": "Basic %%%not-base64%%%"},
    ),
    Case("native-no-key", "/v1/events", dumps(native()), 401, "unauthorized", key=None),
    Case(
        "native-unknown-header-key",
        "/v1/events",
        dumps(native()),
        401,
        "unauthorized",
        key=None,
        headers={"X-TrackLayer-Key": "nope"},
    ),
    Case(
        "native-unknown-body-key",
        "/v1/events",
        dumps(native(writeKey="nope")),
        401,
        "unauthorized",
        key=None,
    ),
    Case(
        "native-malformed-basic",
        "/v1/events",
        dumps(native()),
        401,
        "unauthorized",
        key=None,
        headers={"Authorization": "Basic ***"},
    ),
    # 413 and encodings -------------------------------------------------------------------
    Case("too-large", "/v1/track", dumps(padded_track(LIMIT)), 413, "too_large"),
    Case("too-large-batch", "/v1/batch", dumps({"batch": [padded_track(LIMIT)]}), 413, "too_large"),
    Case(
        "too-large-native",
        "/v1/events",
        dumps(native(properties={"pad": "0" * LIMIT})),
        413,
        "too_large",
        key=SDK_KEY,
    ),
    Case("gzip-bomb", "/v1/track", BOMB, 413, "too_large", headers={"Content-Encoding": "gzip"}),
    Case(
        "gzip-bomb-native",
        "/v1/events",
        BOMB,
        413,
        "too_large",
        key=SDK_KEY,
        headers={"Content-Encoding": "gzip"},
    ),
    Case(
        "corrupt-gzip",
        "/v1/track",
        b"\x1f\x8b\x08\x00garbage-not-deflate" * 4,
        400,
        "invalid_json",
        headers={"Content-Encoding": "gzip"},
    ),
    Case(
        "truncated-gzip",
        "/v1/track",
        VALID_GZIP[: len(VALID_GZIP) // 2],
        400,
        "invalid_json",
        headers={"Content-Encoding": "gzip"},
    ),
    Case(
        "gzip-header-plain-body",
        "/v1/track",
        dumps(track()),
        400,
        "invalid_json",
        headers={"Content-Encoding": "gzip"},
    ),
    # routing -----------------------------------------------------------------------------
    Case("unknown-route", "/v1/nope", dumps(track()), 404, "not_found"),
    Case("unknown-get-route", "/nope", b"", 404, "not_found", method="GET"),
    Case("get-on-track", "/v1/track", b"", 405, "method_not_allowed", method="GET"),
    Case("get-on-native", "/v1/events", b"", 405, "method_not_allowed", method="GET"),
]


async def send_case(url: str, case: Case) -> tuple[int, dict, dict[str, str]]:
    return await request(case.method, url + case.path, case.raw or None, case.headers, case.key)


def check_answer(case: Case, status: int, body: dict, headers: dict[str, str]) -> None:
    assert status == case.status, (case.id, status, body)
    assert headers.get("Content-Type", "").startswith("application/json"), (case.id, headers)
    assert body.get("success") is False, (case.id, body)
    codes = case.code if isinstance(case.code, tuple) else (case.code,)
    assert body.get("code") in codes, (case.id, body)
    assert isinstance(body.get("message"), str) and body["message"], (case.id, body)
    if case.names:
        assert case.names in body["message"], (case.id, body)


def test_bomb_is_small_on_the_wire():
    """The gzip-bomb cases test inflation, not the plain size check."""
    assert len(BOMB) < LIMIT // 2
    assert len(VALID_GZIP) < LIMIT


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_request_answer(running, hook, case):
    status, body, headers = await send_case(running.url, case)
    check_answer(case, status, body, headers)
    assert await stored_event_ids(running.app) == set()  # nothing of it was stored


async def test_everything_bad_then_still_healthy_and_delivering(running, hook):
    """All the abuse against one daemon, concurrently and in sequence; it stays up."""
    results = await asyncio.gather(*(send_case(running.url, case) for case in CASES))
    for case, (status, body, headers) in zip(CASES, results, strict=True):
        check_answer(case, status, body, headers)
    for case in CASES:
        check_answer(case, *await send_case(running.url, case))
    await asyncio.sleep(0.2)
    assert hook.requests == []  # not one of them was delivered

    status, body, _ = await request("GET", running.url + "/healthz")
    assert status == 200, body
    status, body, _ = await request("GET", running.url + "/readyz")
    assert status == 200, body
    status, body, _ = await running.post("/v1/track", track(messageId="after-abuse"))
    assert (status, body) == (200, {"success": True})
    events = await hook.wait_for(1)
    assert [e["message_id"] for e in events] == ["after-abuse"]
    assert hook.problems == []


# accepted forms ---------------------------------------------------------------------------


async def test_basic_key_with_and_without_colon_accepted(running, hook):
    """Segment's clients send ``key:`` and plain ``key``; both authenticate."""
    for index, user_part in enumerate([WRITE_KEY + ":", WRITE_KEY]):
        raw = dumps(track(messageId=f"basic-{index}"))
        status, body, _ = await request("POST", running.url + "/v1/track", raw, basic(user_part))
        assert (status, body) == (200, {"success": True}), user_part
    status, body, _ = await request(
        "POST",
        running.url + "/v1/events",
        dumps(native(message_id="native-plain")),
        basic(SDK_KEY),
    )
    assert (status, body) == (200, {"success": True})
    events = await hook.wait_for(3)
    assert sorted(e["message_id"] for e in events) == ["basic-0", "basic-1", "native-plain"]


async def test_every_native_key_form_accepted(running, hook):
    forms = [
        ({"Authorization": basic(SDK_KEY + ":")["Authorization"]}, {}),
        ({"X-TrackLayer-Key": SDK_KEY}, {}),
        ({}, {"writeKey": SDK_KEY}),
    ]
    for index, (headers, extra) in enumerate(forms):
        raw = dumps(native(message_id=f"n-{index}", **extra))
        status, body, _ = await request("POST", running.url + "/v1/events", raw, headers)
        assert (status, body) == (200, {"success": True}), headers
    raw = dumps(
        {"batch": [native(message_id="nb-0"), native(message_id="nb-1")], "writeKey": SDK_KEY}
    )
    status, body, _ = await request("POST", running.url + "/v1/events", raw)
    assert (status, body) == (200, {"success": True})
    events = await hook.wait_for(5)
    assert sorted(e["message_id"] for e in events) == ["n-0", "n-1", "n-2", "nb-0", "nb-1"]
    assert {e["source"] for e in events} == {"web"}


async def test_json_parsed_whatever_the_content_type(running, hook):
    for index, content_type in enumerate(["text/plain", "text/plain;charset=UTF-8", ""]):
        headers = {"Content-Type": content_type} if content_type else {}
        raw = dumps(track(messageId=f"ct-{index}", writeKey=WRITE_KEY))
        status, body, _ = await request("POST", running.url + "/v1/t", raw, headers)
        assert (status, body) == (200, {"success": True}), content_type
    events = await hook.wait_for(3)
    assert sorted(e["message_id"] for e in events) == ["ct-0", "ct-1", "ct-2"]


async def test_valid_gzip_body_accepted_and_delivered(running, hook):
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    status, body, _ = await request(
        "POST", running.url + "/v1/track", VALID_GZIP, headers, WRITE_KEY
    )
    assert (status, body) == (200, {"success": True})
    batch = gzipped({"batch": [track(messageId="gzb-0"), track(messageId="gzb-1")]})
    status, body, _ = await request("POST", running.url + "/v1/batch", batch, headers, WRITE_KEY)
    assert (status, body) == (200, {"success": True})
    raw = gzipped(native(message_id="gzn"))
    status, body, _ = await request("POST", running.url + "/v1/events", raw, headers, SDK_KEY)
    assert (status, body) == (200, {"success": True})
    events = await hook.wait_for(4)
    assert sorted(e["message_id"] for e in events) == ["gz-1", "gzb-0", "gzb-1", "gzn"]


async def test_body_just_under_the_limit_accepted(running, hook):
    message = padded_track(0, "limit-ok")
    room = LIMIT - len(dumps(message))
    message = padded_track(room, "limit-ok")
    raw = dumps(message)
    assert len(raw) == LIMIT
    status, body, _ = await request("POST", running.url + "/v1/track", raw, key=WRITE_KEY)
    assert (status, body) == (200, {"success": True})
    # and one byte more is refused
    status, body, _ = await request(
        "POST", running.url + "/v1/track", dumps(padded_track(room + 1, "limit-no")), key=WRITE_KEY
    )
    assert (status, body["code"]) == (413, "too_large")
    events = await hook.wait_for(1)
    await asyncio.sleep(0.15)
    assert [e["message_id"] for e in hook.accepted_events] == ["limit-ok"]
    assert len(events) == 1


async def test_chunked_body_over_the_limit_refused(running, hook):
    """No Content-Length to check up front: the limit holds while reading."""

    async def chunks():
        yield b'{"type": "track", "userId": "u1", "event": "x", "properties": {"pad": "'
        for _ in range(8):
            yield b"0" * 4096
        yield b'"}}'

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            running.url + "/v1/track", data=chunks(), headers=basic(WRITE_KEY + ":")
        ) as response,
    ):
        assert response.status == 413
        assert (await response.json())["code"] == "too_large"
    status, _, _ = await request("GET", running.url + "/healthz")
    assert status == 200


# partial batches ---------------------------------------------------------------------------


async def test_partial_batch_accepts_good_rejects_bad_by_index(running, hook):
    batch = [
        track(messageId="good-0"),
        {"type": "track", "event": "Order Completed", "messageId": "bad-1"},  # no user id
        track(messageId="good-2"),
        track(messageId="bad-3", userId=True),  # wrong type: fails decoding
        track(messageId="good-4", event="Product Added"),
        {"type": "track", "userId": "u1", "messageId": "bad-5"},  # no event
        track(messageId="bad-6", timestamp="not a time"),
        {"type": "identify", "userId": "u9", "messageId": "good-7"},
    ]
    status, body, _ = await running.post("/v1/batch", {"batch": batch})
    assert status == 200, body
    assert body["success"] is True
    assert body["accepted"] == 4
    rejected = body["rejected"]
    assert [r["index"] for r in rejected] == [1, 3, 5, 6]
    fields = ["userId", "userId", "event", "timestamp"]
    for rejection, field_name in zip(rejected, fields, strict=True):
        assert rejection["code"] == "invalid_event", rejection
        assert field_name in rejection["message"], rejection

    await hook.wait_for(4)
    await asyncio.sleep(0.3)  # nothing more may arrive
    ids = sorted(e["message_id"] for e in hook.accepted_events)
    assert ids == ["good-0", "good-2", "good-4", "good-7"]
    assert hook.problems == []


async def test_partial_batch_on_import_and_short_form(running, hook):
    for path, prefix in (("/v1/import", "imp"), ("/v1/b", "b")):
        batch = [track(messageId=f"{prefix}-0"), track(messageId=f"{prefix}-1", event=7)]
        status, body, _ = await running.post(path, {"batch": batch})
        assert status == 200, body
        assert body["accepted"] == 1
        assert [(r["index"], r["code"]) for r in body["rejected"]] == [(1, "invalid_event")]
        assert "event" in body["rejected"][0]["message"]
    await hook.wait_for(2)
    await asyncio.sleep(0.2)
    assert sorted(e["message_id"] for e in hook.accepted_events) == ["b-0", "imp-0"]


async def test_partial_native_batch(running, hook):
    batch = [
        native(message_id="nat-0"),
        {"user": {"user_id": "u1"}, "message_id": "nat-bad-1"},
        {"name": "lead", "message_id": "nat-bad-2"},
        native(message_id="nat-3", name="lead"),
    ]
    status, body, _ = await running.post("/v1/events", {"batch": batch}, key=SDK_KEY)
    assert status == 200, body
    assert body["success"] is True and body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    assert "name" in body["rejected"][0]["message"]
    assert "user.user_id" in body["rejected"][1]["message"]
    await hook.wait_for(2)
    await asyncio.sleep(0.2)
    assert sorted(e["message_id"] for e in hook.accepted_events) == ["nat-0", "nat-3"]


async def test_batch_with_every_message_bad_is_400_listing_indexes(running, hook):
    batch = [
        {"type": "track", "event": "Order Completed"},
        track(properties="x"),
        {"type": "track", "userId": "u1"},
    ]
    status, body, _ = await running.post("/v1/batch", {"batch": batch})
    assert status == 400, body
    assert body["success"] is False
    assert body["code"] == "invalid_event" and body["message"]
    assert [r["index"] for r in body["rejected"]] == [0, 1, 2]
    assert "properties" in body["rejected"][1]["message"]

    native_batch = [{"name": "purchase"}, {"user": {"user_id": "u1"}}]
    status, body, _ = await running.post("/v1/events", {"batch": native_batch}, key=SDK_KEY)
    assert status == 400, body
    assert body["code"] == "invalid_event"
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    await asyncio.sleep(0.2)
    assert hook.requests == []


async def test_empty_batch_is_success(running, hook):
    status, body, _ = await running.post("/v1/batch", {"batch": []})
    assert status == 200 and body["success"] is True


# rate limits -------------------------------------------------------------------------------


async def test_rate_limited_source_answers_429_with_retry_after(running, hook):
    answers = [
        await running.post("/v1/track", track(messageId=f"rl-{i}"), key=LIMITED_KEY)
        for i in range(6)
    ]
    statuses = [status for status, _, _ in answers]
    assert statuses[:2] == [200, 200], statuses  # the burst
    limited = [(body, headers) for status, body, headers in answers if status == 429]
    assert len(limited) >= 3, statuses
    assert set(statuses) <= {200, 429}, statuses
    for body, headers in limited:
        assert body["success"] is False and body["code"] == "rate_limited", body
        assert body["message"]
        retry_after = headers.get("Retry-After", "")
        assert retry_after.isdigit() and int(retry_after) >= 1, headers
    # the limit also applies with the key in the body
    status, body, headers = await running.post("/v1/track", track(writeKey=LIMITED_KEY), key=None)
    assert status == 429 and body["code"] == "rate_limited"
    assert headers["Retry-After"].isdigit()

    # other sources are not limited by it
    status, _, _ = await running.post("/v1/track", track(messageId="unlimited"))
    assert status == 200
    # and after Retry-After, the limited source is served again
    await asyncio.sleep(int(limited[-1][1]["Retry-After"]) + 0.05)
    status, body, _ = await running.post("/v1/track", track(messageId="rl-late"), key=LIMITED_KEY)
    assert (status, body) == (200, {"success": True})

    accepted = sum(1 for s in statuses if s == 200) + 2
    await hook.wait_for(accepted)
    await asyncio.sleep(0.2)
    ids = {e["message_id"] for e in hook.accepted_events}
    assert len(hook.accepted_events) == accepted
    for i, status in enumerate(statuses):
        assert (f"rl-{i}" in ids) == (status == 200)


# the store cannot commit -------------------------------------------------------------------


async def scalar(app, sql: str) -> int:
    async with app.writer.execute(sql) as cursor:
        row = await cursor.fetchone()
    return int(row[0])


async def stored_event_ids(app) -> set[str]:
    async with app.reader.execute("SELECT event_id FROM events") as cursor:
        return {row[0] for row in await cursor.fetchall()}


async def fill_until_unavailable(running, prefix: str) -> tuple[list[str], list[str], dict]:
    """Cap the file at its current size, then send ~3 KB events until one gets 503."""
    pages = await scalar(running.app, "PRAGMA page_count")
    await running.app.writer.execute(f"PRAGMA max_page_count = {pages}")
    ok: list[str] = []
    refused: list[str] = []
    answer: dict = {}
    for i in range(400):
        message_id = f"{prefix}-{i}"
        status, body, headers = await running.post("/v1/track", padded_track(3000, message_id))
        if status == 200:
            ok.append(message_id)
            continue
        assert status == 503, (status, body)
        assert body["success"] is False and body["code"] == "unavailable", body
        assert body["message"]
        answer = {"body": body, "headers": headers}
        refused.append(message_id)
        if len(refused) >= 3:
            break
    assert refused, "the store never filled up"
    return ok, refused, answer


async def test_store_full_answers_503_and_loses_nothing_acknowledged(tmp_path, hook):
    running = await start_app(config(tmp_path, [webhook(hook.url)]))
    try:
        ok, refused, answer = await fill_until_unavailable(running, "full")
        assert "Retry-After" in answer["headers"]
        status, body, _ = await request("GET", running.url + "/readyz")
        assert status == 503, body
        status, _, _ = await request("GET", running.url + "/healthz")
        assert status == 200  # the process runs; only readiness is lost
        # still failing: batches too, and nothing partial is acknowledged
        status, body, _ = await running.post(
            "/v1/batch", {"batch": [padded_track(3000, "full-batch-0"), track()]}
        )
        assert (status, body["code"]) == (503, "unavailable")
        refused.append("full-batch-0")

        await running.app.writer.execute("PRAGMA max_page_count = 1000000")
        status, body, _ = await running.post("/v1/track", track(messageId="after-full"))
        assert (status, body) == (200, {"success": True})
        ok.append("after-full")
        status, body, _ = await request("GET", running.url + "/readyz")
        assert status == 200, body

        # every acknowledged event is stored and delivered; the refused ones are not stored
        stored = await stored_event_ids(running.app)
        assert set(ok) <= stored
        assert not set(refused) & stored
        await hook.wait_for(len(ok), timeout=15)
        await asyncio.sleep(0.3)
        delivered = {e["message_id"] for e in hook.accepted_events}
        assert delivered == set(ok)  # every acknowledged one, none of the refused
        assert hook.problems == []

        # the client retries the refused ones with the same messageId: now they are stored
        for message_id in refused[:3]:
            status, body, _ = await running.post("/v1/track", padded_track(3000, message_id))
            assert (status, body) == (200, {"success": True})
        await hook.wait_for(len(ok) + 3, timeout=15)
        await asyncio.sleep(0.3)
        delivered = {e["message_id"] for e in hook.accepted_events}
        assert delivered == set(ok + refused[:3])
    finally:
        await running.stop()


async def test_readyz_recovers_when_the_store_is_writable_again(tmp_path):
    """An idle daemon behind a load balancer gets no traffic while /readyz says 503, so
    readiness must come back by itself once the store can commit again."""
    running = await start_app(config(tmp_path))
    try:
        await fill_until_unavailable(running, "idle")
        status, _, _ = await request("GET", running.url + "/readyz")
        assert status == 503
        await running.app.writer.execute("PRAGMA max_page_count = 1000000")

        async def ready() -> bool:
            status, _, _ = await request("GET", running.url + "/readyz")
            return status == 200

        for _ in range(30):  # up to ~3 s, with no event sent
            if await ready():
                break
            await asyncio.sleep(0.1)
        assert await ready(), "/readyz stays 503 although the store is writable again"
    finally:
        await running.stop()


# CORS --------------------------------------------------------------------------------------


def header_names(value: str) -> set[str]:
    return {name.strip().lower() for name in value.split(",") if name.strip()}


@pytest.mark.parametrize("path", ["/v1/t", "/v1/b", "/v1/track", "/v1/events", "/v1/p"])
async def test_cors_preflight_allows_listed_origin_and_headers(running, path):
    headers = {
        "Origin": "https://shop.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-retry-count",
    }
    status, _, answer = await request("OPTIONS", running.url + path, headers=headers)
    assert 200 <= status < 300, status
    assert answer.get("Access-Control-Allow-Origin") == "https://shop.example.com"
    allowed = header_names(answer.get("Access-Control-Allow-Headers", ""))
    assert {"content-type", "authorization", "x-retry-count"} <= allowed, answer
    assert "*" not in allowed  # "*" would not cover Authorization
    assert "POST" in answer.get("Access-Control-Allow-Methods", "").upper()


async def test_cors_unlisted_origin_gets_no_allow_origin(running, hook):
    headers = {
        "Origin": "https://evil.example.net",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    _, _, answer = await request("OPTIONS", running.url + "/v1/t", headers=headers)
    assert "Access-Control-Allow-Origin" not in answer
    # the actual POST from an unlisted origin carries no allow-origin either
    raw = dumps(track(writeKey=WRITE_KEY))
    status, _, answer = await request(
        "POST", running.url + "/v1/t", raw, {"Origin": "https://evil.example.net"}
    )
    assert status == 200
    assert "Access-Control-Allow-Origin" not in answer


async def test_cors_headers_on_answers_to_listed_origin(running):
    origin = {"Origin": "https://shop.example.com"}
    status, _, answer = await request(
        "POST", running.url + "/v1/t", dumps(track(writeKey=WRITE_KEY)), origin
    )
    assert status == 200
    assert answer.get("Access-Control-Allow-Origin") == "https://shop.example.com"
    # errors too, or the browser cannot read why it was refused
    status, body, answer = await request("POST", running.url + "/v1/t", b"{", origin)
    assert (status, body["code"]) == (400, "invalid_json")
    assert answer.get("Access-Control-Allow-Origin") == "https://shop.example.com"
    status, body, answer = await request(
        "POST", running.url + "/v1/events", dumps(native()), origin
    )
    assert (status, body["code"]) == (401, "unauthorized")
    assert answer.get("Access-Control-Allow-Origin") == "https://shop.example.com"


async def test_new_daemon_after_abuse_has_a_consistent_store(tmp_path):
    """A daemon that refused everything leaves an empty, reopenable store behind."""
    cfg = config(tmp_path)
    running = await start_app(cfg)
    for case in CASES:
        await send_case(running.url, case)
    assert await stored_event_ids(running.app) == set()
    await running.stop()
    again = await start_app(cfg)
    try:
        status, body, _ = await again.post("/v1/track", track(messageId="reopened"))
        assert (status, body) == (200, {"success": True})
        assert await stored_event_ids(again.app) == {"reopened"}
    finally:
        await again.stop()


async def test_a_mangled_fbclid_is_dropped_not_a_500(running, hook):
    """Found by the coverage-guided fuzz run (bench/fuzz.py): an fbclid that cannot make an
    fbc raised inside the canonicaliser, so the request was answered 500 and Segment's
    clients would have retried it forever. Now the event is stored, without an fbc."""
    page = {"url": "https://shop.example.com/p/1?fbclid=IwAR((((((((&gclid=Cj0KCQ_abc-1"}
    raw = dumps(track(messageId="mangled-fbclid", context={"page": page}))
    status, body, _ = await request("POST", running.url + "/v1/track", raw, basic(WRITE_KEY))
    assert (status, body) == (200, {"success": True})
    [event] = await hook.wait_for(1)
    assert event["message_id"] == "mangled-fbclid"
    assert "fbc" not in event["user"]
    assert event["user"]["click_ids"]["gclid"] == "Cj0KCQ_abc-1"


async def test_integers_past_64_bits_are_stored_not_fatal(running, hook):
    """JSON numbers are unbounded and MessagePack (the stored form) holds 64 bits: such a
    property used to raise inside the writer and stop it, so every later request hung.
    Now it is kept as a float (as JavaScript, and so Segment, reads it), or as its digits
    when no float holds it, and the daemon goes on."""
    properties = {"order_id": "o-big", "revenue": 10**30, "sku": [{"n": -(10**25)}]}
    properties["serial"] = 10**400
    raw = dumps(track(messageId="huge-ints", properties=properties))
    status, body, _ = await request("POST", running.url + "/v1/track", raw, basic(WRITE_KEY))
    assert (status, body) == (200, {"success": True})
    status, _, _ = await request(
        "POST", running.url + "/v1/track", dumps(track(messageId="after")), basic(WRITE_KEY)
    )
    assert status == 200
    events = {e["message_id"]: e for e in await hook.wait_for(2)}
    sent = events["huge-ints"]["properties"]
    assert sent["revenue"] == 1e30 and sent["sku"] == [{"n": -1e25}]
    assert sent["serial"] == str(10**400)
    assert sent["order_id"] == "o-big"


async def test_a_bug_in_one_group_commit_fails_that_group_and_the_writer_goes_on(
    running, hook, monkeypatch
):
    """Whatever goes wrong inside a group commit, the writer must not die: that group is
    answered 503 (nothing acknowledged, the client retries) and the next one commits."""
    from tracklayer.store import journal

    real = journal.stored_body
    calls = []

    def failing_once(event):
        calls.append(event.message_id)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real(event)

    monkeypatch.setattr(journal, "stored_body", failing_once)
    post = running.url + "/v1/track"
    status, _, _ = await request("POST", post, dumps(track(messageId="b1")), basic(WRITE_KEY))
    assert status == 503
    status, _, _ = await request("POST", post, dumps(track(messageId="b1")), basic(WRITE_KEY))
    assert status == 200
    [event] = await hook.wait_for(1)
    assert event["message_id"] == "b1"
