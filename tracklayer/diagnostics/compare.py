"""``tracklayer compare``: parallel validation against the old route before cut-over.

The baseline is the old route's export: Segment-style NDJSON (one message per line) or a CSV
with ``event,order_id,value,currency,timestamp``. Our side is the canonical events stored
over the same span. Both sides map names through the same canonical table and are keyed the
way business dedup keys them (canonical name + order id, else + the event id / messageId),
so each conversion counts once per side. Per event: counts, value by currency, keys found on
one side only, and matched conversions whose value or currency differ. Exit 1 when a count
or a value differs by more than the tolerance, so a cut-over can be gated on it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import aiosqlite
import msgspec

from tracklayer.config import Config
from tracklayer.model import Event
from tracklayer.pipeline.names import NameMap
from tracklayer.pipeline.timestamps import parse_iso

CSV_COLUMNS = ("event", "order_id", "value", "currency", "timestamp")
EXAMPLES = 5  # keys shown per list
CLOCK_SLACK = 86400.0  # events are read by receipt time this far around the span

_decode_event = msgspec.msgpack.Decoder(Event).decode


class BaselineError(ValueError):
    """The baseline cannot be read; ``str()`` says where and why."""


class Conversion(msgspec.Struct, frozen=True):
    """One row of either side, reduced to what is compared."""

    name: str  # canonical
    key: str  # dedup key; "" when the row carries no id to match on
    value: float | None
    currency: str
    timestamp: float


class Baseline(msgspec.Struct):
    conversions: list[Conversion]
    skipped: int = 0  # lines that are not conversions (identify, page, ...) or have no time
    problems: list[str] = []  # lines that could not be read (first few)


# reading both sides -----------------------------------------------------------------------


def _key(name: str, order_id: object, event_id: object) -> str:
    for part in (order_id, event_id):
        if part is not None and part != "":
            text = format(part, "g") if isinstance(part, float) else str(part)
            return f"{name}:{text}"
    return ""


def _amount(properties: dict[str, Any]) -> tuple[float | None, str]:
    """Value and currency by the rule ``Event.order_value`` applies on our side."""
    for field in ("value", "revenue", "total"):
        amount = properties.get(field)
        if isinstance(amount, str):
            try:
                amount = float(amount)
            except ValueError:
                continue
        if isinstance(amount, (int, float)) and not isinstance(amount, bool):
            if not math.isfinite(amount):
                continue
            currency = properties.get("currency")
            code = currency.strip().upper() if isinstance(currency, str) else ""
            return float(amount), code or "USD"
    return None, ""


def _time(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / (1000 if value > 1e11 else 1)  # epoch seconds or milliseconds
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return _time(float(value))
    return parse_iso(value)


def parse_baseline(text: str, names: NameMap) -> Baseline:
    """The old route's export, NDJSON or CSV (told apart by the first character)."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise BaselineError("the baseline is empty")
    if stripped[0] in "{[":
        return _parse_ndjson(stripped.splitlines(), names)
    return _parse_csv(stripped, names)


def _parse_ndjson(lines: Iterable[str], names: NameMap) -> Baseline:
    baseline = Baseline([])
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError as problem:
            if len(baseline.problems) < EXAMPLES:
                baseline.problems.append(f"line {number}: not JSON ({problem.msg})")
            baseline.skipped += 1
            continue
        messages = message.get("batch") if isinstance(message, dict) else None
        for item in messages if isinstance(messages, list) else [message]:
            conversion = _from_segment(item, names)
            if conversion is None:
                baseline.skipped += 1
            else:
                baseline.conversions.append(conversion)
    return baseline


def _from_segment(message: object, names: NameMap) -> Conversion | None:
    if not isinstance(message, dict):
        return None
    event = message.get("event")
    if message.get("type", "track") != "track" or not isinstance(event, str) or not event:
        return None
    properties = message.get("properties") if isinstance(message.get("properties"), dict) else {}
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    moment = _time(message.get("timestamp") or message.get("originalTimestamp"))
    if moment is None:
        moment = _time(message.get("receivedAt"))
    if moment is None:
        return None
    name = names.canonical(event)
    explicit = properties.get("event_id") or context.get("event_id")
    key = _key(name, properties.get("order_id"), explicit or message.get("messageId"))
    value, currency = _amount(properties)
    return Conversion(name, key, value, currency, moment)


