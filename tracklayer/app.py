"""The composition root: builds every stage from the config, runs them, reloads and stops.

Lifecycle, top to bottom: ``start()`` (store → journal → workers → HTTP), ``serve()`` until
SIGTERM/SIGINT (SIGHUP reloads sources and destinations), ``stop()`` (HTTP drains in-flight
requests → workers finish or release their sends → the journal commits what is queued →
SQLite closes).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import sqlite3
import ssl
import time
from collections import Counter

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tracklayer import config as config_module
from tracklayer import destinations
from tracklayer.config import Config, ConfigError, split_listen
from tracklayer.delivery.worker import Worker
from tracklayer.diagnostics import report as report_module
from tracklayer.diagnostics.alerts import AlertSender
from tracklayer.diagnostics.anomaly import EVALUATE_SECONDS, AnomalyMonitor
from tracklayer.diagnostics.live import LiveTail, debugger_page
from tracklayer.duration import parse_duration
from tracklayer.ingest import Ingest
from tracklayer.metrics import Metrics
from tracklayer.pipeline.canonical import Canonicaliser
from tracklayer.pipeline.click_ids import DEFAULT_WINDOWS
from tracklayer.pipeline.routing import Routes
from tracklayer.sources.browser import BrowserSource
from tracklayer.sources.http import error as error_response
from tracklayer.sources.intake import Intake
from tracklayer.sources.native import NativeSource
from tracklayer.sources.segment import SegmentSource
from tracklayer.sources.segment_webhook import SegmentWebhookSource
from tracklayer.sources.shopify import ShopifySource
from tracklayer.store import outbox, retention
from tracklayer.store import stats as stats_store
from tracklayer.store.database import (
    StoreUnavailable,
    checkpoint,
    connect,
    in_thread,
    open_database,
)
from tracklayer.store.dedup import DedupRegistry
from tracklayer.store.identity import IdentityGraph
from tracklayer.store.journal import Journal
from tracklayer.store.stats import StatsBuffer

log = logging.getLogger("tracklayer")

STATS_FLUSH_SECONDS = 5.0
GAUGE_SECONDS = 5.0
RETENTION_SECONDS = 3600.0
CHECKPOINT_SECONDS = 1.0  # WAL checkpoints, off the writer's thread (store/database.py)
DEDUP_STEP = 5_000  # keys per dedup rebuild step: a step holds the event loop for about 15 ms


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every answer is JSON with ``code`` and ``message``, even 404s and crashes."""
    try:
        return await handler(request)
    except web.HTTPException as http_error:
        if http_error.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(http_error.status, "http_error")
        return error_response(http_error.status, code, http_error.reason)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("request failed", extra={"fields": {"path": request.path}})
        return error_response(500, "internal", "internal error; the request was not stored")


