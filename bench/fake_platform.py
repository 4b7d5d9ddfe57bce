"""Fake ad-platform endpoints for the delivery and spike benchmarks (a separate process).

    python bench/fake_platform.py --meta main=123456789012345:bench-token \\
        --webhook limited=bench-secret --webhook fast=bench-secret

Each ``--meta NAME=PIXEL:TOKEN`` is a Meta Conversions API edge at
``http://HOST:PORT/meta/NAME`` (TrackLayer's ``endpoint``; it posts to
``/meta/NAME/{version}/{pixel}/events``); each ``--webhook NAME=SECRET`` a webhook receiver
at ``http://HOST:PORT/hook/NAME``. Both answer at once (no work beyond the checks below).

Checks, counted per sink (``problems``; a Meta request that fails them gets Meta's error
envelope, 400 code 100, as the real API refuses a whole batch for one bad event):

- Meta: the path, ``Content-Type``, ``access_token`` in the body, ``data`` a list of 1 to
  1,000 events, each with a string ``event_id`` and ``event_name``, an integer
  ``event_time``, an ``action_source`` and a non-empty ``user_data`` (typed msgspec decode,
  so the fake costs little CPU). Every event of the first request, and of one request in
  ``--deep-every`` after that, also goes through the test suite's full Meta checks
  (``tests/fakes/meta.py``: hashes, fbc/fbp formats, Purchase value and currency, ...).
- Webhook: the ``X-TrackLayer-Signature`` HMAC, ``{"events": [...]}`` with ``event_id``,
  ``message_id`` and ``received_at`` on each event.

Every sink records each event id it accepted (duplicates counted), the largest batch, and
per request its wall-clock receipt time and event count; a webhook sink also records, per
event, its ``message_id``, its ``received_at`` (the daemon's own receipt time) and the
fake's receipt time (same machine, same clock: their difference is the delivery latency).

Control routes (for the benchmark): ``GET /_control/stats?sink=NAME[&detail=1]``,
``POST /_control/mode?sink=NAME&mode=ok|hold|503`` (``hold`` never answers: delivery stays
pending without a retry being recorded), ``POST /_control/reset?sink=NAME``,
``GET /_control/sample?sink=NAME`` (the raw body of the first request accepted).

Prints ``{"msg": "started", "listen": {"public": "HOST:PORT"}}`` once listening, the line
``benchlib.wait_started`` waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import hmac
import json
import re
import signal
import sys
import time
from pathlib import Path

import msgspec
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
MAX_META_EVENTS = 1000
PROBLEMS_KEPT = 50

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
_META_PATH = re.compile(r"v\d+\.\d+")


class MetaEvent(msgspec.Struct):
    """What every server event must carry (the rest is checked on a sample, see below)."""

    event_id: str
    event_name: str
    event_time: int
    action_source: str
    user_data: dict


class MetaBody(msgspec.Struct):
    data: list[MetaEvent]
    access_token: str = ""


_decode_meta = msgspec.json.Decoder(MetaBody).decode


def _deep_checker():
    """The test suite's full per-event Meta check, when the tests are importable."""
    sys.path.insert(0, str(ROOT))
    try:
        from tests.fakes.meta import FakeMeta
    except Exception:  # tests not shipped, or changed: the light checks still run
        return None
    fake = FakeMeta()
    return fake._check_event


def meta_error(message: str) -> web.Response:
    error = {"message": message, "type": "OAuthException", "code": 100, "fbtrace_id": "Bench"}
    return web.Response(status=400, body=_encode({"error": error}), content_type="application/json")


