"""One isolated delivery worker per destination.

The loop waits (event driven: a commit notice, the next retry's due time, or shutdown),
lingers until a batch is full or its oldest event has waited ``batch.max_wait``, claims due
outbox rows (a read; the rows it holds are kept in memory until their outcome commits, so
claiming never waits for the writer), and hands them to send tasks, as many batches at
once as ``max_in_flight`` has free slots. Each request takes a token from the
destination's bucket; a 429 halves the rate and honours ``Retry-After``; success brings the
rate back. Every event ends accepted, warning, observed, suppressed, rejected (dead letter)
or retried with backoff until ``retry.max_attempts`` or ``retry.max_age`` (dead letter).

A slow or dead destination only ever blocks its own worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import aiosqlite

from tracklayer.delivery.backoff import AdaptiveRate, backoff_delay
from tracklayer.delivery.health import Health
from tracklayer.destinations.base import (
    BatchPolicy,
    Destination,
    DestinationConfig,
    RateLimit,
    Request,
    Response,
)
from tracklayer.destinations.webhook import iso8601
from tracklayer.diagnostics import match_quality
from tracklayer.metrics import Metrics
from tracklayer.model import OBSERVED, Event, Outcome
from tracklayer.store import outbox
from tracklayer.store.database import in_thread
from tracklayer.store.journal import Journal
from tracklayer.store.stats import StatsBuffer, latency_bucket
from tracklayer.token_bucket import TokenBucket

log = logging.getLogger("tracklayer.delivery")

IDLE_RECHECK_SECONDS = 5.0
STOP_SECONDS = 10.0  # how long a stop lets sends in flight finish
HOLD_MIN_ROWS = 2_000
SETTLED = {"accepted", "warning", "observed", "suppressed"}


class Worker:
    """Delivers one destination's outbox."""

    def __init__(
        self,
        config: DestinationConfig,
        plugin: Destination,
        journal: Journal,
        open_reader: Callable[[], Awaitable[aiosqlite.Connection]],
        metrics: Metrics,
        stats: StatsBuffer,
        clock: Callable[[], float] = time.time,
        live: Any = None,
    ) -> None:
        self.config = config
        self.plugin = plugin
        self.journal = journal
        # Its own read connection (and so its own SQLite thread): a destination whose claims
        # read past thousands of held rows never makes another destination's claims wait.
        self._open_reader = open_reader
        self.reader: aiosqlite.Connection | None = None
        self._opening: asyncio.Future | None = None
        self.metrics = metrics
        self.stats = stats
        self.clock = clock
        self.live = live  # diagnostics/live.py LiveTail: outcomes for the debugger
        self.id = config.id
        self.batch: BatchPolicy = config.batch or plugin.default_batch
        self.limit: RateLimit = config.rate_limit or plugin.default_rate_limit
        self.rate = AdaptiveRate(self.limit.rps)
        self.bucket = TokenBucket(self.limit.rps, self.limit.capacity)
        self.health = Health(self.id)
        self._wake = asyncio.Event()
        self._known = 0  # rows committed for us and not yet claimed, as far as we know
        self._first_known_at = 0.0
        self._stopping = False
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._sends: set[asyncio.Task] = set()
        self._claimed: set[int] = set()  # held: being sent, or sent and not yet settled
        # Sends free their slot before their outcome commits, so held rows are bounded apart
        # from the slots: two rounds of full batches, and never under HOLD_MIN_ROWS, so small
        # batches keep sending through a long commit cycle (a few MB of events at most).
        self._hold_limit = max(HOLD_MIN_ROWS, 2 * config.max_in_flight * self.batch.max_events)
        self._settled = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None
        metrics.destination_healthy.labels(self.id).set(1)
        metrics.destination_rate.labels(self.id).set(self.limit.rps)
        self._count = {
            outcome: metrics.deliveries.labels(self.id, outcome)
            for outcome in ("accepted", "warning", "rejected", "retried", "dead", "observed")
        }
        self._latency = metrics.delivery_seconds.labels(self.id)
        self._quality = metrics.match_quality.labels(self.id)
        self._scored = self._scored_flushed = 0
        self._present: Counter[str] = Counter()
        self._batch_keys: Counter[tuple[str, str]] = Counter()  # (event, key) this batch
        self._coverage: dict[str, Any] = {}  # key → its coverage gauge child

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self.config.mode == "live":
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                connector=aiohttp.TCPConnector(limit=self.config.max_in_flight),
            )
        self._task = asyncio.create_task(self._run(), name=f"deliver-{self.id}")

    async def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; let sends in flight finish for up to ``timeout`` seconds
        (``STOP_SECONDS``), then cancel them: their rows stay in the outbox, due again."""
        self._stopping = True
        self._wake.set()
        if self._task:
            # The loop may be waiting for a send slot that a paused bucket keeps busy; it
            # holds nothing a cancel could lose (a claim is a read; slots are given back).
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sends:
            wait = STOP_SECONDS if timeout is None else timeout
            _, late = await asyncio.wait(self._sends, timeout=wait)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._claimed.clear()  # unsettled rows stay in the outbox, due again at the next start
        if self._session:
            await self._session.close()
        if self.reader is None and self._opening is not None:
            with contextlib.suppress(Exception):
                self.reader = await self._opening
        if self.reader is not None:
            await self.reader.close()
            self.reader = None

    def notify(self, count: int) -> None:
        """The journal committed ``count`` new rows for this destination."""
        if self._known <= 0:
            self._first_known_at = self.clock()
        self._known += count
        if self._known >= self.batch.max_events or self._known == count:
            self._wake.set()

    # the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                if self.reader is None:
                    # shielded: a stop during the open must still get the connection to
                    # close it (its thread would otherwise keep the process alive)
                    self._opening = asyncio.ensure_future(self._open_reader())
                    self.reader = await asyncio.shield(self._opening)
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the store failed; wait and retry, never die
                log.error(
                    "delivery loop error",
                    extra={"fields": {"destination": self.id, "error": str(error)}},
                )
                await self._sleep(1.0)

    async def _step(self) -> None:
        now = self.clock()
        if self._known <= 0:
            in_flight = frozenset(self._claimed)
            due = await in_thread(self.reader, lambda c: outbox.next_due(c, self.id, in_flight))
            if due is None:
                # Commits notify us; the timeout only catches rows another process queued
                # (``tracklayer replay`` while the daemon runs).
                await self._sleep(IDLE_RECHECK_SECONDS)
                return
            if due > now:
                await self._sleep(due - now)
                return
            self._known, self._first_known_at = max(self._known, 1), min(due, now)
        if self._known < self.batch.max_events:
            linger = self._first_known_at + self.batch.max_wait - now
            if linger > 0:
                await self._sleep(linger, until_full=True)
                if self._known < self.batch.max_events and not self._past_linger():
                    return
        while len(self._claimed) >= self._hold_limit and not self._stopping:
            self._settled.clear()  # outcomes are waiting for a commit: let them land first
            await self._settled.wait()
        if self._stopping:
            return
        # One claim fills every free send slot: a claim waits for a group commit, and under
        # heavy ingest a commit cycle is long, so claiming one batch per cycle falls behind.
        await self._slots.acquire()
        slots = 1
        while slots < self.config.max_in_flight and not self._slots.locked():
            await self._slots.acquire()
            slots += 1
        size = self.batch.max_events
        wanted = size * (slots if self._known >= size else 1)
        in_flight = frozenset(self._claimed)
        try:
            rows = await in_thread(
                self.reader, lambda c: outbox.claim(c, self.id, wanted, self.clock(), in_flight)
            )
        except BaseException:
            for _ in range(slots):
                self._slots.release()
            raise
        if len(rows) < wanted:
            self._known = 0
        else:
            # a full claim: more rows are probably due; the next claim finds out (and one
            # that comes back short resets this), so a backlog drains without polling
            self._known = max(size, self._known - len(rows))
            self._first_known_at = self.clock()
        batches = [rows[i : i + size] for i in range(0, len(rows), size)]
        for _ in range(slots - len(batches)):
            self._slots.release()
        self._claimed.update(row.id for row in rows)
        for batch in batches:  # each send task releases its slot when it ends
            task = asyncio.create_task(self._deliver(batch), name=f"send-{self.id}")
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    def _past_linger(self) -> bool:
        return self.clock() >= self._first_known_at + self.batch.max_wait

    async def _sleep(self, seconds: float | None, until_full: bool = False) -> None:
        """Wait for a commit notice, shutdown, or ``seconds``. The flag is cleared after the
        wait, not before, so a notice that came while the caller was busy is never lost (a
        stale one only costs a spurious wake-up)."""
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    # one batch --------------------------------------------------------------------------

    async def _deliver(self, rows: list[outbox.Claimed]) -> None:
        try:
            try:
                outcomes = await self._outcomes([row.event for row in rows])
            except Exception as error:  # a plugin bug must not strand the claimed rows
                log.exception(
                    "destination plugin failed", extra={"fields": {"destination": self.id}}
                )
                outcomes = [Outcome("retry", code="internal_error", message=repr(error))] * len(
                    rows
                )
            done, retries, dead = self._decide(rows, outcomes)
        finally:
            # The send is over: its slot is free now. The rows stay held (``_claimed``)
            # until their outcome commits, so no claim can take them meanwhile.
            self._slots.release()
        while True:
            try:
                await self.journal.run(
                    lambda c: outbox.settle(c, self.id, done, retries, dead, self.clock())
                )
                break
            except Exception as error:  # store unavailable: keep the hold, try again
                if self._stopping:
                    return  # unsettled rows stay in the outbox, due again at the next start
                log.warning(
                    "cannot record delivery outcome, retrying",
                    extra={"fields": {"destination": self.id, "error": str(error)}},
                )
                await asyncio.sleep(1.0)
        self._claimed.difference_update(row.id for row in rows)
        self._settled.set()
        if retries:
            self._wake.set()  # the loop recomputes when the next retry is due

    async def _outcomes(self, events: list[Event]) -> list[Outcome]:
        """One outcome per event: gate, validate, then build, send and classify the rest."""
        outcomes: list[Outcome | None] = [None] * len(events)
        sendable: list[int] = []
        for i, event in enumerate(events):
            outcomes[i] = self._gate(event) or self.plugin.validate(event)
            if outcomes[i] is None:
                sendable.append(i)
        if sendable and (refused := await self._authenticate()) is not None:
            for i in sendable:
                outcomes[i] = refused
            sendable = []
        if sendable:
            batch = [events[i] for i in sendable]
            requests = self.plugin.build(batch)
            for request in requests:
                for index, outcome in zip(request.indexes, await self._send(request), strict=True):
                    outcomes[sendable[index]] = outcome
        return [
            o or Outcome("retry", code="unanswered", message="no request carried it")
            for o in outcomes
        ]

    async def _authenticate(self) -> Outcome | None:
        """Fetch a token first when the plugin needs one (``Authenticating``); the outcome
        every event gets when that fails, else None."""
        token_request = getattr(self.plugin, "token_request", None)
        if token_request is None or self.config.mode == "observe":
            return None
        request = token_request(self.clock())
        if request is None:
            return None
        answer = await self._exchange(request)
        if isinstance(answer, Outcome):
            return answer
        return self.plugin.token_response(answer, self.clock())  # type: ignore[attr-defined]

    def _gate(self, event: Event) -> Outcome | None:
        """Consent required by this destination and not granted: suppressed, never sent."""
        for purpose in self.config.requires_consent:
            if not event.consent.get(purpose, False):
                return Outcome("suppressed", code="consent", message=purpose)
        return None

    async def _send(self, request: Request) -> list[Outcome]:
        if self.config.mode == "observe":
            return [OBSERVED] * len(request.indexes)
        await self.bucket.take()
        answer = await self._exchange(request)
        if isinstance(answer, Outcome):
            return [answer] * len(request.indexes)
        outcomes = self.plugin.classify(request, answer)
        self._pace(answer, outcomes)
        return outcomes

    async def _exchange(self, request: Request) -> Response | Outcome:
        """One HTTP exchange; a transport failure becomes a retry outcome."""
        assert self._session is not None
        try:
            async with self._session.request(
                request.method, request.url, data=request.body, headers=request.headers
            ) as answer:
                body = await answer.read()
                return Response(answer.status, dict(answer.headers), body)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            reason = "timeout" if isinstance(error, TimeoutError) else "connection_error"
            self._failed(f"{reason}: {error}".strip(": "))
            return Outcome("retry", code=reason, message=str(error) or type(error).__name__)

    def _pace(self, response: Response, outcomes: list[Outcome]) -> None:
        """Adjust the rate and health from one answer."""
        waits = [o.retry_after for o in outcomes if o.kind == "retry" and o.retry_after]
        throttled = response.status == 429 or any(o.throttled for o in outcomes)
        if throttled:
            self.bucket.set_rate(self.rate.throttled())
            if waits:
                self.bucket.pause(max(waits))
        elif response.status >= 500:
            self._failed(f"HTTP {response.status}")
            return
        else:
            self.bucket.set_rate(self.rate.succeeded())
        self.metrics.destination_rate.labels(self.id).set(self.bucket.rate)
        if self.health.answered():
            self.metrics.destination_healthy.labels(self.id).set(1)

    def _failed(self, reason: str) -> None:
        if self.health.failed(reason):
            self.metrics.destination_healthy.labels(self.id).set(0)

    def _decide(
        self, rows: list[outbox.Claimed], outcomes: list[Outcome]
    ) -> tuple[list[int], list[outbox.Retry], list[outbox.Dead]]:
        """Turn outcomes into outbox changes (and count them, and show them live)."""
        now = self.clock()
        done: list[int] = []
        retries: list[outbox.Retry] = []
        dead: list[outbox.Dead] = []
        watching = self.live is not None and self.live.viewers
        for row, outcome in zip(rows, outcomes, strict=True):
            event = row.event
            kind = self._settle_one(row, outcome, now, done, retries, dead)
            if watching:
                self._publish(event, outcome, kind)
        self._flush_scores()
        return done, retries, dead

    def _settle_one(
        self,
        row: outbox.Claimed,
        outcome: Outcome,
        now: float,
        done: list[int],
        retries: list[outbox.Retry],
        dead: list[outbox.Dead],
    ) -> str:
        """File one row under done, retries or dead; returns what became of it."""
        event = row.event
        if outcome.kind in SETTLED:
            done.append(row.id)
            self._record(event, outcome, now)
            return outcome.kind
        attempts = row.attempts + 1
        if outcome.kind == "rejected":
            dead.append(
                outbox.Dead(
                    row.id, row.event_row, attempts, "rejected", outcome.code, outcome.message
                )
            )
            self._count["rejected"].inc()
            self.stats.add(self.id, event.name, "rejected", outcome.code, outcome.message)
            return "rejected"
        policy = self.config.retry
        delay = max(outcome.retry_after or 0.0, backoff_delay(policy, attempts))
        expired = now + delay - event.received_at > policy.max_age
        if attempts >= policy.max_attempts or expired:
            why = "max_age" if expired else "max_attempts"
            reason = f"gave up after {attempts} attempts ({why}): {outcome.message}"
            dead.append(outbox.Dead(row.id, row.event_row, attempts, "dead", outcome.code, reason))
            self._count["dead"].inc()
            self.stats.add(self.id, event.name, "dead", outcome.code, reason)
            return "dead"
        retries.append(
            outbox.Retry(row.id, now + delay, attempts, f"{outcome.code} {outcome.message}")
        )
        self._count["retried"].inc()
        self.stats.add(self.id, event.name, "retried", outcome.code, outcome.message)
        return "retried"

    def _record(self, event: Event, outcome: Outcome, now: float) -> None:
        if outcome.kind == "suppressed":
            self.metrics.events_suppressed.labels(self.id, outcome.code).inc()
            self.stats.add(self.id, event.name, "suppressed", outcome.code)
            if outcome.code == "consent":  # the report breaks these down
                place = event.context.region or event.context.country or "unknown"
                self.stats.add(self.id, event.name, "consent_purpose", outcome.message)
                self.stats.add(self.id, event.name, "consent_region", place)
            return
        self._count[outcome.kind].inc()
        stats, name = self.stats, event.name
        stats.add(self.id, name, outcome.kind, outcome.code, outcome.message)
        if outcome.kind in ("accepted", "warning"):
            waited = max(0.0, now - event.received_at)
            self._latency.observe(waited)
            stats.add(self.id, name, "latency", latency_bucket(waited * 1000))
        value, currency = event.order_value()
        if value is not None:
            stats.add(self.id, name, "value", currency, total=value)
        self._score(event)

    def _publish(self, event: Event, outcome: Outcome, kind: str) -> None:
        """One outcome record for the live debugger, with the payload as sent."""
        weights = getattr(self.plugin, "match_weights", None)
        preview = getattr(self.plugin, "preview", None)
        score = (
            match_quality.score(weights, self.plugin.match_keys(event))  # type: ignore[attr-defined]
            if weights and kind in ("accepted", "warning", "observed")
            else None
        )
        self.live.publish(
            {
                "type": "outcome",
                "at": iso8601(self.clock()),
                "event_id": event.event_id,
                "name": event.name,
                "source": event.source,
                "destination": self.id,
                "mode": self.config.mode,
                "outcome": kind,
                "code": outcome.code,
                "message": outcome.message,
                "score": score,
                "payload": preview(event) if preview else None,
            }
        )

    def _score(self, event: Event) -> None:
        """Match quality of a delivered or observed event (``Scored`` plugins)."""
        weights = getattr(self.plugin, "match_weights", None)
        if not weights:
            return
        present = self.plugin.match_keys(event)  # type: ignore[attr-defined]
        quality = match_quality.score(weights, present)
        self._quality.observe(quality)
        self.stats.add(self.id, event.name, "score", total=quality)
        self._scored += 1
        for key in present:
            if key in weights:
                self._batch_keys[(event.name, key)] += 1

    def _flush_scores(self) -> None:
        """Key counts and coverage gauges once per batch, not once per event and key."""
        if self._scored == self._scored_flushed:
            return
        self._scored_flushed = self._scored
        for (name, key), count in self._batch_keys.items():
            self.stats.add(self.id, name, "key", key, count=count)
            self._present[key] += count
        self._batch_keys.clear()
        for key in getattr(self.plugin, "match_weights", ()):
            gauge = self._coverage.get(key)
            if gauge is None:
                gauge = self._coverage[key] = self.metrics.match_key_coverage.labels(self.id, key)
            gauge.set(self._present[key] / self._scored)
