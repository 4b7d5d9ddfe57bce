"""Anomaly detection over the per-minute ``stats`` buckets, per destination and canonical event.

Detectors are pure functions of window and baseline counts (``drop_check``, ``share_check``,
``new_code_check``); ``AnomalyMonitor`` feeds them from ``stats.series`` (through an injected
loader and clock), keeps the open anomalies with hysteresis, logs once on open and once on
close, and sets ``tracklayer_anomalies_active``.

What counts (see ``store/stats.py``): *delivered* = accepted + observed + warning;
*rejected* = rejected + dead (by platform code); business *duplicate*s; *key*/*missing* per
identifier key; *no_consent*; suppressed for consent. Every detector asks for a minimum
volume and a large effect (relative and statistical) so low traffic and normal noise never
page; an anomaly closes only after its condition has stayed cleared for ``clear_minutes``.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

import msgspec

from tracklayer.metrics import Metrics

log = logging.getLogger("tracklayer.diagnostics.anomaly")

Kind = Literal[
    "volume_drop",
    "duplicate_spike",
    "missing_identifier",
    "missing_consent",
    "new_rejection_code",
    "rejection_rate",
]
Verdict = Literal["flag", "hold", "clear"]
# (since, until) in Unix seconds → rows (minute, destination, event, outcome, code, count,
# total[, message]) as ``stats.series`` returns them, oldest first.
Loader = Callable[[float, float], Awaitable[list[tuple]]]

DAY = 1440  # minutes
EVALUATE_SECONDS = 60.0  # how often the app evaluates (after flushing stats)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Thresholds, in minutes and counts. The defaults page on real breakage only: a
    volume drop needs at least half the expected events gone *and* 4 standard deviations."""

    volume_windows: tuple[int, ...] = (15, 60)
    history_days: int = 7  # same window on up to this many previous days...
    min_history_days: int = 3  # ...when at least this many exist, else the trailing baseline
    trailing_minutes: int = 360
    min_expected: float = 20.0  # expected events in a window below which no drop pages
    drop_ratio: float = 0.5  # a drop leaves at most this share of the expected events
    recover_ratio: float = 0.8  # and has recovered at this share
    z: float = 4.0
    # model error besides Poisson noise, as a share of the expected count: a trailing rate
    # misses the daily cycle, and previous days differ from each other
    trailing_error: float = 0.15
    days_error: float = 0.10
    share_window: int = 30
    share_min_total: int = 30
    share_min_hits: int = 10
    # absolute jump in share (over the baseline) per kind
    duplicate_jump: float = 0.10
    missing_jump: float = 0.20
    consent_jump: float = 0.20
    rejection_jump: float = 0.10
    new_code_window: int = 15
    new_code_min: int = 3
    new_code_quiet: int = 30  # a new code's anomaly clears after this long without it
    new_code_history: int = 60  # minutes of history a track needs before a code is "new"
    clear_minutes: int = 15
    # an anomaly is judged against the baseline of its opening for this long; after that
    # the level it has held is taken as the new normal (so a deliberate change closes)
    freeze_minutes: int = DAY
    recent_limit: int = 50
    recent_seconds: float = 86400.0


DEFAULT_SETTINGS = Settings()


# pure detectors ---------------------------------------------------------------------------


def drop_check(observed: float, expected: float, variance: float, s: Settings) -> Verdict:
    """A volume drop: far fewer events than expected, beyond what noise explains."""
    if expected < s.min_expected:
        return "clear"
    spread = math.sqrt(max(variance, expected, 1.0))
    if observed <= s.drop_ratio * expected and (expected - observed) / spread >= s.z:
        return "flag"
    if observed >= s.recover_ratio * expected:
        return "clear"
    return "hold"