def _parse_csv(text: str, names: NameMap) -> Baseline:
    reader = csv.DictReader(io.StringIO(text))
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    missing = [c for c in CSV_COLUMNS if c not in columns]
    if missing:
        raise BaselineError(
            f"CSV header lacks {', '.join(missing)} (expected {','.join(CSV_COLUMNS)})"
        )
    baseline = Baseline([])
    for number, row in enumerate(reader, 2):
        cell = {c: (row.get(columns[c]) or "").strip() for c in CSV_COLUMNS}
        moment = _time(cell["timestamp"])
        if not cell["event"] or moment is None:
            if len(baseline.problems) < EXAMPLES:
                baseline.problems.append(f"line {number}: no event name or unreadable timestamp")
            baseline.skipped += 1
            continue
        name = names.canonical(cell["event"])
        value, currency = _amount({"value": cell["value"], "currency": cell["currency"]})
        baseline.conversions.append(
            Conversion(name, _key(name, cell["order_id"], None), value, currency, moment)
        )
    return baseline


def our_conversion(event: Event) -> Conversion:
    value, currency = event.order_value()
    key = _key(event.name, event.order_id, event.event_id)
    return Conversion(event.name, key, value, currency, event.timestamp)


async def load_ours(
    connection: aiosqlite.Connection, since: float, until: float
) -> tuple[list[Conversion], float | None]:
    """Stored canonical events that happened in ``[since, until]``, and the receipt time of
    the oldest event still stored (retention may have removed earlier ones)."""
    conversions: list[Conversion] = []
    async with connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
    ) as cursor:
        if await cursor.fetchone() is None:  # the daemon never ran on this storage.path
            return conversions, None
    async with connection.execute(
        "SELECT body FROM events WHERE received_at >= ? AND received_at <= ? ORDER BY id",
        (since - CLOCK_SLACK, until + CLOCK_SLACK),
    ) as cursor:
        async for (body,) in cursor:
            event = _decode_event(body)
            if since <= event.timestamp <= until:
                conversions.append(our_conversion(event))
    async with connection.execute("SELECT MIN(received_at) FROM events") as cursor:
        row = await cursor.fetchone()
    return conversions, (row[0] if row else None)


# comparing --------------------------------------------------------------------------------


class Side(msgspec.Struct):
    """One side's conversions of one event, each key counted once."""

    rows: int = 0
    keyed: dict[str, Conversion] = {}
    unkeyed: list[Conversion] = []

    @property
    def unique(self) -> int:
        return len(self.keyed) + len(self.unkeyed)

    @property
    def duplicates(self) -> int:
        return self.rows - self.unique

    def values(self) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for conversion in [*self.keyed.values(), *self.unkeyed]:
            if conversion.value is not None:
                totals[conversion.currency] += conversion.value
        return dict(totals)


def _sides(conversions: Iterable[Conversion]) -> dict[str, Side]:
    sides: dict[str, Side] = {}
    for conversion in conversions:
        side = sides.get(conversion.name)
        if side is None:
            side = sides[conversion.name] = Side(keyed={}, unkeyed=[])
        side.rows += 1
        if not conversion.key:
            side.unkeyed.append(conversion)
        else:
            side.keyed.setdefault(conversion.key, conversion)  # the first one counts
    return sides


def relative(ours: float, theirs: float) -> float:
    """|ours − theirs| relative to the baseline (1.0 when only our side has any)."""
    if theirs == 0:
        return 0.0 if ours == 0 else 1.0
    return abs(ours - theirs) / abs(theirs)


class EventComparison(msgspec.Struct):
    name: str
    baseline: Side
    ours: Side
    only_baseline: list[str]
    only_ours: list[str]
    value_differs: list[tuple[str, float | None, float | None, str]]  # key, theirs, ours, cur
    currency_differs: list[tuple[str, str, str]]  # key, theirs, ours
    count_difference: float
    value_difference: dict[str, float]  # currency → relative difference
    failures: list[str]