class TrackLayer:
    """One running daemon."""

    def __init__(self, config: Config, config_path: str = "") -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = Metrics()
        self.stats = StatsBuffer()
        self.workers: dict[str, Worker] = {}
        self.addresses: dict[str, str] = {}
        self._runners: list[web.AppRunner] = []
        self._background: list[asyncio.Task] = []
        self._stopped = asyncio.Event()
        self._stopping = False
        self._checkpoints_ok = True
        self._ready = False
        self._reload_lock = asyncio.Lock()
        self.live = LiveTail()  # ingest and delivery publish; /v1/admin/live streams
        self.anomalies = AnomalyMonitor(self._stats_series, self.metrics)

    # start ------------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        storage = config.storage
        self.writer = await open_database(storage.path, storage.durability)
        self.reader = await connect(storage.path, storage.durability)
        self.monitor_reader = await connect(storage.path, storage.durability)
        self.checkpointer = await connect(storage.path, storage.durability)
        destination_ids = [d.id for d in config.destinations]
        recovered = await in_thread(
            self.writer, lambda c: outbox.recover_claims(c, destination_ids)
        )
        if recovered:
            log.info(
                "recovered claimed rows after an unclean stop",
                extra={"fields": {"rows": recovered}},
            )
        dedup = config.dedup
        self.dedup = DedupRegistry(dedup.window, dedup.expected_keys, dedup.false_positive_rate)
        self.journal = Journal(self.writer, self.dedup, on_commit=self._on_commit)
        self.graph = IdentityGraph(self.reader)
        await self.graph.start()
        self.journal.hooks.append(self.graph)
        await self.journal.start()
        for destination in config.destinations:
            self._start_worker(destination)
        self.intake = self._build_intake(config)
        await self._start_http()
        self._background = [
            asyncio.create_task(self._every(STATS_FLUSH_SECONDS, self.flush_stats), name="stats"),
            asyncio.create_task(self._refresh_gauges(), name="gauges"),
            asyncio.create_task(self._every(RETENTION_SECONDS, self._sweep), name="retention"),
            asyncio.create_task(self._every(CHECKPOINT_SECONDS, self._checkpoint), name="wal"),
            asyncio.create_task(self._watch_anomalies(), name="anomalies"),
            asyncio.create_task(self._rebuild_dedup(), name="dedup-rebuild"),
        ]
        self._ready = True
        log.info(
            "started",
            extra={
                "fields": {
                    "listen": self.addresses,
                    "sources": [s.id for s in config.sources],
                    "destinations": [d.id for d in config.destinations],
                }
            },
        )

    def _start_worker(self, destination) -> None:
        worker = Worker(
            destination,
            destinations.create(destination),
            self.journal,
            lambda: connect(self.config.storage.path, self.config.storage.durability),
            self.metrics,
            self.stats,
            live=self.live,
        )
        worker.start()
        self.workers[destination.id] = worker

    def _build_intake(self, config: Config) -> Intake:
        windows = {**DEFAULT_WINDOWS, **config.identity.click_id_windows}
        ingest = Ingest(
            self.journal,
            Routes(config.destinations),
            self.metrics,
            self.stats,
            self.graph,
            windows,
            keep_raw=config.identity.pii == "raw",
            live=self.live,
        )
        wanted = destinations.identifiers_for(config.destinations)
        return Intake(config, Canonicaliser(config, wanted), ingest, self.metrics)

    def _on_commit(self, queued: Counter[str]) -> None:
        for destination, count in queued.items():
            worker = self.workers.get(destination)
            if worker is not None:
                worker.notify(count)

    async def _start_http(self) -> None:
        config = self.config
        public = web.Application(middlewares=[json_errors], client_max_size=2**31)
        SegmentSource(lambda: self.intake).add_routes(public)
        NativeSource(lambda: self.intake).add_routes(public)
        BrowserSource(lambda: self.intake).add_routes(public)
        SegmentWebhookSource(lambda: self.intake).add_routes(public)
        ShopifySource(lambda: self.intake).add_routes(public)
        self._add_health(public)
        if config.admin.listen:
            admin = web.Application(middlewares=[json_errors])
            self._add_health(admin)
            self._add_admin(admin)
            await self._serve(admin, config.admin.listen, "admin")
        else:
            self._add_admin(public)
        await self._serve(public, config.server.listen, "public")

    def _add_health(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)

    def _add_admin(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/admin/report", self._report)
        app.router.add_get("/v1/admin/anomalies", self._anomalies)
        app.router.add_get("/v1/admin/live", self._live)
        app.router.add_get("/debugger", self._debugger)
        app.on_shutdown.append(self.live.close)  # end the streams so stopping never waits

    async def _serve(self, app: web.Application, listen: str, name: str) -> None:
        # auto_decompress off: sources inflate gzip themselves, within max_body_bytes.
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, auto_decompress=False, shutdown_timeout=10
        )
        await runner.setup()
        host, port = split_listen(listen)
        tls = self.config.server.tls
        context = None
        if tls and name == "public":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.cert_file, tls.key_file)
        site = web.TCPSite(runner, host, port, ssl_context=context, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        bound = sockets[0].getsockname() if sockets else (host, port)
        self.addresses[name] = f"{bound[0]}:{bound[1]}"
        self._runners.append(runner)

    # handlers ---------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._ready and not self._stopping and not self.journal.healthy:
            await self.journal.probe()  # after a failure, find out whether writes work again
        if self._ready and not self._stopping and self.journal.healthy:
            return web.json_response({"ready": True})
        reason = "stopping" if self._stopping else self.journal.last_error or "starting"
        return web.json_response({"ready": False, "reason": reason}, status=503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _admin_authorized(self, request: web.Request) -> bool:
        token = self.config.admin.token
        if not token:
            return False
        header = request.headers.get("Authorization", "")
        offered = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        offered = offered or request.query.get("token", "") or request.cookies.get("tl_admin", "")
        return bool(offered) and hmac.compare_digest(offered.encode(), token.encode())

    async def _report(self, request: web.Request) -> web.Response:
        if not self._admin_authorized(request):
            message = (
                "admin token required"
                if self.config.admin.token
                else ("admin API disabled: set admin.token")
            )
            return error_response(401, "unauthorized", message)
        try:
            since = parse_duration(request.query.get("since", "24h"))
        except ValueError as problem:
            return error_response(400, "invalid_query", f"since: {problem}")
        await self.flush_stats()
        now = time.time()
        weights = destinations.match_weights_for(self.config.destinations)
        report = await report_module.build(self.reader, now - since, now, weights)
        return web.json_response(report)

    def _admin_refused(self) -> web.Response:
        message = (
            "admin token required"
            if self.config.admin.token
            else "admin API disabled: set admin.token"
        )
        return error_response(401, "unauthorized", message)

    async def _anomalies(self, request: web.Request) -> web.Response:
        if not self._admin_authorized(request):
            return self._admin_refused()
        return web.json_response(self.anomalies.snapshot())

    async def _live(self, request: web.Request) -> web.StreamResponse:
        if not self._admin_authorized(request):
            return self._admin_refused()
        return await self.live.handle(request)

    async def _debugger(self, request: web.Request) -> web.Response:
        if not self._admin_authorized(request):
            return self._admin_refused()
        return debugger_page().response(request, request.query.get("token", ""))

    async def _watch_anomalies(self) -> None:
        """Every minute: flush stats, run the detectors; transitions go to alerts.webhook
        when one is set (the sender lives as long as this task). Stats are read on a
        connection of the monitor's own (opened in ``start``), so loading days of history
        never queues ingest's identity lookups behind it on the shared reader."""
        connection = self.monitor_reader
        self.anomalies.loader = lambda since, until: stats_store.series(connection, since, until)
        if not self.config.alerts.webhook:
            await self._every(EVALUATE_SECONDS, self._evaluate_anomalies)
            return
        async with AlertSender(self.config.alerts.webhook) as sender:
            self.anomalies.notify = sender.send
            await self._every(EVALUATE_SECONDS, self._evaluate_anomalies)

    async def _evaluate_anomalies(self) -> None:
        await self.flush_stats()
        await self.anomalies.evaluate()

    async def _stats_series(self, since: float, until: float) -> list[tuple]:
        return await stats_store.series(self.reader, since, until)

    # background -------------------------------------------------------------------------

    async def _every(self, seconds: float, action) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await action()
            except Exception as problem:  # logged; the next round tries again
                log.warning(
                    "background task failed",
                    extra={"fields": {"task": action.__name__, "error": str(problem)}},
                )

    async def _checkpoint(self) -> None:
        """One passive WAL checkpoint on its own connection; a failure (a full disk) is
        logged once, and so is the recovery."""
        try:
            await in_thread(self.checkpointer, checkpoint)
        except sqlite3.Error as problem:
            if self._checkpoints_ok:
                log.warning("wal checkpoint failed", extra={"fields": {"error": str(problem)}})
            self._checkpoints_ok = False
            return
        if not self._checkpoints_ok:
            log.info("wal checkpoints work again")
        self._checkpoints_ok = True

    async def flush_stats(self) -> None:
        rows = self.stats.take()
        if rows:
            try:
                await self.journal.run(lambda c: self.stats.write(c, rows))
            except Exception:
                self.stats.restore(rows)  # the next flush tries again
                raise

    async def _rebuild_dedup(self) -> None:
        """Fill the dedup filter from the table in steps between group commits, so a big
        registry never delays start-up (until it is full, every key is checked in SQLite)."""
        dedup = self.dedup
        started = last_report = time.monotonic()
        while not self._stopping and not dedup.complete:
            try:
                await self._rebuild_dedup_step(dedup)
            except (StoreUnavailable, sqlite3.Error) as problem:
                log.warning("dedup rebuild step failed", extra={"fields": {"error": str(problem)}})
                await asyncio.sleep(1.0)
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                log.info("rebuilding dedup filter", extra={"fields": {"keys": dedup.loaded}})
        if dedup.complete:
            seconds = round(time.monotonic() - started, 2)
            log.info(
                "dedup filter rebuilt", extra={"fields": {"keys": dedup.loaded, "seconds": seconds}}
            )

    async def _rebuild_dedup_step(self, dedup: DedupRegistry) -> None:
        # read on the monitoring connection (the scan stays out of the writer's cache), load
        # on the event loop, where the journal screens and fills the filter between commits
        rows = await in_thread(self.monitor_reader, lambda c: dedup.rebuild_rows(c, DEDUP_STEP))
        dedup.rebuild_load(rows, time.time(), last=len(rows) < DEDUP_STEP)

    async def _refresh_gauges(self) -> None:
        """The outbox and dead-letter gauges, every GAUGE_SECONDS or, when counting takes
        long (a backlog of millions), less often: counting never takes over 2 % of the
        monitoring connection, which claims and identity lookups do not share."""
        while True:
            started = time.monotonic()
            try:
                await self._update_gauges()
            except Exception as problem:  # logged; the next round tries again
                log.warning(
                    "background task failed",
                    extra={"fields": {"task": "gauges", "error": str(problem)}},
                )
            await asyncio.sleep(max(GAUGE_SECONDS, 50 * (time.monotonic() - started)))

    async def _update_gauges(self) -> None:
        depths = await outbox.depths(self.monitor_reader)
        dead = await outbox.dead_letter_counts(self.monitor_reader)
        for destination in self.workers:
            self.metrics.outbox_depth.labels(destination).set(depths.get(destination, 0))
            self.metrics.dead_letters.labels(destination).set(dead.get(destination, 0))
        self.metrics.store_commits._value.set(self.journal.commits)  # type: ignore[attr-defined]

    async def _sweep(self) -> None:
        window, keep = self.config.dedup.window, self.config.storage.retention
        profiles_kept = self.config.identity.retention
        while not self._stopping:
            deleted = await self.journal.run(
                lambda c: retention.sweep_once(c, time.time(), window, keep, profiles_kept)
            )
            if deleted < retention.CHUNK:
                return

    # reload -----------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the config file; apply sources and destinations, keep the rest. A config
        that does not validate leaves the running one in place and says why."""
        async with self._reload_lock:
            try:
                new = config_module.load(self.config_path)
            except ConfigError as problem:
                log.error(
                    "reload failed; keeping the running config",
                    extra={"fields": {"error": str(problem)}},
                )
                return False
            old = self.config
            for section in ("server", "admin", "storage", "dedup"):
                if getattr(new, section) != getattr(old, section):
                    log.warning(
                        "config section changed; it applies after a restart",
                        extra={"fields": {"section": section}},
                    )
            new = _keep_sections(new, old)
            old_destinations = {d.id: d for d in old.destinations}
            new_destinations = {d.id: d for d in new.destinations}
            for destination_id, destination in old_destinations.items():
                if new_destinations.get(destination_id) != destination:
                    await self.workers.pop(destination_id).stop()
            self.config = new
            for destination_id, destination in new_destinations.items():
                if destination_id not in self.workers:
                    self._start_worker(destination)
            intake = self._build_intake(new)
            intake.carry_buckets(self.intake)
            self.intake = intake
            log.info(
                "reloaded",
                extra={
                    "fields": {
                        "sources": [s.id for s in new.sources],
                        "destinations": [d.id for d in new.destinations],
                    }
                },
            )
            return True

    # stop -------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        try:
            await self._stopped.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        await self.stop()

    def request_stop(self) -> None:
        log.info("stopping")
        self._stopped.set()

    async def stop(self) -> None:
        """Stop in order; also safe after a start that failed half-way."""
        if self._stopping:
            return
        self._stopping = True
        for runner in self._runners:
            await runner.cleanup()  # stops listening, lets in-flight requests finish
        await asyncio.gather(*(w.stop() for w in self.workers.values()))
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        journal = getattr(self, "journal", None)
        if journal is not None:
            try:
                await self.flush_stats()
            except Exception as problem:
                log.warning("final stats flush failed", extra={"fields": {"error": str(problem)}})
            await journal.stop()
        for name in ("checkpointer", "monitor_reader", "reader", "writer"):
            connection = getattr(self, name, None)
            if connection is not None:
                await connection.close()
        log.info("stopped")


def _keep_sections(new: Config, old: Config) -> Config:
    """The reloaded config with the sections that need a restart kept as they run."""
    return msgspec.structs.replace(
        new, server=old.server, admin=old.admin, storage=old.storage, dedup=old.dedup
    )