def share_check(
    hits: int, total: int, base_hits: int, base_total: int, jump: float, s: Settings
) -> Verdict:
    """A share (duplicates, missing key, no consent, rejections) jumped over its baseline:
    by at least ``jump`` absolute, to at least twice the baseline, and by ``s.z`` standard
    errors of the two proportions."""
    if total < s.share_min_total or base_total < s.share_min_total:
        return "clear"
    share, base = hits / total, base_hits / base_total
    if share <= base + jump / 2:
        return "clear"
    p = min(max(base, 0.005), 0.995)
    error = math.sqrt(p * (1 - p) * (1 / total + 1 / base_total))
    if (
        hits >= s.share_min_hits
        and share >= base + jump
        and share >= 2 * base
        and (share - base) / error >= s.z
    ):
        return "flag"
    return "hold"


def new_code_check(
    first_seen: int,
    recent: int,
    quiet: int,
    history_from: int,
    end: int,
    is_open: bool,
    s: Settings,
) -> Verdict:
    """A rejection code never seen before in the history: ``recent`` occurrences in the last
    ``new_code_window`` minutes, ``quiet`` in the last ``new_code_quiet`` minutes."""
    if is_open:
        return "clear" if quiet == 0 else "hold"
    if (
        first_seen >= end - s.new_code_window
        and recent >= s.new_code_min
        and history_from <= end - s.new_code_window - s.new_code_history
    ):
        return "flag"
    return "clear"


def median_and_variance(counts: list[int]) -> tuple[float, float]:
    """Median, and a robust variance (scaled MAD squared) of counts on previous days."""
    middle = statistics.median(counts)
    mad = statistics.median(abs(c - middle) for c in counts) * 1.4826
    return float(middle), mad * mad


# the per-minute series --------------------------------------------------------------------


class _Ring:
    """Counts per minute for the last ``size`` minutes, in a fixed array."""

    __slots__ = ("head", "size", "values")

    def __init__(self, size: int) -> None:
        self.size = size
        self.values = array("q", bytes(8 * size))
        self.head: int | None = None  # newest minute the ring covers

    def advance(self, minute: int) -> None:
        if self.head is None:
            self.head = minute
            return
        if minute <= self.head:
            return
        if minute - self.head >= self.size:
            self.values = array("q", bytes(8 * self.size))
        else:
            for m in range(self.head + 1, minute + 1):
                self.values[m % self.size] = 0
        self.head = minute

    def set(self, minute: int, value: int) -> None:
        self.advance(minute)
        assert self.head is not None
        if minute > self.head - self.size:
            self.values[minute % self.size] = value

    def total(self, start: int, end: int) -> int:
        """Sum over minutes ``[start, end)`` (what the ring still covers of it)."""
        if self.head is None:
            return 0
        low, high = max(start, self.head - self.size + 1), min(end, self.head + 1)
        if low >= high:
            return 0
        a, b = low % self.size, high % self.size
        if a < b:
            return sum(self.values[a:b])
        return sum(self.values[a:]) + sum(self.values[:b])


def _series(outcome: str, code: str) -> tuple[str, ...]:
    """The series a stats row counts towards."""
    if outcome in ("accepted", "observed", "warning"):
        return ("delivered",)
    if outcome in ("rejected", "dead"):
        return ("rejected", "code:" + (code or "(none)"))
    if outcome == "retried":
        return ("retried",)
    if outcome == "duplicate":
        return ("duplicate",)
    if outcome == "suppressed" and code == "consent":
        return ("suppressed_consent",)
    if outcome == "key":
        return ("key:" + code,)
    if outcome == "missing":
        return ("missing:" + code,)
    if outcome == "no_consent":
        return ("no_consent",)
    return ()