class Sink:
    def __init__(self, kind: str, name: str, secret: str = "", pixel: str = "", token: str = ""):
        self.kind, self.name = kind, name
        self.secret, self.pixel, self.token = secret, pixel, token
        self.mode = "ok"
        self.released = asyncio.Event()  # set when a hold ends: held requests get 503
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.events = 0
        self.ids: set[str] = set()
        self.duplicates = 0
        self.max_batch = 0
        self.oversize = 0
        self.problems: list[str] = []
        self.problem_count = 0
        self.deep_checked = 0
        self.held = 0
        self.refused = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.log: list[tuple[float, int]] = []  # (receipt wall time, events) per request
        # webhook: (message_id, the event's received_at or 0, receipt time) per event
        self.arrivals: list[tuple[str, float, float]] = []
        self.sample: bytes | None = None

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(text)

    def record(self, now: float, ids: list[str], raw: bytes) -> None:
        self.requests += 1
        self.events += len(ids)
        self.max_batch = max(self.max_batch, len(ids))
        before = len(self.ids)
        self.ids.update(ids)
        self.duplicates += len(ids) - (len(self.ids) - before)
        if not self.first_at:
            self.first_at = now
            self.sample = raw
        self.last_at = now
        self.log.append((now, len(ids)))

    def stats(self, detail: bool) -> dict:
        out = {
            "sink": self.name,
            "kind": self.kind,
            "mode": self.mode,
            "requests": self.requests,
            "events": self.events,
            "unique": len(self.ids),
            "duplicates": self.duplicates,
            "max_batch": self.max_batch,
            "oversize_batches": self.oversize,
            "problem_count": self.problem_count,
            "problems": self.problems,
            "deep_checked": self.deep_checked,
            "held": self.held,
            "refused": self.refused,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }
        if detail:
            out["log"] = self.log
            out["arrivals"] = self.arrivals
        return out


