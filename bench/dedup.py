"""Benchmark 4, Dedup: TrackLayer's time-sliced bloom filter filled with 10 million keys.

    python bench/dedup.py [--keys 10000000] [--quick] [--readme FILE | --no-readme]

(``bench/run dedup`` calls this.) The filter is built the way the daemon builds it
(``app.py``: ``DedupRegistry(dedup.window, dedup.expected_keys, dedup.false_positive_rate)``,
whose ``TimeSlicedBloom`` has 8 slices plus one), once with the daemon's defaults
(``config.py: Dedup``) and once with ``tracklayer.yaml.example``'s ``dedup`` section, both
read from TrackLayer itself. Keys are the journal's (``store/journal.py``): per event a
message key ``m:segment:<messageId>`` and a business key ``b:meta:purchase:<order_id>``,
hashed by ``store/dedup.py``'s ``message_key`` / ``business_key`` (xxh3-128), with ids in
bench/track.lua's ``<run>-<thread>-<counter>`` form. The keys arrive evenly over one dedup
window (48 h of simulated time, starting half-way into a slice as a running daemon would), and
the lookups ask at the end of that window, when every key is still live.

What is measured, per configuration:

- memory: the bytes of the filters' bit arrays (``TimeSlicedBloom.memory_bytes``, and
  ``sys.getsizeof`` of each ``bytearray``) and this process's RSS growth while the filter was
  built, against the optimum ``m = -n ln(p) / (ln 2)^2`` bits for the n keys inserted at the
  configured p;
- speed: ``bloom.add`` and ``bloom.maybe_contains`` (hits and misses) on a timed subset,
  against a Python ``set`` of the same 128-bit digests, and TrackLayer's key hashing
  (``digest``) against the hashing floor (``xxhash.xxh3_64`` of the same keys);
- the false-positive rate of ``maybe_contains`` over keys never inserted (1 million by
  default), against the configured rate, with a 95% interval and the rate the filters' own
  fill predicts.

Inserting 10 million keys through ``bloom.add`` takes about 80 s per configuration on this
machine, too long for the time budget of two configurations. So only the first
``--rate-keys`` (1 million) go through ``bloom.add`` one by one (that is the timed insert
rate); for the rest, ``bloom.add`` still inserts the first key of every filter (so TrackLayer
itself creates the slices and the overflow filters), and the bits of the following keys are
set by numpy with TrackLayer's own probe formula (Kirsch-Mitzenmacher double hashing of the
128-bit digest, probe i at ``(low + i * high) % bits`` with each filter's own ``bits`` and
hash count), straight into TrackLayer's ``bytearray``. Before
each fill, this is checked bit for bit against ``bloom.add`` alone on a small filter that
overflows into several filters per slice. Without numpy every key goes through ``bloom.add``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import math
import os
import shlex
import sys
import time
from pathlib import Path

import xxhash
from benchlib import (
    BENCH,
    ROOT,
    CpuMeter,
    console_table,
    log,
    machine,
    update_section,
    wait_for_quiet,
)

sys.path.insert(0, str(ROOT))

from tracklayer.config import Dedup, load
from tracklayer.store.bloom import TimeSlicedBloom, digest
from tracklayer.store.dedup import DedupRegistry, as_blob, business_key, message_key

try:
    import numpy as np
except ImportError:  # every key then goes through bloom.add (slow, said in the output)
    np = None

SOURCE = "segment"  # the example config's Segment source
DESTINATION = "meta"
RUN = "d4"  # the <run> of the ids; absent keys use another run, so they were never inserted
START = 1_796_000_000.0  # simulated Unix time the window starts from (late 2026)
CHUNK = 100_000
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident memory of this process, after returning freed heap pages to the kernel (so
    the fill's temporary numpy buffers, which glibc may keep, do not count)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


# keys --------------------------------------------------------------------------------------


def key_strings(first: int, last: int, run: str = RUN) -> list[str]:
    """The scoped key strings of keys ``first..last-1`` (two per event, message key first)."""
    keys = []
    for index in range(first, last):
        event_id = f"{run}-1-{index // 2}"
        if index % 2 == 0:
            keys.append(f"m:{SOURCE}:{event_id}")
        else:
            keys.append(f"b:{DESTINATION}:purchase:{event_id}")
    return keys


def key_digests(first: int, last: int, run: str = RUN) -> list[int]:
    """The same keys as TrackLayer's journal hashes them."""
    digests = []
    for index in range(first, last):
        event_id = f"{run}-1-{index // 2}"
        if index % 2 == 0:
            digests.append(message_key(SOURCE, event_id))
        else:
            digests.append(business_key(DESTINATION, f"purchase:{event_id}"))
    return digests