class _Track:
    """What is known of one destination and canonical event."""

    MAX_CODES = 50

    def __init__(self, long_size: int, short_size: int) -> None:
        self.long_size, self.short_size = long_size, short_size
        self.series: dict[str, _Ring] = {}
        self.first_minute: int | None = None
        self.last_minute = 0
        self.codes: dict[str, list[int]] = {}  # code → [first seen, last seen] minute
        self.messages: dict[str, str] = {}

    def ring(self, name: str) -> _Ring:
        ring = self.series.get(name)
        if ring is None:
            ring = self.series[name] = _Ring(
                self.long_size if name == "delivered" else self.short_size
            )
        return ring

    def total(self, name: str, start: int, end: int) -> int:
        ring = self.series.get(name)
        return ring.total(start, end) if ring is not None else 0

    def put(self, minute: int, name: str, value: int) -> None:
        if self.first_minute is None or minute < self.first_minute:
            self.first_minute = minute
        self.last_minute = max(self.last_minute, minute)
        self.ring(name).set(minute, value)
        if name.startswith("code:"):
            code = name[5:]
            seen = self.codes.get(code)
            if seen is None:
                if len(self.codes) < self.MAX_CODES:
                    self.codes[code] = [minute, minute]
            else:
                seen[0], seen[1] = min(seen[0], minute), max(seen[1], minute)

    def advance(self, minute: int) -> None:
        for ring in self.series.values():
            ring.advance(minute)


# anomalies --------------------------------------------------------------------------------


class Anomaly(msgspec.Struct, kw_only=True):
    """One detected condition; ``subject`` is the identifier key or rejection code when the
    kind is about one."""

    kind: Kind
    destination: str
    event: str
    subject: str = ""
    opened_at: float
    detail: str
    figures: dict[str, Any] = {}
    closed_at: float | None = None
    close_detail: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.kind, self.destination, self.event, self.subject)

    def to_json(self) -> dict[str, Any]:
        document = msgspec.to_builtins(self)
        document["opened_at"] = _iso(self.opened_at)
        document["closed_at"] = _iso(self.closed_at) if self.closed_at is not None else None
        return document


class Transition(msgspec.Struct, frozen=True):
    change: Literal["opened", "closed"]
    anomaly: Anomaly


class _Finding(msgspec.Struct):
    """A detector's verdict at one evaluation, with the figures its sentence needs."""

    kind: Kind
    destination: str
    event: str
    subject: str
    verdict: Verdict
    figures: dict[str, Any]


class _Open(msgspec.Struct):
    anomaly: Anomaly
    opened_minute: int
    frozen: dict[str, Any]  # the baseline figures at the opening
    clear_since: int | None = None


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%" if share >= 0.01 or share == 0 else f"{share * 100:.1f}%"