class FakePlatform:
    def __init__(self, sinks: dict[str, Sink], deep_every: int) -> None:
        self.sinks = sinks
        self.deep_every = deep_every
        self.deep = _deep_checker()
        self.deep_counter = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024**2)
        app.router.add_post("/meta/{sink}/{version}/{pixel}/events", self.meta)
        app.router.add_post("/hook/{sink}", self.hook)
        app.router.add_get("/_control/stats", self.control_stats)
        app.router.add_post("/_control/mode", self.control_mode)
        app.router.add_post("/_control/reset", self.control_reset)
        app.router.add_get("/_control/sample", self.control_sample)
        return app

    def _sink(self, request: web.Request, kind: str | None = None) -> Sink:
        name = request.match_info.get("sink") or request.query.get("sink", "")
        sink = self.sinks.get(name)
        if sink is None or (kind and sink.kind != kind):
            raise web.HTTPNotFound(text=f"no {kind or ''} sink {name!r}")
        return sink

    async def _gate(self, sink: Sink) -> web.Response | None:
        if sink.mode == "hold":
            # Never answered while the hold lasts (the client gives up or is stopped first);
            # afterwards a 503, never recorded as delivered.
            sink.held += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sink.released.wait(), 3600)
            return web.Response(status=503, text="held by the benchmark")
        if sink.mode == "503":
            sink.refused += 1
            return web.Response(status=503, text="held by the benchmark")
        return None

    # Meta ----------------------------------------------------------------------------------

    async def meta(self, request: web.Request) -> web.Response:
        sink = self._sink(request, "meta")
        raw = await request.read()
        gated = await self._gate(sink)
        if gated is not None:
            return gated
        now = time.time()
        if not _META_PATH.fullmatch(request.match_info["version"]):
            sink.problem(f"path version {request.match_info['version']!r}")
            return meta_error("Unsupported post request")
        if request.match_info["pixel"] != sink.pixel:
            sink.problem(f"unknown pixel {request.match_info['pixel']}")
            return meta_error("Unsupported post request. Object does not exist")
        if request.headers.get("Content-Type", "").split(";")[0] != "application/json":
            sink.problem("Content-Type is not application/json")
        try:
            body = _decode_meta(raw)  # types checked in C: fast enough not to be the limit
        except msgspec.ValidationError as problem:
            sink.problem(f"body: {problem}")
            return meta_error(f"(#100) Invalid parameter: {problem}")
        except msgspec.DecodeError:
            sink.problem("body is not JSON")
            return meta_error("Invalid JSON")
        if body.access_token != sink.token:
            sink.problem("wrong or missing access_token")
            return meta_error("Invalid OAuth access token.")
        data = body.data
        if not data:
            sink.problem("data must be a non-empty list")
            return meta_error("(#100) The parameter data is required")
        if len(data) > MAX_META_EVENTS:
            sink.oversize += 1
            sink.problem(f"{len(data)} events in one request (max {MAX_META_EVENTS})")
            return meta_error("(#100) Too many events, max 1000")
        ids = [event.event_id for event in data]
        bad = False
        if not all(ids) or not all(event.user_data for event in data):
            sink.problem("an event without event_id or user_data")
            bad = True
        self.deep_counter += 1
        if self.deep and (sink.requests == 0 or self.deep_counter % self.deep_every == 0):
            for event in _decode(raw)["data"]:
                sink.deep_checked += 1
                found, _ = self.deep(event, now)
                for text in found:
                    sink.problem(f"meta check: {text}")
                    bad = True
        if bad:
            return meta_error("(#100) Invalid parameter")
        sink.record(now, ids, raw)
        answer = {"events_received": len(data), "messages": [], "fbtrace_id": "Bench"}
        return web.Response(body=_encode(answer), content_type="application/json")

    # webhook -------------------------------------------------------------------------------

    async def hook(self, request: web.Request) -> web.Response:
        sink = self._sink(request, "hook")
        raw = await request.read()
        gated = await self._gate(sink)
        if gated is not None:
            return gated
        now = time.time()
        if sink.secret:
            expected = "sha256=" + hmac.new(sink.secret.encode(), raw, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(request.headers.get("X-TrackLayer-Signature", ""), expected):
                sink.problem("bad or missing X-TrackLayer-Signature")
                return web.Response(status=401, text="bad signature")
        try:
            body = _decode(raw)
        except msgspec.DecodeError:
            sink.problem("body is not JSON")
            return web.Response(status=400, text="not JSON")
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            sink.problem('body has no "events" list')
            return web.Response(status=400, text="no events")
        ids = []
        for event in events:
            event_id = event.get("event_id") if isinstance(event, dict) else None
            message_id = event.get("message_id") if isinstance(event, dict) else None
            received = event.get("received_at") if isinstance(event, dict) else None
            if not isinstance(event_id, str) or not isinstance(message_id, str):
                sink.problem("event without string event_id / message_id")
                continue
            ids.append(event_id)
            try:
                at = datetime.datetime.fromisoformat(received).timestamp()
            except (TypeError, ValueError):
                sink.problem(f"received_at {received!r} is not ISO 8601")
                at = 0.0
            sink.arrivals.append((message_id, at, now))
        sink.record(now, ids, raw)
        return web.json_response({"ok": True})

    # control -------------------------------------------------------------------------------

    async def control_stats(self, request: web.Request) -> web.Response:
        sink = self._sink(request)
        detail = request.query.get("detail") == "1"
        return web.Response(body=_encode(sink.stats(detail)), content_type="application/json")

    async def control_mode(self, request: web.Request) -> web.Response:
        sink = self._sink(request)
        mode = request.query.get("mode", "")
        if mode not in ("ok", "hold", "503"):
            raise web.HTTPBadRequest(text="mode: ok, hold or 503")
        sink.mode = mode
        if mode == "hold":
            sink.released.clear()
        else:
            sink.released.set()
        return web.json_response({"sink": sink.name, "mode": mode})

    async def control_reset(self, request: web.Request) -> web.Response:
        sink = self._sink(request)
        sink.reset()
        return web.json_response({"sink": sink.name, "reset": True})

    async def control_sample(self, request: web.Request) -> web.Response:
        sink = self._sink(request)
        if sink.sample is None:
            raise web.HTTPNotFound(text="nothing accepted yet")
        return web.Response(body=sink.sample, content_type="application/json")


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


async def serve(args) -> None:
    sinks: dict[str, Sink] = {}
    for name, value in args.meta:
        pixel, _, token = value.partition(":")
        sinks[name] = Sink("meta", name, pixel=pixel, token=token)
    for name, secret in args.webhook:
        sinks[name] = Sink("hook", name, secret=secret)
    platform = FakePlatform(sinks, args.deep_every)
    runner = web.AppRunner(
        platform.app(), access_log=None, handle_signals=False, shutdown_timeout=2
    )
    await runner.setup()
    host, _, port = args.listen.rpartition(":")
    site = web.TCPSite(runner, host, int(port), reuse_address=True, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
    print(
        json.dumps(
            {
                "msg": "started",
                "listen": {"public": f"{bound[0]}:{bound[1]}"},
                "sinks": sorted(sinks),
                "deep_checks": platform.deep is not None,
            }
        ),
        flush=True,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    for sink in sinks.values():
        sink.released.set()
    await runner.shutdown()
    await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description="fake ad-platform endpoints for bench/")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--meta", type=_pair, action="append", default=[], help="NAME=PIXEL:TOKEN")
    parser.add_argument("--webhook", type=_pair, action="append", default=[], help="NAME=SECRET")
    parser.add_argument(
        "--deep-every", type=int, default=20, help="full Meta checks on one request in N"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args))
    except ImportError:
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