class Comparison(msgspec.Struct):
    since: float
    until: float
    tolerance: float
    events: list[EventComparison]
    ours_only_events: dict[str, int]  # events in our store the baseline does not cover
    notes: list[str] = []

    @property
    def failures(self) -> list[str]:
        return [failure for event in self.events for failure in event.failures]


def compare(
    baseline: list[Conversion],
    ours: list[Conversion],
    tolerance: float,
    since: float,
    until: float,
) -> Comparison:
    """Both sides per canonical event; only events the baseline has are judged."""
    theirs_by_name, ours_by_name = _sides(baseline), _sides(ours)
    events = []
    for name in sorted(theirs_by_name):
        theirs = theirs_by_name[name]
        mine = ours_by_name.get(name) or Side(keyed={}, unkeyed=[])
        only_baseline = sorted(theirs.keyed.keys() - mine.keyed.keys())
        only_ours = sorted(mine.keyed.keys() - theirs.keyed.keys())
        value_differs, currency_differs = [], []
        for key in sorted(theirs.keyed.keys() & mine.keyed.keys()):
            a, b = theirs.keyed[key], mine.keyed[key]
            if a.currency != b.currency and a.value is not None and b.value is not None:
                currency_differs.append((key, a.currency, b.currency))
            elif (a.value is None) != (b.value is None) or (
                a.value is not None
                and b.value is not None
                and abs(a.value - b.value) > 0.005 + 1e-9 * abs(a.value)
            ):
                value_differs.append((key, a.value, b.value, a.currency or b.currency))
        count_difference = relative(mine.unique, theirs.unique)
        their_values, my_values = theirs.values(), mine.values()
        value_difference = {
            currency: relative(my_values.get(currency, 0.0), their_values.get(currency, 0.0))
            for currency in sorted(their_values.keys() | my_values.keys())
        }
        failures = []
        if count_difference > tolerance:
            failures.append(
                f"{name}: count differs by {count_difference:.1%}"
                f" ({mine.unique} against {theirs.unique})"
            )
        for currency, difference in value_difference.items():
            if difference > tolerance:
                failures.append(
                    f"{name}: {currency} value differs by {difference:.1%}"
                    f" ({my_values.get(currency, 0.0):.2f} against"
                    f" {their_values.get(currency, 0.0):.2f})"
                )
        events.append(
            EventComparison(
                name,
                theirs,
                mine,
                only_baseline,
                only_ours,
                value_differs,
                currency_differs,
                count_difference,
                value_difference,
                failures,
            )
        )
    ours_only = {
        name: side.unique
        for name, side in sorted(ours_by_name.items())
        if name not in theirs_by_name
    }
    return Comparison(since, until, tolerance, events, ours_only)


# output -----------------------------------------------------------------------------------


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _examples(keys: list[str]) -> str:
    shown = ", ".join(keys[:EXAMPLES])
    return shown + (f", … ({len(keys) - EXAMPLES} more)" if len(keys) > EXAMPLES else "")


def _money(value: float | None) -> str:
    return "no value" if value is None else f"{value:.2f}"