def seen_at(index, keys: int, window: float):
    """When key ``index`` arrived: both keys of an event at once, events evenly over one
    window that starts half-way into a slice."""
    return START + (index // 2) * (window / math.ceil(keys / 2))


def digest_arrays(keys: int):
    """(high, low) 64-bit halves of every key's xxh3-128 digest, as numpy arrays."""
    high = np.empty(keys, dtype=np.uint64)
    low = np.empty(keys, dtype=np.uint64)
    for first in range(0, keys, CHUNK):
        last = min(keys, first + CHUNK)
        blob = b"".join(map(as_blob, key_digests(first, last)))
        halves = np.frombuffer(blob, dtype=">u8").reshape(-1, 2)
        high[first:last] = halves[:, 0]
        low[first:last] = halves[:, 1]
    return high, low


# filling -----------------------------------------------------------------------------------


def sizing(bloom: TimeSlicedBloom, target) -> tuple[int, int, int]:
    """(bits, hashes, capacity) of one filter: its own where BloomSlice keeps them (filters
    of one slice may differ), else the TimeSlicedBloom's."""
    return (
        getattr(target, "bits", bloom.bits),
        getattr(target, "hashes", bloom.hashes),
        getattr(target, "capacity", bloom.capacity),
    )


def set_bits(bloom: TimeSlicedBloom, target, high, low) -> None:
    """OR the probe bits of keys (high, low) into ``target``'s bytearray, as BloomSlice.add
    does: probe i at (low + i * high) % bits."""
    if len(high) == 0:
        return
    bits, hashes, _ = sizing(bloom, target)
    bits = np.uint64(bits)
    step = high % bits
    position = low % bits
    mark = np.zeros(len(target.array) * 8, dtype=bool)
    for _ in range(hashes):  # (low + i*high) % bits, as (previous + high % bits) % bits
        mark[position] = True
        position += step
        position %= bits
    view = np.frombuffer(target.array, dtype=np.uint8)  # writable: the filter's own memory
    np.bitwise_or(view, np.packbits(mark, bitorder="little"), out=view)


def fill(bloom: TimeSlicedBloom, high, low, times, first: int, last: int) -> None:
    """Insert keys ``first..last-1`` (``times`` non-decreasing) as ``bloom.add`` would:
    ``bloom.add`` itself inserts the first key of each run that lands in one filter, numpy
    sets the bits of the rest of the run."""
    span = bloom.span
    slices = np.floor_divide(times, span).astype(np.int64)
    index = first
    while index < last:
        key_digest = (int(high[index]) << 64) | int(low[index])
        when = float(times[index])
        slice_index = int(when // span)
        assert slice_index == int(slices[index])
        bloom.add(key_digest, when)
        target = bloom._slices[slice_index][-1]  # the filter bloom.add just wrote to
        run_end = int(np.searchsorted(slices, slice_index, side="right"))
        # the slice boundary as Python computes it, not only numpy
        assert int(float(times[run_end - 1]) // span) == slice_index
        assert run_end == len(times) or int(float(times[run_end]) // span) != slice_index
        run_end = min(last, run_end)
        end = min(run_end, index + 1 + max(0, sizing(bloom, target)[2] - target.count))
        set_bits(bloom, target, high[index + 1 : end], low[index + 1 : end])
        target.count += end - index - 1
        index = end


def state(bloom: TimeSlicedBloom) -> list:
    return [
        (index, [(bytes(b.array), b.count) for b in filters])
        for index, filters in sorted(bloom._slices.items())
    ]


def check_fill(window: float, rate: float) -> int:
    """The numpy fill gives the very same filters as bloom.add alone (several slices, several
    filters per slice); returns the keys compared."""
    keys, expected = 40_000, 8 * 600  # 600 keys per filter, about 8 filters per slice
    digests = key_digests(0, keys, run="check")
    times = [seen_at(i, keys, window) for i in range(keys)]
    plain = TimeSlicedBloom(window, expected, rate)
    for key_digest, when in zip(digests, times, strict=True):
        plain.add(key_digest, when)
    quick = TimeSlicedBloom(window, expected, rate)
    high = np.array([d >> 64 for d in digests], dtype=np.uint64)
    low = np.array([d & 0xFFFFFFFFFFFFFFFF for d in digests], dtype=np.uint64)
    fill(quick, high, low, np.array(times), 0, keys)
    if state(plain) != state(quick):
        raise SystemExit("numpy fill differs from TimeSlicedBloom.add; not measuring")
    return keys


# one configuration -------------------------------------------------------------------------


def wilson(hits: int, total: int, z: float = 1.96) -> tuple[float, float]:
    if total == 0:
        return 0.0, 1.0
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def popcount(array: bytearray) -> int:
    if np is not None and hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return int(np.bitwise_count(np.frombuffer(array, dtype=np.uint8)).sum())
    return int.from_bytes(array, "little").bit_count()


def measure(name: str, config: Dedup, args, arrays) -> dict:
    window, expected, rate = float(config.window), config.expected_keys, config.false_positive_rate
    keys = args.keys
    result = {
        "name": name,
        "window": window,
        "expected_keys": expected,
        "rate": rate,
        "keys": keys,
    }
    if np is not None:
        result["checked_keys"] = check_fill(window, rate)
    gc.collect()
    rss_before = rss_bytes()
    bloom = DedupRegistry(window, expected, rate).bloom
    result.update(
        bits=bloom.bits,
        hashes=bloom.hashes,
        capacity=bloom.capacity,
        slices_configured=round(bloom.window / bloom.span),
    )

    # timed inserts through bloom.add, chunk by chunk (digests made outside the timer)
    timed = min(keys, args.rate_keys if np is not None else keys)
    add_seconds = 0.0
    add = bloom.add
    for first in range(0, timed, CHUNK):
        last = min(timed, first + CHUNK)
        digests = key_digests(first, last)
        times = [seen_at(i, keys, window) for i in range(first, last)]
        started = time.perf_counter()
        for key_digest, when in zip(digests, times, strict=True):
            add(key_digest, when)
        add_seconds += time.perf_counter() - started
    result.update(timed_inserts=timed, add_seconds=add_seconds, add_rate=timed / add_seconds)
    del digests, times
    log(f"{name}: {timed:,} keys through bloom.add at {timed / add_seconds:,.0f}/s")

    started = time.perf_counter()
    if timed < keys:
        high, low = arrays
        times = seen_at(np.arange(keys, dtype=np.int64), keys, window)
        fill(bloom, high, low, times, timed, keys)
        del times
    result["fill_seconds"] = time.perf_counter() - started
    gc.collect()
    result["rss_growth"] = rss_bytes() - rss_before
    filters = [b for fs in bloom._slices.values() for b in fs]
    result.update(
        slices=len(bloom._slices),
        filters=len(filters),
        memory_bytes=bloom.memory_bytes,
        allocated_bytes=sum(sys.getsizeof(b.array) for b in filters),
        object_bytes=sum(sys.getsizeof(b) for b in filters),
        stored_keys=bloom.keys,
    )
    sizes = [sizing(bloom, b) for b in filters]
    fills = [popcount(b.array) / bits for b, (bits, _, _) in zip(filters, sizes, strict=True)]
    result["fill_min"], result["fill_max"] = min(fills), max(fills)
    result["predicted_rate"] = 1 - math.prod(
        1 - f**hashes for f, (_, hashes, _) in zip(fills, sizes, strict=True)
    )
    result["filter_capacity"] = sum(capacity for _, _, capacity in sizes)
    result["per_slice_max"] = max(len(fs) for fs in bloom._slices.values())
    result["filter_sizes"] = sorted({(bits, hashes) for bits, hashes, _ in sizes})
    optimum_bits = -keys * math.log(rate) / math.log(2) ** 2
    result["optimum_bytes"] = optimum_bits / 8
    result["memory_ratio"] = result["memory_bytes"] / result["optimum_bytes"]
    log(
        f"{name}: {keys:,} keys in {result['filters']} filters, "
        f"{result['memory_bytes'] / 2**20:,.1f} MiB ({result['memory_ratio']:.2f}x optimum)"
    )

    now = START + window  # the end of the window: every key inserted is still live
    contains = bloom.maybe_contains
    # hits: inserted keys spread over the whole window
    stride = max(1, keys // args.hit_keys)
    sample = list(range(0, keys, stride))[: args.hit_keys]
    hit_digests = [key_digests(i, i + 1)[0] for i in sample]
    started = time.perf_counter()
    found = sum(1 for d in hit_digests if contains(d, now))
    hit_seconds = time.perf_counter() - started
    result.update(
        hit_lookups=len(hit_digests),
        hit_rate=len(hit_digests) / hit_seconds,
        false_negatives=len(hit_digests) - found,
    )
    # misses: keys of another run, never inserted
    positives = 0
    miss_seconds = 0.0
    for first in range(0, args.fp_keys, CHUNK):
        digests = key_digests(first, min(args.fp_keys, first + CHUNK), run=RUN + "x")
        started = time.perf_counter()
        positives += sum(1 for d in digests if contains(d, now))
        miss_seconds += time.perf_counter() - started
    low_ci, high_ci = wilson(positives, args.fp_keys)
    result.update(
        fp_keys=args.fp_keys,
        false_positives=positives,
        fp_rate=positives / args.fp_keys,
        fp_low=low_ci,
        fp_high=high_ci,
        miss_rate=args.fp_keys / miss_seconds,
    )
    log(
        f"{name}: false positives {positives:,} of {args.fp_keys:,} "
        f"({positives / args.fp_keys:.4%}, configured {rate:.4%}); "
        f"lookups hit {result['hit_rate']:,.0f}/s, miss {result['miss_rate']:,.0f}/s"
    )
    del bloom, filters, contains, add
    gc.collect()
    return result


# baselines ---------------------------------------------------------------------------------


def baselines(args) -> dict:
    """The floors, on the same keys: hashing them, and a Python set of their digests."""
    count = min(args.keys, args.rate_keys)
    keys = key_strings(0, count)
    xxh3_64 = xxhash.xxh3_64_intdigest
    started = time.perf_counter()
    for key in keys:
        xxh3_64(key.encode())
    floor_seconds = time.perf_counter() - started
    started = time.perf_counter()
    digests = [digest(key) for key in keys]
    digest_seconds = time.perf_counter() - started
    del keys
    seen: set[int] = set()
    add = seen.add
    started = time.perf_counter()
    for key_digest in digests:
        add(key_digest)
    set_add_seconds = time.perf_counter() - started
    set_bytes = sys.getsizeof(seen) + sum(sys.getsizeof(d) for d in digests)
    stride = max(1, count // args.hit_keys)
    hits = digests[::stride][: args.hit_keys]
    started = time.perf_counter()
    found = sum(1 for d in hits if d in seen)
    set_hit_seconds = time.perf_counter() - started
    assert found == len(hits)
    misses = key_digests(0, min(args.fp_keys, count), run=RUN + "x")
    started = time.perf_counter()
    found = sum(1 for d in misses if d in seen)
    set_miss_seconds = time.perf_counter() - started
    assert found == 0
    result = {
        "keys": count,
        "xxh3_64_rate": count / floor_seconds,
        "digest_rate": count / digest_seconds,
        "set_add_rate": count / set_add_seconds,
        "set_hit_rate": len(hits) / set_hit_seconds,
        "set_miss_rate": len(misses) / set_miss_seconds,
        "set_bytes_per_key": set_bytes / count,
    }
    log(
        f"baselines: xxh3_64 {result['xxh3_64_rate']:,.0f}/s, TrackLayer digest "
        f"{result['digest_rate']:,.0f}/s, set.add {result['set_add_rate']:,.0f}/s"
    )
    return result


# output ------------------------------------------------------------------------------------


def per_s(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:,.2f} M/s"
    return f"{rate / 1e3:,.0f} k/s"


def mib(count: float) -> str:
    return f"{count / 2**20:,.1f} MiB"


def describe(result: dict) -> str:
    return (
        f"{result['name']} (expected_keys {result['expected_keys']:,}, "
        f"p {result['rate']:g}, window {result['window'] / 3600:g} h; "
        f"{result['keys'] / result['expected_keys']:.2g}x loaded)"
    )


def why_memory(result: dict) -> str:
    """The memory ratio from TrackLayer's sizing: how many keys the allocated filters were
    sized for, and how many bits per key of that capacity they spend."""
    capacity = result["filter_capacity"] / result["keys"]
    per_key = 8 * result["memory_bytes"] / result["filter_capacity"]
    optimum = -math.log(result["rate"]) / math.log(2) ** 2
    return (
        f"{result['name']}: {result['filters']} filters sized for "
        f"{result['filter_capacity']:,} keys ({capacity:.3f}x the keys inserted; up to "
        f"{result['per_slice_max']} per slice) at {per_key:.1f} bits per key of capacity "
        f"({per_key / optimum:.3f}x the {optimum:.1f} that p needs; the first filter of a "
        f"slice is sized for p/{result['slices_configured'] + 1}): "
        f"{capacity * per_key / optimum:.2f}x"
    )


def speed_rows(result: dict, base: dict) -> list[tuple[str, str, str, str]]:
    full = 1 / (1 / base["digest_rate"] + 1 / result["add_rate"])
    return [
        (
            "insert: `bloom.add(digest, seen_at)`",
            per_s(result["add_rate"]),
            f"{per_s(base['set_add_rate'])} (`set.add` of the same digests)",
            f"{result['add_rate'] / base['set_add_rate']:.3f}x",
        ),
        (
            "insert with hashing: `digest(key)` + `bloom.add`",
            per_s(full),
            f"{per_s(base['xxh3_64_rate'])} (hashing floor: `xxh3_64(key.encode())`)",
            f"{full / base['xxh3_64_rate']:.3f}x",
        ),
        (
            "lookup, key present: `bloom.maybe_contains`",
            per_s(result["hit_rate"]),
            f"{per_s(base['set_hit_rate'])} (`digest in set`)",
            f"{result['hit_rate'] / base['set_hit_rate']:.3f}x",
        ),
        (
            "lookup, key absent: `bloom.maybe_contains`",
            per_s(result["miss_rate"]),
            f"{per_s(base['set_miss_rate'])} (`digest in set`)",
            f"{result['miss_rate'] / base['set_miss_rate']:.3f}x",
        ),
    ]


def fp_verdict(result: dict) -> str:
    if result["fp_low"] > result["rate"]:
        return f"**ABOVE configured** ({result['fp_rate'] / result['rate']:.1f}x)"
    return "within configured"


def render(info: dict, results: list[dict], base: dict, args, started: str, took: float, cpu):
    command = " ".join(["bench/dedup.py", shlex.join(sys.argv[1:])]).rstrip()
    lines = [
        "## Dedup",
        "",
        f"_Generated by `bench/dedup.py` at {started} (UTC) in {took:.0f} s; rerunning "
        "replaces this section._",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, Linux "
        f"{info['kernel']}; Python {info['python']}, xxhash {xxhash.VERSION}, numpy "
        f"{np.__version__ if np is not None else 'absent'}. TrackLayer sources measured: "
        f"sha256 `{info['tracklayer_sources']}` of `tracklayer/**/*.py`. Other processes used "
        f"{cpu['other_cores']:.2f} cores on average during the run, steal {cpu['steal']:.1%}.",
        "",
        f"Command: `{command}` ({args.keys:,} keys per configuration; "
        f"{min(args.keys, args.rate_keys):,} timed inserts, {args.hit_keys:,} lookups of "
        f"inserted keys, {args.fp_keys:,} of keys never inserted).",
        "",
        "What is built: `DedupRegistry(window, expected_keys, false_positive_rate).bloom`, as "
        "`app.py` does, for the daemon's defaults (`config.py: Dedup`) and for "
        "`tracklayer.yaml.example`. Keys as the journal makes them, two per event "
        "(`m:segment:<messageId>`, `b:meta:purchase:<order_id>`, ids `<run>-<thread>-<counter>`"
        "), arriving evenly over one window that starts half-way into a slice; lookups at the "
        "window's end, when every key is live.",
        "",
        "### Memory and false positives",
        "",
        "| configuration | keys | filters (slices) | filter sizes: bits, hashes | bit arrays "
        "| RSS growth | optimum for the keys at p | ratio | false positives measured (95% CI) "
        "| predicted from fill | configured | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {describe(r)} | {r['keys']:,} | {r['filters']} ({r['slices']}) | "
            f"{'; '.join(f'{b:,}, {h}' for b, h in r['filter_sizes'])} | "
            f"{mib(r['memory_bytes'])} "
            f"({8 * r['memory_bytes'] / r['keys']:.1f} bits/key) | {mib(r['rss_growth'])} | "
            f"{mib(r['optimum_bytes'])} ({8 * r['optimum_bytes'] / r['keys']:.1f} bits/key) | "
            f"**{r['memory_ratio']:.2f}x** | {r['fp_rate']:.4%} ({r['fp_low']:.4%} to "
            f"{r['fp_high']:.4%}), {r['false_positives']:,} of {r['fp_keys']:,} | "
            f"{r['predicted_rate']:.4%} | {r['rate']:.4%} | {fp_verdict(r)} |"
        )
    lines += [
        "",
        "Bit arrays: `TimeSlicedBloom.memory_bytes`, the `bytearray` lengths (`sys.getsizeof` "
        "adds their object headers, "
        + " and ".join(f"{r['allocated_bytes'] - r['memory_bytes']:,} B" for r in results)
        + ", and the `BloomSlice` objects take "
        + " and ".join(f"{r['object_bytes']:,} B" for r in results)
        + "). RSS growth: this process's resident memory from just before the filter was "
        "created to after it was filled (temporary buffers freed). Optimum: "
        "`m = -n ln(p) / (ln 2)^2` bits for the n keys inserted at the configured p. "
        "Predicted: `1 - prod(1 - fill^k)` over the filters' measured share of set bits "
        f"(from {min(r['fill_min'] for r in results):.3f} to "
        f"{max(r['fill_max'] for r in results):.3f}). False negatives among the inserted keys "
        "looked up: " + ", ".join(str(r["false_negatives"]) for r in results) + ".",
        "",
        "Where the memory ratio comes from (`TimeSlicedBloom.__init__`): "
        + "; ".join(why_memory(r) for r in results)
        + ". A load above 1x makes `add` append overflow filters to a slice, and a lookup "
        "probes every filter of every live slice.",
        "",
        "### Speed",
        "",
        "| configuration | operation | TrackLayer | baseline | ratio |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        for op, ours, theirs, ratio in speed_rows(r, base):
            lines.append(f"| {r['name']} | {op} | {ours} | {theirs} | **{ratio}** |")
    lines += [
        "",
        f"Hashing alone, on the same {base['keys']:,} keys: TrackLayer's `digest` (xxh3-128 of "
        f"the UTF-8 key) {per_s(base['digest_rate'])}, `xxh3_64` {per_s(base['xxh3_64_rate'])}"
        f" ({base['digest_rate'] / base['xxh3_64_rate']:.2f}x). A set of those digests takes "
        f"about {base['set_bytes_per_key']:.0f} bytes per key in this process (an exact set "
        f"of {args.keys:,} keys: about {mib(base['set_bytes_per_key'] * args.keys)}).",
        "",
        "Baselines, and why: every figure is a plain Python loop over pre-built lists, one "
        f"call per key, in this process and run; the set holds the {base['keys']:,} timed "
        "keys. `set.add` / `in` of the same 128-bit digest "
        "ints answers the same question exactly, with one C-level hash-table operation per "
        "key, so it is the floor for any membership structure driven from Python per key "
        "(the bloom exists to need far less memory than that set, not to be faster). "
        "`xxh3_64` of the key bytes is the least hashing any filter keyed by these strings "
        "must do; it is compared with TrackLayer's whole per-key cost (its 128-bit digest "
        "plus `bloom.add`).",
    ]
    if np is not None and any(r["timed_inserts"] < r["keys"] for r in results):
        lines += [
            "",
            f"Filling: the first {min(args.keys, args.rate_keys):,} keys went through "
            "`bloom.add` one by one (the timed insert rate, "
            + ", ".join(f"{r['add_seconds']:.1f} s" for r in results)
            + "); for the rest `bloom.add` inserted the first key of every filter (TrackLayer "
            "created the slices and overflow filters) and numpy set the other keys' bits with "
            "TrackLayer's probe formula straight into the filters' `bytearray`s ("
            + ", ".join(f"{r['fill_seconds']:.1f} s" for r in results)
            + "), because "
            f"{args.keys:,} calls of `bloom.add` take about "
            f"{args.keys / results[0]['add_rate']:.0f} s per configuration. Checked first, "
            f"each time: {results[0].get('checked_keys', 0):,} keys give bit-identical filters "
            "(several slices, overflow filters) either way.",
        ]
    return "\n".join(lines) + "\n"


def render_console(results: list[dict], base: dict) -> str:
    rows = [("configuration", "figure", "TrackLayer", "baseline / reference", "ratio")]
    for r in results:
        rows += [
            (
                r["name"],
                "bit arrays",
                mib(r["memory_bytes"]),
                f"optimum {mib(r['optimum_bytes'])}",
                f"{r['memory_ratio']:.2f}x",
            ),
            (r["name"], "RSS growth", mib(r["rss_growth"]), "", ""),
            (
                r["name"],
                "false positives",
                f"{r['fp_rate']:.4%} ({r['false_positives']:,}/{r['fp_keys']:,})",
                f"configured {r['rate']:.4%}",
                f"{r['fp_rate'] / r['rate']:.2f}x",
            ),
        ]
        for op, ours, theirs, ratio in speed_rows(r, base):
            rows.append((r["name"], op.split(":")[0], ours, theirs.split(" (")[0], ratio))
    return console_table(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description="TrackLayer dedup bloom filter benchmark")
    parser.add_argument("--keys", type=int, default=10_000_000, help="keys per configuration")
    parser.add_argument("--quick", action="store_true", help="1M keys, smaller samples")
    parser.add_argument("--rate-keys", type=int, default=1_000_000, help="timed inserts")
    parser.add_argument("--hit-keys", type=int, default=200_000, help="lookups of inserted keys")
    parser.add_argument("--fp-keys", type=int, default=1_000_000, help="keys never inserted")
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument("--readme", type=Path, default=BENCH / "README.md")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.keys = min(args.keys, 1_000_000)
        args.rate_keys = min(args.rate_keys, 100_000)
        args.hit_keys = min(args.hit_keys, 20_000)
        args.fp_keys = min(args.fp_keys, 200_000)
    if args.keys < 2 or args.fp_keys < 1 or args.hit_keys < 1 or args.rate_keys < 1:
        parser.error("--keys must be at least 2, the other counts at least 1")

    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    began = time.monotonic()
    info = machine()
    configs = [
        ("daemon default", Dedup()),
        ("tracklayer.yaml.example", load(str(ROOT / "tracklayer.yaml.example"), env={}).dedup),
    ]
    wait_for_quiet(args.quiet_wait)
    meter = CpuMeter(None)
    arrays = None
    if np is not None and args.rate_keys < args.keys:
        log(f"hashing {args.keys:,} keys for the fill")
        arrays = digest_arrays(args.keys)
    elif np is None:
        log("numpy missing: every key goes through bloom.add (slow)")
    results = [measure(name, config, args, arrays) for name, config in configs]
    del arrays
    base = baselines(args)
    cpu = meter.result()
    took = time.monotonic() - began

    print(render_console(results, base))
    markdown = render(info, results, base, args, started, took, cpu)
    if not args.no_readme:
        update_section(args.readme, "dedup", markdown)
        log(f"wrote {args.readme}")
    log(f"done in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