class AnomalyMonitor:
    """Evaluates every detector once per call of ``evaluate()`` (the app calls it every
    minute, after flushing stats) and reports what opened and closed."""

    def __init__(
        self,
        loader: Loader,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        settings: Settings = DEFAULT_SETTINGS,
        notify: Callable[[Transition], None] | None = None,
    ) -> None:
        self.loader = loader
        self.metrics = metrics
        self.clock = clock
        self.settings = settings
        self.notify = notify
        s = settings
        longest = max(s.volume_windows)
        self._long = s.history_days * DAY + longest + 5
        self._short = max(s.trailing_minutes + max(longest, s.share_window), s.new_code_quiet) + 5
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._open: dict[tuple[str, str, str, str], _Open] = {}
        self._recent: deque[Anomaly] = deque(maxlen=s.recent_limit)
        self._loaded_until: int | None = None  # minutes before this one are loaded
        self._started: int | None = None  # first evaluated minute: no window before it counts

    # loading ------------------------------------------------------------------------------

    async def _load(self, end: int) -> None:
        """Bring the series up to minute ``end`` (exclusive): the whole history the first
        time (in chunks), then the minutes since the last call (the last one again, in case
        it was flushed after being read)."""
        if self._loaded_until is None:
            start = end - self._long
        else:
            start = max(end - self._long, self._loaded_until - 2)
        chunk = 120  # minutes per read: the loop is never held long by one batch of rows
        for low in range(start, end, chunk):
            high = min(end, low + chunk)
            rows = await self.loader(low * 60.0, high * 60.0 - 1.0)
            self._ingest(rows, low, high)
        self._loaded_until = end
        for track in self._tracks.values():
            track.advance(end - 1)
        horizon = end - self._long
        for key in [k for k, t in self._tracks.items() if t.last_minute < horizon]:
            del self._tracks[key]

    def _ingest(self, rows: Iterable[tuple], low: int, high: int) -> None:
        sums: dict[tuple[str, str], dict[tuple[int, str], int]] = {}
        for row in rows:
            minute, destination, event, outcome, code, count = row[:6]
            if not low <= minute < high:
                continue
            names = _series(outcome, code)
            if not names:
                continue
            track_sums = sums.setdefault((destination, event), {})
            for name in names:
                track_sums[(minute, name)] = track_sums.get((minute, name), 0) + int(count)
            if len(row) > 7 and row[7] and outcome in ("rejected", "dead"):
                track = self._track(destination, event)
                track.messages[code or "(none)"] = str(row[7])
        for key, values in sums.items():
            track = self._track(*key)
            for (minute, name), value in sorted(values.items()):
                track.put(minute, name, value)

    def _track(self, destination: str, event: str) -> _Track:
        track = self._tracks.get((destination, event))
        if track is None:
            track = self._tracks[(destination, event)] = _Track(self._long, self._short)
        return track

    # evaluation ---------------------------------------------------------------------------

    async def evaluate(self) -> list[Transition]:
        """Load what is new, run every detector at the last complete minute, apply the
        hysteresis; returns the transitions (already logged, counted and notified)."""
        end = int(self.clock() // 60)  # the current minute is incomplete: judge up to it
        if self._started is None:
            self._started = end
        await self._load(end)
        findings: list[_Finding] = []
        for (destination, event), track in self._tracks.items():
            findings.extend(self._volume(destination, event, track, end))
            findings.extend(self._shares(destination, event, track, end))
            findings.extend(self._codes(destination, event, track, end))
        transitions = self._apply(findings, end)
        for transition in transitions:
            self._announce(transition)
        return transitions

    def _frozen(self, key: tuple[str, str, str, str], end: int) -> dict[str, Any] | None:
        """The baseline an open anomaly is judged against, while it is still held."""
        state = self._open.get(key)
        if state is None or end - state.opened_minute >= self.settings.freeze_minutes:
            return None
        return state.frozen

    def _volume(self, destination: str, event: str, track: _Track, end: int) -> list[_Finding]:
        s = self.settings
        assert self._started is not None
        key: tuple[str, str, str, str] = ("volume_drop", destination, event, "")
        frozen = self._frozen(key, end)
        verdicts: list[tuple[Verdict, dict[str, Any]]] = []
        for window in s.volume_windows:
            if end - window < self._started and key not in self._open:
                continue  # the daemon was not up for all of this window
            baseline = self._volume_baseline(track, end, window, frozen)
            if baseline is None:
                continue
            observed = track.total("delivered", end - window, end)
            verdict = drop_check(observed, baseline["expected"], baseline["variance"], s)
            since = end - window
            verdicts.append(
                (
                    verdict,
                    baseline
                    | {
                        "window_minutes": window,
                        "delivered": observed,
                        "rejected": track.total("rejected", since, end),
                        "retried": track.total("retried", since, end),
                        "suppressed_consent": track.total("suppressed_consent", since, end),
                    },
                )
            )
        if not verdicts:
            return []
        flagged = [figures for verdict, figures in verdicts if verdict == "flag"]
        if flagged:
            verdict: Verdict = "flag"
            figures = flagged[-1]  # the longest window that flags tells the fullest story
        elif all(verdict == "clear" for verdict, _ in verdicts):
            verdict, figures = "clear", verdicts[0][1]
        else:
            verdict, figures = "hold", verdicts[0][1]
        return [_Finding("volume_drop", destination, event, "", verdict, figures)]

    def _volume_baseline(
        self, track: _Track, end: int, window: int, frozen: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Expected events in ``[end - window, end)`` and their variance: the same window
        on previous days when enough days exist, else the trailing rate (the one at the
        opening while an anomaly is held)."""
        s = self.settings
        first = track.first_minute
        assert first is not None
        days = [d for d in range(1, s.history_days + 1) if end - d * DAY - window >= first]
        if len(days) >= s.min_history_days:
            counts = [track.total("delivered", end - d * DAY - window, end - d * DAY) for d in days]
            expected, spread = median_and_variance(counts)
            variance = max(spread, expected) + (s.days_error * expected) ** 2
            how = f"median of the same {window} min on the previous {len(days)} days"
            return {"expected": round(expected, 1), "variance": variance, "baseline": how}
        if frozen is not None and "rate" in frozen:
            rate, covered = frozen["rate"], frozen["covered"]
        else:
            stop = end - window
            start = max(stop - s.trailing_minutes, first)
            covered = stop - start
            if covered < 2 * window:
                return None
            rate = track.total("delivered", start, stop) / covered
        expected = rate * window
        span = f"{covered / 60:.0f} h" if covered >= 60 else f"{covered} min"
        return {
            "expected": round(expected, 1),
            "variance": expected + expected * window / covered + (s.trailing_error * expected) ** 2,
            "baseline": f"rate over the {span} before",
            "rate": rate,
            "covered": covered,
        }

    def _shares(self, destination: str, event: str, track: _Track, end: int) -> list[_Finding]:
        s = self.settings
        window = s.share_window
        found: list[_Finding] = []

        def check(kind: Kind, subject: str, hits_of, total_of, jump: float) -> None:
            key = (kind, destination, event, subject)
            hits, total = hits_of(end - window, end), total_of(end - window, end)
            if key not in self._open and (
                total < s.share_min_total or hits < s.share_min_hits or hits / total < jump
            ):
                return  # cannot flag: no need for the baseline
            frozen = self._frozen(key, end)
            if frozen is not None:
                base_hits, base_total = frozen["baseline_hits"], frozen["baseline_total"]
            else:
                stop = end - window
                base_hits = hits_of(stop - s.trailing_minutes, stop)
                base_total = total_of(stop - s.trailing_minutes, stop)
            verdict = share_check(hits, total, base_hits, base_total, jump, s)
            figures = {
                "window_minutes": window,
                "hits": hits,
                "total": total,
                "share": round(hits / total, 4) if total else 0.0,
                "baseline_share": round(base_hits / base_total, 4) if base_total else 0.0,
                "baseline_hits": base_hits,
                "baseline_total": base_total,
            }
            found.append(_Finding(kind, destination, event, subject, verdict, figures))

        def delivered_and_rejected(a: int, b: int) -> int:
            return track.total("delivered", a, b) + track.total("rejected", a, b)

        check(
            "duplicate_spike",
            "",
            lambda a, b: track.total("duplicate", a, b),
            lambda a, b: track.total("duplicate", a, b) + delivered_and_rejected(a, b),
            s.duplicate_jump,
        )
        check(
            "rejection_rate",
            "",
            lambda a, b: track.total("rejected", a, b),
            delivered_and_rejected,
            s.rejection_jump,
        )
        check(
            "missing_consent",
            "",
            lambda a, b: track.total("no_consent", a, b),
            lambda a, b: max(
                delivered_and_rejected(a, b) + track.total("suppressed_consent", a, b),
                track.total("no_consent", a, b),
            ),
            s.consent_jump,
        )
        for name in [n for n in track.series if n.startswith("missing:")]:
            key_name = name[8:]
            check(
                "missing_identifier",
                key_name,
                lambda a, b, n=name: track.total(n, a, b),
                lambda a, b, n=name, k=key_name: (
                    track.total(n, a, b) + track.total("key:" + k, a, b)
                ),
                s.missing_jump,
            )
        return found

    def _codes(self, destination: str, event: str, track: _Track, end: int) -> list[_Finding]:
        s = self.settings
        assert track.first_minute is not None
        found: list[_Finding] = []
        for code, (first, last) in list(track.codes.items()):
            key = ("new_rejection_code", destination, event, code)
            is_open = key in self._open
            if not is_open and first < end - s.new_code_window:
                if last < end - self._long:
                    del track.codes[code]  # forgotten: it would be new again
                continue
            name = "code:" + code
            recent = track.total(name, end - s.new_code_window, end)
            quiet = track.total(name, end - s.new_code_quiet, end)
            verdict = new_code_check(first, recent, quiet, track.first_minute, end, is_open, s)
            if verdict == "clear" and not is_open:
                continue
            figures = {
                "window_minutes": s.new_code_window,
                "count": recent,
                "rejected": track.total("rejected", end - s.new_code_window, end),
                "message": track.messages.get(code, ""),
                "history_days": s.history_days,
            }
            found.append(_Finding("new_rejection_code", destination, event, code, verdict, figures))
        return found

    # state --------------------------------------------------------------------------------

    def _apply(self, findings: list[_Finding], end: int) -> list[Transition]:
        s = self.settings
        now = self.clock()
        transitions: list[Transition] = []
        seen: set[tuple[str, str, str, str]] = set()
        for finding in findings:
            key = (finding.kind, finding.destination, finding.event, finding.subject)
            seen.add(key)
            state = self._open.get(key)
            if finding.verdict == "flag":
                if state is None:
                    anomaly = Anomaly(
                        kind=finding.kind,
                        destination=finding.destination,
                        event=finding.event,
                        subject=finding.subject,
                        opened_at=now,
                        detail=describe(
                            finding.kind,
                            finding.destination,
                            finding.event,
                            finding.subject,
                            finding.figures,
                        ),
                        figures=finding.figures,
                    )
                    frozen = {
                        k: finding.figures[k]
                        for k in ("rate", "covered", "baseline_hits", "baseline_total")
                        if k in finding.figures
                    }
                    self._open[key] = _Open(anomaly, end, frozen)
                    transitions.append(Transition("opened", anomaly))
                else:
                    state.clear_since = None
            elif state is not None:
                if finding.verdict == "hold":
                    state.clear_since = None
                else:
                    if state.clear_since is None:
                        state.clear_since = end
                    if end - state.clear_since + 1 >= s.clear_minutes:
                        adapted = end - state.opened_minute >= s.freeze_minutes
                        transitions.append(self._close(key, now, finding.figures, adapted))
        for key in [k for k in self._open if k not in seen]:  # the track went away
            state = self._open[key]
            if state.clear_since is None:
                state.clear_since = end
            if end - state.clear_since + 1 >= s.clear_minutes:
                transitions.append(self._close(key, now, {}))
        return transitions

    def _close(
        self, key: tuple[str, str, str, str], now: float, figures: dict, adapted: bool = False
    ) -> Transition:
        anomaly = self._open.pop(key).anomaly
        anomaly.closed_at = now
        anomaly.close_detail = describe_close(
            anomaly, figures, self.settings.clear_minutes, adapted
        )
        self._recent.appendleft(anomaly)
        return Transition("closed", anomaly)

    def _announce(self, transition: Transition) -> None:
        anomaly = transition.anomaly
        fields = {
            "kind": anomaly.kind,
            "destination": anomaly.destination,
            "event": anomaly.event,
            "subject": anomaly.subject,
            "detail": anomaly.detail if transition.change == "opened" else anomaly.close_detail,
        }
        if transition.change == "opened":
            log.warning("anomaly opened", extra={"fields": fields})
        else:
            log.info("anomaly closed", extra={"fields": fields})
        if self.metrics is not None:
            count = sum(
                1 for k in self._open if k[0] == anomaly.kind and k[1] == anomaly.destination
            )
            self.metrics.anomalies_active.labels(anomaly.destination, anomaly.kind).set(count)
        if self.notify is not None:
            try:
                self.notify(transition)
            except Exception:  # an alert channel must never stop detection
                log.exception("anomaly notification failed")

    # views --------------------------------------------------------------------------------

    @property
    def active(self) -> list[Anomaly]:
        return sorted((state.anomaly for state in self._open.values()), key=lambda a: a.opened_at)

    @property
    def recent(self) -> list[Anomaly]:
        """Closed within ``recent_seconds`` (newest first)."""
        horizon = self.clock() - self.settings.recent_seconds
        return [a for a in self._recent if a.closed_at is not None and a.closed_at >= horizon]

    def snapshot(self) -> dict[str, Any]:
        """``GET /v1/admin/anomalies``."""
        return {
            "active": [a.to_json() for a in self.active],
            "recent": [a.to_json() for a in self.recent],
        }


# sentences --------------------------------------------------------------------------------


def describe(kind: Kind, destination: str, event: str, subject: str, f: dict[str, Any]) -> str:
    """What opened, with the figures, and where to look."""
    where = f"{event} → {destination}"
    window = f.get("window_minutes", 0)
    if kind == "volume_drop":
        extra = []
        if f.get("rejected"):
            extra.append(f"{f['rejected']} were rejected")
        if f.get("retried"):
            extra.append(f"{f['retried']} deliveries are waiting to be retried")
        if f.get("suppressed_consent"):
            extra.append(f"{f['suppressed_consent']} were suppressed for missing consent")
        hint = (
            "; in the same time " + ", ".join(extra) + "."
            if extra
            else ". Check that the source still sends this event (tag, webhook or app release)."
        )
        return (
            f"Volume drop: {where}: {f['delivered']} delivered in the last {window} min,"
            f" expected about {f['expected']:.0f} ({f['baseline']}){hint}"
        )
    share, base = _pct(f.get("share", 0.0)), _pct(f.get("baseline_share", 0.0))
    counts = f"{f.get('hits', 0)} of {f.get('total', 0)}"
    if kind == "duplicate_spike":
        return (
            f"Duplicate spike: {where}: {share} of events in the last {window} min were"
            f" duplicates of a conversion already delivered ({counts}), against {base} before."
            " A source may be sending each conversion twice (a second tag, or browser and server"
            " both reporting); duplicates are not delivered, but check the source."
        )
    if kind == "missing_identifier":
        return (
            f"Missing identifier: {where}: {share} of events in the last {window} min lack"
            f" {subject} ({counts}), against {base} before, so fewer of them will match."
            f" Check that the source still sends the field behind {subject}."
        )
    if kind == "missing_consent":
        return (
            f"Missing consent: {where}: {share} of events in the last {window} min stated no"
            f" consent ({counts}), against {base} before. The consent banner or its mapping"
            " (consent.purposes) may have changed."
        )
    if kind == "rejection_rate":
        return (
            f"Rejection rate: {where}: {share} of events in the last {window} min were"
            f" rejected by the platform ({counts}), against {base} before. See"
            " `tracklayer report` or the live debugger for the platform's messages."
        )
    message = f.get("message") or ""
    said = f': "{message}"' if message else " (the live debugger shows the platform's message)"
    return (
        f"New rejection code: {where}: {f.get('count', 0)} rejections with code {subject} in"
        f" the last {window} min, a code not seen in the previous {f.get('history_days', 7)}"
        f" days{said}."
    )


def describe_close(
    anomaly: Anomaly, f: dict[str, Any], clear_minutes: int, adapted: bool = False
) -> str:
    where = f"{anomaly.event} → {anomaly.destination}"
    lasted = max(0.0, (anomaly.closed_at or anomaly.opened_at) - anomaly.opened_at) / 60
    if anomaly.kind == "volume_drop" and f:
        now = (
            f"{f['delivered']} delivered in the last {f['window_minutes']} min,"
            f" expected about {f['expected']:.0f}"
        )
    elif anomaly.kind == "new_rejection_code":
        now = "no rejection with that code since"
    elif f:
        now = (
            f"{_pct(f.get('share', 0.0))} in the last {f.get('window_minutes', 0)} min,"
            f" against {_pct(f.get('baseline_share', 0.0))} before"
        )
    else:
        now = "no recent traffic to judge"
    label = anomaly.kind.replace("_", " ")
    subject = f" ({anomaly.subject})" if anomaly.subject else ""
    if adapted:
        now += "; the level it has held for a day is now taken as normal"
    return (
        f"Cleared: {label}{subject} for {where} after {lasted:.0f} min: {now};"
        f" normal for {clear_minutes} min."
    )