def render(comparison: Comparison, source: str = "baseline") -> str:
    tolerance = comparison.tolerance
    lines = [
        f"TrackLayer compare against {source}: {_iso(comparison.since)} → "
        f"{_iso(comparison.until)}, tolerance {tolerance:.1%}",
        *(f"  note: {note}" for note in comparison.notes),
        "",
    ]
    for event in comparison.events:
        theirs, ours = event.baseline, event.ours
        verdict = "ok" if event.count_difference <= tolerance else "DIFFERS"
        signed = (ours.unique - theirs.unique) / theirs.unique if theirs.unique else 1.0
        lines.append(
            f"{event.name}: baseline {theirs.unique}, tracklayer {ours.unique}"
            f" ({signed:+.1%}, {verdict})"
        )
        if theirs.duplicates:
            lines.append(f"  baseline sent {theirs.duplicates} duplicates (same key twice)")
        if theirs.unkeyed or ours.unkeyed:
            lines.append(
                f"  without order id or event id (counted, not matched): baseline"
                f" {len(theirs.unkeyed)}, tracklayer {len(ours.unkeyed)}"
            )
        their_values, my_values = theirs.values(), ours.values()
        for currency, difference in event.value_difference.items():
            verdict = "ok" if difference <= tolerance else "DIFFERS"
            lines.append(
                f"  value {currency}: baseline {their_values.get(currency, 0.0):.2f},"
                f" tracklayer {my_values.get(currency, 0.0):.2f} ({difference:.1%}, {verdict})"
            )
        if event.only_baseline:
            lines.append(
                f"  only in baseline: {len(event.only_baseline)}: {_examples(event.only_baseline)}"
            )
        if event.only_ours:
            lines.append(
                f"  only in tracklayer: {len(event.only_ours)}: {_examples(event.only_ours)}"
            )
        if event.currency_differs:
            shown = ", ".join(
                f"{key} ({a} vs {b})" for key, a, b in event.currency_differs[:EXAMPLES]
            )
            lines.append(f"  currency differs on {len(event.currency_differs)} matched: {shown}")
        if event.value_differs:
            shown = ", ".join(
                f"{key} ({_money(a)} vs {_money(b)} {currency})"
                for key, a, b, currency in event.value_differs[:EXAMPLES]
            )
            lines.append(f"  value differs on {len(event.value_differs)} matched: {shown}")
    if comparison.ours_only_events:
        shown = ", ".join(f"{name} {count}" for name, count in comparison.ours_only_events.items())
        lines.append(f"\nnot in the baseline (not compared): {shown}")
    failures = comparison.failures
    lines.append("")
    if failures:
        lines.append(f"FAIL: {len(failures)} difference(s) beyond {tolerance:.1%}:")
        lines.extend(f"  {failure}" for failure in failures)
    else:
        lines.append(f"OK: counts and values agree within {tolerance:.1%}")
    return "\n".join(lines)


# the command ------------------------------------------------------------------------------


def _span(conversions: list[Conversion]) -> Iterator[float]:
    return (c.timestamp for c in conversions)


async def run_compare(
    config: Config, baseline_path: str, since: float | None, tolerance: float
) -> tuple[str, int]:
    """Text to print and the exit code: 0 within tolerance, 1 beyond it, 2 when the
    baseline cannot be read."""
    from tracklayer.store.database import connect

    names = NameMap(config.events.aliases)
    try:
        with open(baseline_path, encoding="utf-8-sig") as handle:
            baseline = parse_baseline(handle.read(), names)
    except OSError as problem:
        return f"{baseline_path}: cannot read: {problem.strerror}", 2
    except UnicodeDecodeError as problem:
        return f"{baseline_path}: not UTF-8 text (byte {problem.start})", 2
    except BaselineError as problem:
        return f"{baseline_path}: {problem}", 2
    conversions = baseline.conversions
    now = time.time()
    if since is not None:
        start, end = now - since, now
        conversions = [c for c in conversions if start <= c.timestamp <= end]
    elif conversions:
        start, end = min(_span(conversions)), max(_span(conversions))
    else:
        start = end = now
    if not conversions:
        return f"{baseline_path}: no conversions (track messages with a time) in the span", 2
    connection = await connect(config.storage.path, config.storage.durability)
    try:
        ours, oldest = await load_ours(connection, start, end)
    finally:
        await connection.close()
    comparison = compare(conversions, ours, tolerance, start, end)
    if baseline.skipped:
        comparison.notes.append(
            f"{baseline.skipped} baseline lines skipped (not track messages, or no time)"
        )
    comparison.notes.extend(baseline.problems)
    kept_since = now - config.storage.retention
    if oldest is None:
        comparison.notes.append("the TrackLayer store holds no events")
    elif start < kept_since and oldest > start:
        comparison.notes.append(
            f"the span starts before storage.retention keeps events (since {_iso(kept_since)});"
            f" the oldest stored was received {_iso(oldest)}: earlier conversions are missing"
            " on our side"
        )
    return render(comparison, baseline_path), 1 if comparison.failures else 0
