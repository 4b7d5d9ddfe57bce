"""Long fuzz run: coverage-guided fuzzing (atheris, libFuzzer) of TrackLayer's decoders and
normalisers, in-process and time-bounded.

    python bench/fuzz.py [--seconds 120] [--readme FILE | --no-readme]

(``bench/run fuzz`` calls this.) atheris runs in its own process (``--worker``, started and
stopped here by its pid), with coverage instrumentation of every ``tracklayer`` module. The
first byte of each input picks a target, the rest is its input:

- ``segment``: a ``/v1/<type>`` body, decoded and canonicalised the way
  ``sources/segment.py:SegmentSource._handle`` does it (``decode_or_refuse(body,
  SegmentMessage)``, then ``Canonicaliser.from_segment``, with the route's type);
- ``segment-batch``: a ``/v1/batch`` body, the same handler's batch branch
  (``SegmentBatch``, ``decode_item`` per message, batch ``sentAt``, ``context`` and
  ``integrations``);
- ``native``: a ``/v1/events`` body, as ``sources/native.py:NativeSource._handle``
  (``dict[str, Raw]``, ``batch``, ``writeKey``, ``NativeEvent``, ``from_native``);
- ``normalize``: the bytes as text (and, for the int-accepting fields, as a number) through
  ``normalize(field, ...)`` for every field and variant, and every public per-field function;
- ``click-ids``: the text through ``from_url``, ``from_campaign`` (the bytes as JSON),
  ``fbc_from_fbclid``, ``is_valid_fbc`` and ``is_valid_fbp``.

The Canonicaliser is built from ``tracklayer.yaml.example`` as ``app.py`` builds it. An
answer the code documents (``Refusal``, ``InvalidEvent``, ``fbc_from_fbclid``'s
``ValueError``, a normaliser's ``None`` with a reason) is fine; any other exception, and a
normaliser's ``internal_error`` drop (its wrapper turns an exception into that), is a crash.
Crashes are recorded (first input and traceback per distinct place) and the run goes on, so
one bug does not hide the others. Without atheris the same targets run under hypothesis
(random generation, no coverage guidance), and the section says so.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from benchlib import BENCH, PYTHON, ROOT, CpuMeter, log, machine, start, stop, update_section

TARGETS = ["segment", "segment-batch", "native", "normalize", "click-ids"]
SEGMENT_KINDS = ["track", "identify", "page", "screen", "group", "alias"]
COUNTRIES = [None, "", "US", "GB", "DE", "CA", "JP", "BR", "IN", "ZZ", "United States", "uk"]
TODAY = datetime.date(2026, 12, 3)
STATS_EVERY = 2.0  # seconds between the worker's stats.json writes

# seeds -------------------------------------------------------------------------------------

CONTEXT = {
    "page": {
        "url": "https://shop.example.com/p/1?gclid=Cj0KCQ_abc-1&fbclid=IwAR2xyz_Q&utm_source=x",
        "referrer": "https://www.google.com/search?q=shoes&msclkid=abc123",
        "path": "/p/1",
    },
    "campaign": {"name": "spring", "source": "google", "ttclid": "E.C.P.abc", "ScCid": "s1"},
    "ip": "203.0.113.7",
    "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
    "locale": "en-GB",
    "location": {"country": "GB", "region": "England"},
    "library": {"name": "analytics.js", "version": "4.1.0"},
    "fbp": "fb.1.1764748800000.1234567890",
    "traits": {"email": "Jane.Doe+shop@Gmail.com"},
    "consent": {"categoryPreferences": {"Advertising": True}},
}
TRAITS = {
    "email": " Jane.Doe+shop@Gmail.com ",
    "phone": "+44 (0)20 7946 0958",
    "firstName": "Zoë",
    "lastName": "O'Brien-Smith",
    "birthday": "1997-02-16",
    "gender": "Female",
    "address": {
        "city": "São Paulo",
        "state": "California",
        "postalCode": "94107-1234",
        "country": "United States",
    },
}
PROPERTIES = {
    "order_id": "o-1001",
    "value": 129.5,
    "revenue": 129.5,
    "currency": "eur",
    "products": [{"product_id": "sku-1", "price": 64.75, "quantity": 2, "name": "Shoe"}],
}


def segment_message(kind: str) -> dict:
    message = {
        "type": kind,
        "messageId": "ajs-next-1764748800000-3f1e",
        "userId": "u-42",
        "anonymousId": "a-9f",
        "timestamp": "2026-12-03T10:00:00.000Z",
        "sentAt": "2026-12-03T10:00:01Z",
        "context": CONTEXT,
        "integrations": {"All": True, "Facebook Pixel": False},
    }
    if kind == "track":
        message.update(event="Order Completed", properties=PROPERTIES)
    elif kind == "identify":
        message["traits"] = TRAITS
    elif kind in ("page", "screen"):
        message.update(name="Checkout", category="Shop", properties={"url": "https://x.test/?a=1"})
    elif kind == "group":
        message.update(groupId="g-1", traits={"name": "ACME"})
    else:
        message["previousId"] = "a-9f"
    return message


NATIVE = {
    "name": "purchase",
    "event_id": "purchase:o-1001",
    "message_id": "m-1",
    "timestamp": "2026-12-03T10:00:00Z",
    "sent_at": "2026-12-03T10:00:01Z",
    "user": {
        "user_id": "u-42",
        "email": "jane@example.com",
        "phone": "020 7946 0958",
        "first_name": "Jane",
        "last_name": "Doe",
        "city": "London",
        "zip": "M1 1AE",
        "country": "GB",
        "date_of_birth": "16.02.1997",
        "gender": "f",
        "external_id": "CRM-77",
        "ip": "203.0.113.7",
        "fbp": "fb.1.1764748800000.987654321",
        "click_ids": {"gclid": "Cj0KCQ_abc-1", "ttp": "t-1"},
    },
    "properties": PROPERTIES,
    "consent": {"ads": True, "ad_storage": "granted"},
    "context": {"page_url": "https://shop.example.com/?ttclid=T1", "referrer": ""},
}
TEXT_SEEDS = [
    "Jane.Doe+shop@Gmail.com",
    " JOHN_SMITH@example.co.uk ",
    "+44 (0)20 7946 0958 ext. 12",
    "(650) 555-1212",
    "0049 30 1234567",
    "16 February 1997",
    "2/16/1997",
    "19970216",
    "Saint-Martin",
    "Zoe\u0308 Ångström",
    "California",
    "94107-1234",
    "Deutschland",
    "female",
    "CRM 0042",
    "a" * 64,
    "https://shop.example.com/#/landing?gclid=Cj0_x&fbclid=IwAR_y",
    "?ScCid=abc&sccid=def&rdt_cid=r1&epik=e1&li_fat_id=l1&wbraid=w1&gbraid=g1",
    '{"gclid": "Cj0_x", "utm_source": "google", "fbclid": "IwAR_z"}',
    "fb.1.1764748800000.IwAR2xyz_Q",
]


def seeds() -> list[bytes]:
    found = []
    for kind_index, kind in enumerate(SEGMENT_KINDS):
        body = json.dumps(segment_message(kind)).encode()
        found.append(bytes([0, kind_index]) + body)
    batch = {
        "batch": [segment_message(kind) for kind in SEGMENT_KINDS],
        "sentAt": "2026-12-03T10:00:02Z",
        "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
        "integrations": {"All": True},
        "writeKey": "dev_write_key",
    }
    found.append(bytes([1]) + json.dumps(batch).encode())
    found.append(bytes([2]) + json.dumps(NATIVE).encode())
    found.append(bytes([2]) + json.dumps({"batch": [NATIVE, NATIVE], "writeKey": "k"}).encode())
    for index, text in enumerate(TEXT_SEEDS):
        found.append(bytes([3, index % len(COUNTRIES)]) + text.encode())
        found.append(bytes([4]) + text.encode())
    return found


DICTIONARY = [
    *(f'"{key}"' for key in ("type", "messageId", "userId", "anonymousId", "event", "name",
                             "properties", "traits", "context", "integrations", "timestamp",
                             "originalTimestamp", "sentAt", "groupId", "previousId", "writeKey",
                             "batch", "page", "url", "referrer", "campaign", "location",
                             "country", "region", "consent", "user", "click_ids", "email",
                             "phone", "address", "birthday", "order_id", "event_id",
                             "message_id", "page_url", "fbp", "fbc", "ip", "userAgent")),
    *(f'"{value}"' for value in SEGMENT_KINDS),
    "fbclid=", "gclid=", "ttclid=", "ScCid=", "msclkid=", "#/", "?", "&", "%", "%00", "%F0%9F",
    "@gmail.com", "+44", "00", "ext", "February", "1997", "2026-12-03T10:00:00Z", "+01:00",
    "null", "true", "false", "1e999", "-0", "{}", "[]", '"\\u0000"', '"\\ud800"', '"\\u0130"',
    "fb.1.", "²", "İ", "①",
]  # fmt: skip


# the worker: targets ------------------------------------------------------------------------


class Targets:
    """The code under test, imported (and, under atheris, instrumented) by the worker."""

    def __init__(self) -> None:
        import msgspec

        from tracklayer.config import load
        from tracklayer.destinations import identifiers_for
        from tracklayer.model import NativeEvent, Rejection, SegmentBatch, SegmentMessage
        from tracklayer.pipeline import click_ids, normalize
        from tracklayer.pipeline.canonical import Arrival, Canonicaliser, InvalidEvent
        from tracklayer.sources.decoding import decode_item, decode_or_refuse
        from tracklayer.sources.http import Refusal

        config = load(str(ROOT / "tracklayer.yaml.example"), env={})
        self.canonicaliser = Canonicaliser(config, identifiers_for(config.destinations))
        self.msgspec, self.Arrival, self.Rejection = msgspec, Arrival, Rejection
        self.SegmentBatch, self.SegmentMessage, self.NativeEvent = (
            SegmentBatch,
            SegmentMessage,
            NativeEvent,
        )
        self.decode_item, self.decode_or_refuse = decode_item, decode_or_refuse
        self.n, self.c = normalize, click_ids
        self.expected = (Refusal, InvalidEvent)
        self.kinds = sorted(set(normalize.FIELDS.values()))

    def arrival(self, **extra):
        return self.Arrival(source="segment", received_at=1_796_000_000.0, **extra)

    def segment(self, data: bytes) -> str:
        kind = SEGMENT_KINDS[data[0] % len(SEGMENT_KINDS)] if data else "track"
        message = self.decode_or_refuse(data[1:], self.SegmentMessage)
        browser = bool(data) and data[0] >= 128  # the short routes (/v1/t, ...) are a browser's
        self.canonicaliser.from_segment(message, kind, self.arrival(client_side=browser))
        return "accepted"

    def segment_batch(self, data: bytes) -> str:
        envelope = self.decode_or_refuse(data, self.SegmentBatch)
        messages = []
        for index, raw in enumerate(envelope.batch):
            item = self.decode_item(raw, self.SegmentMessage, index)
            if not isinstance(item, self.Rejection):
                messages.append(item)
        if not envelope.batch:
            return "empty"
        sent_at = self.canonicaliser.parse_time(envelope.sent_at, "sentAt")
        arrival = self.arrival(
            sent_at=sent_at, context=envelope.context, integrations=envelope.integrations
        )
        accepted = 0
        for message in messages:
            with contextlib.suppress(*self.expected):
                self.canonicaliser.from_segment(message, None, arrival)
                accepted += 1
        return "accepted" if accepted else "rejected"

    def native(self, data: bytes) -> str:
        top = self.decode_or_refuse(data, dict[str, self.msgspec.Raw])
        if "batch" in top:
            items = self.decode_or_refuse(top["batch"], list[self.msgspec.Raw], prefix="batch")
        else:
            items = [self.msgspec.Raw(data)]
        key = top.get("writeKey")
        if key is not None:
            self.decode_or_refuse(key, str, prefix="writeKey")
        accepted = 0
        for index, raw in enumerate(items):
            item = self.decode_item(raw, self.NativeEvent, index)
            if isinstance(item, self.Rejection):
                continue
            with contextlib.suppress(*self.expected):
                self.canonicaliser.from_native(item, self.arrival(client_side=True))
                accepted += 1
        return "accepted" if accepted else "rejected"

    def normalize(self, data: bytes) -> str:
        n = self.n
        country = COUNTRIES[data[0] % len(COUNTRIES)] if data else None
        text = data[1:].decode("utf-8", "surrogateescape")  # invalid UTF-8: lone surrogates
        values: list[object] = [text]
        if re.fullmatch(r"[+-]?[0-9]{1,6000}", text):
            values.append(int(text))  # phone, zip, date and external id accept ints too
        kept = 0
        for value in values:
            for kind in self.kinds:
                for variant in sorted(n.VARIANTS):
                    result = n.normalize(
                        kind,
                        value,
                        variant=variant,
                        default_country=country or "US",
                        country=country,
                        today=TODAY,
                    )
                    if result.reason == "internal_error":
                        self.reraise(kind, value, country)
                    kept += result.value is not None
            for function in (n.email, n.phone, n.phone_digits, n.name, n.city, n.country,
                             n.gender, n.external_id, n.date_of_birth):  # fmt: skip
                function(value)
            n.state(value, country=country)
            n.zip_code(value, country)
            if isinstance(value, str):
                n.hash_once(value)
                n.sha256_hex(value)
                n.is_sha256_hex(value)
        return "normalised" if kept else "refused"

    def reraise(self, kind: str, value: object, country: str | None) -> None:
        """A normaliser dropped the value as internal_error: run its rule unwrapped, so the
        real exception (and its place) is what gets recorded."""
        n = self.n
        rule = {
            "email": n._email,
            "phone": n._phone,
            "first_name": n._name,
            "last_name": n._name,
            "city": n._city,
            "state": n._state,
            "zip": n._zip,
            "country": n._country,
            "date_of_birth": n._date_of_birth,
            "gender": n._gender,
            "external_id": n._external_id,
        }[kind]
        options = {
            "state": {"country": country},
            "zip": {"country": country},
            "phone": {"default_country": country or "US"},
            "date_of_birth": {"today": TODAY},
        }.get(kind, {})
        accept = {"phone": (str, int), "zip": (str, int), "external_id": (str, int)}
        accept["date_of_birth"] = (str, int, datetime.date)
        try:
            prepared = n._prepare(value, accept.get(kind, (str,)))
        except Exception as error:
            raise InternalError(f"normalize({kind!r}): _prepare raised") from error
        if prepared.value is not None:
            rule.__wrapped__(prepared.value, **options)
        raise InternalError(f"normalize({kind!r}, {value!r:.80}) gave internal_error")

    def click_ids(self, data: bytes) -> str:
        c = self.c
        text = data.decode("utf-8", "surrogateescape")
        found = c.from_url(text)
        try:
            campaign = json.loads(data)
        except (ValueError, RecursionError):
            campaign = None
        found.update(c.from_campaign(campaign))
        with contextlib.suppress(ValueError):  # documented refusal
            c.fbc_from_fbclid(text, 1_796_000_000_000)
        c.is_valid_fbc(text)
        c.is_valid_fbp(text)
        return "found" if found else "none"


def shown(data: bytes, limit: int = 400) -> str:
    """Input bytes as printable text (escapes for control characters and invalid UTF-8)."""
    text = data.decode("utf-8", "backslashreplace")
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[:limit] + "..."


class InternalError(Exception):
    """A normaliser answered internal_error (its wrapper swallowed an exception)."""


def signature(target: str, error: BaseException) -> str:
    """Where a crash happened: the exception type and the innermost TrackLayer frame."""
    while error.__cause__ is not None and isinstance(error, InternalError):
        error = error.__cause__
    frames = traceback.extract_tb(error.__traceback__)
    inner = [f for f in frames if "/tracklayer/" in f.filename] or frames
    where = " <- ".join(f"{Path(f.filename).name}:{f.name}:{f.lineno}" for f in inner[-2:][::-1])
    return f"{target} {type(error).__name__} at {where or '?'}"


def worker(workdir: Path, engine: str, seconds: float, fuzzer_args: list[str]) -> int:
    stats_path = workdir / "stats.json"
    crash_dir = workdir / "crashes"
    crash_dir.mkdir(exist_ok=True)
    stats: dict = {
        "engine": engine,
        "inputs": 0,
        "targets": {name: {} for name in TARGETS},
        "crashes": {},
        "started": time.time(),
    }
    last_write = [0.0]

    def write(force: bool = False) -> None:
        now = time.monotonic()
        if force or now - last_write[0] >= STATS_EVERY:
            stats["updated"] = time.time()
            stats_path.write_text(json.dumps(stats))
            last_write[0] = now

    if engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=["tracklayer"]):
            targets = Targets()
    else:
        targets = Targets()
    functions = [
        targets.segment,
        targets.segment_batch,
        targets.native,
        targets.normalize,
        targets.click_ids,
    ]

    def one_input(data: bytes) -> None:
        choice = data[0] % len(TARGETS) if data else 0
        name = TARGETS[choice]
        stats["inputs"] += 1
        counts = stats["targets"][name]
        try:
            outcome = functions[choice](data[1:])
        except targets.expected as refused:
            outcome = type(refused).__name__
        except Exception as error:
            key = signature(name, error)
            crash = stats["crashes"].get(key)
            if crash is None or len(data) < crash["length"]:  # keep the shortest input
                filename = crash["file"] if crash else f"crash-{len(stats['crashes']) + 1}.bin"
                (crash_dir / filename).write_bytes(data)
                crash = stats["crashes"][key] = {
                    "count": crash["count"] if crash else 0,
                    "file": filename,
                    "length": len(data),
                    "input": shown(data[1:]),
                    "traceback": "".join(traceback.format_exception(error))[-3000:],
                }
                write(force=True)
            crash["count"] += 1
            outcome = "CRASH"
        counts[outcome] = counts.get(outcome, 0) + 1
        write()

    if engine == "atheris":
        import atheris

        atheris.Setup([sys.argv[0], *fuzzer_args], one_input)
        atheris.Fuzz()  # returns only through libFuzzer's exit
        return 0
    return hypothesis_loop(one_input, seconds, write)


def hypothesis_loop(one_input, seconds: float, write) -> int:
    """The fallback engine: hypothesis generates the inputs (no coverage guidance)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    values = st.recursive(
        scalars,
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids),
        max_leaves=15,
    )
    segment_keys = ["type", "userId", "anonymousId", "event", "messageId", "properties"]
    segment_keys += ["traits", "context", "timestamp", "sentAt", "integrations", "writeKey"]
    messages = st.dictionaries(st.sampled_from(segment_keys), values, max_size=8)
    bodies = st.one_of(
        st.builds(lambda m: json.dumps(m).encode(), messages),
        st.builds(lambda b: json.dumps({"batch": b}).encode(), st.lists(messages, max_size=3)),
        st.binary(max_size=300),
        st.text(max_size=80).map(str.encode),
    )
    # a seed (its target byte kept) with a few bytes spliced in, or any target and body
    spliced = st.builds(
        lambda seed, cut, junk: seed[: max(2, cut)] + junk + seed[max(2, cut) :],
        st.sampled_from(seeds()),
        st.integers(0, 2000),
        st.binary(max_size=8),
    )
    inputs = spliced | st.builds(lambda t, body: bytes([t]) + body, st.integers(0, 255), bodies)
    deadline = time.monotonic() + seconds

    @settings(
        max_examples=100,  # small batches: hypothesis generates a batch to its end
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=inputs)
    def batch(data):
        if time.monotonic() < deadline:
            one_input(data)

    while time.monotonic() < deadline:
        batch()
        write(force=True)
    write(force=True)
    return 0


# the parent ---------------------------------------------------------------------------------


def engine_available() -> tuple[str, str]:
    try:
        return "atheris", importlib.metadata.version("atheris")
    except importlib.metadata.PackageNotFoundError:
        return "hypothesis", importlib.metadata.version("hypothesis")


def parse_libfuzzer(text: str) -> dict:
    found: dict = {}
    for key in ("number_of_executed_units", "average_exec_per_sec", "new_units_added",
                "slowest_unit_time_sec", "peak_rss_mb"):  # fmt: skip
        match = re.search(rf"stat::{key}:\s+(\d+)", text)
        if match:
            found[key] = int(match.group(1))
    done = re.search(r"Done (\d+) runs in (\d+) second", text)
    if done:
        found["runs"], found["seconds"] = int(done.group(1)), int(done.group(2))
    status = re.findall(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", text)
    if status:
        _runs, cov, ft, corp, size = status[-1]
        found.update(cov=int(cov), ft=int(ft), corpus=int(corp), corpus_size=size)
    problems = re.findall(r"==\d+== ERROR: libFuzzer: (.*)|^(SUMMARY: .*)$", text, re.M)
    found["libfuzzer_errors"] = [a or b for a, b in problems]
    return found


def run(args) -> dict:
    engine, version = engine_available()
    if args.engine:
        engine = args.engine
        version = importlib.metadata.version(engine)
    workdir = Path(tempfile.mkdtemp(prefix="tracklayer-fuzz-"))
    try:
        corpus, seed_dir, artifacts = (workdir / d for d in ("corpus", "seeds", "artifacts"))
        for directory in (corpus, seed_dir, artifacts):
            directory.mkdir()
        for index, seed in enumerate(seeds()):
            (seed_dir / f"seed-{index:03d}").write_bytes(seed)
        dictionary = workdir / "json.dict"
        dictionary.write_text(
            "\n".join(
                '"' + "".join(f"\\x{b:02x}" for b in token.encode("utf-8", "surrogatepass")) + '"'
                for token in DICTIONARY
            )
            + "\n"
        )
        fuzzer_args = [
            f"-max_total_time={int(args.seconds)}",
            "-timeout=20",
            "-rss_limit_mb=2048",
            "-max_len=8192",
            "-print_final_stats=1",
            f"-dict={dictionary}",
            f"-artifact_prefix={artifacts}/",
            str(corpus),
            str(seed_dir),
        ]
        argv = [PYTHON, str(Path(__file__).resolve()), "--worker", str(workdir)]
        argv += ["--engine", engine, "--seconds", str(args.seconds), "--", *fuzzer_args]
        logfile = workdir / "worker.log"
        log(f"{engine} {version}: fuzzing for {args.seconds:g} s")
        meter = CpuMeter(None)
        began = time.monotonic()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])}
        proc = start(argv, logfile, env=env)
        try:
            proc.wait(timeout=args.seconds + 180)
        except subprocess.TimeoutExpired:
            log("the worker overran its time; stopping it")
        exit_code = stop(proc)
        wall = time.monotonic() - began
        cpu = meter.result()
        text = logfile.read_text(errors="replace")
        stats_path = workdir / "stats.json"
        stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
        result = {
            "engine": engine,
            "version": version,
            "exit": exit_code,
            "wall": wall,
            "cpu": cpu,
            "stats": stats,
            "libfuzzer": parse_libfuzzer(text) if engine == "atheris" else {},
            "corpus_files": len(list(corpus.iterdir())),
            "artifacts": sorted(p.name for p in artifacts.iterdir()),
            "log_tail": "\n".join(text.splitlines()[-15:]),
        }
        if args.keep:
            shutil.copytree(workdir, args.keep, dirs_exist_ok=True)
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def figures(result: dict) -> tuple[int, float, float]:
    """(inputs tried, seconds fuzzing, execs/s)."""
    fuzz = result["libfuzzer"]
    stats = result["stats"]
    inputs = fuzz.get("number_of_executed_units") or fuzz.get("runs") or stats.get("inputs", 0)
    seconds = fuzz.get("seconds") or max(1e-9, stats.get("updated", 0) - stats.get("started", 0))
    rate = fuzz.get("average_exec_per_sec") or inputs / max(seconds, 1e-9)
    return inputs, float(seconds), float(rate)


def render(info: dict, result: dict, args, started: str) -> str:
    inputs, seconds, rate = figures(result)
    stats = result["stats"]
    crashes = stats.get("crashes", {})
    fuzz = result["libfuzzer"]
    command = " ".join(["bench/fuzz.py", shlex.join(sys.argv[1:])]).rstrip()
    if result["engine"] == "atheris":
        engine = (
            f"atheris {result['version']} (libFuzzer, coverage-guided; every `tracklayer` module "
            "instrumented)"
        )
    else:
        engine = (
            f"hypothesis {result['version']} (random generation, no coverage guidance: atheris "
            "is not installed; `python -m pip install atheris` brings it)"
        )
    lines = [
        "## Fuzzing (coverage-guided)",
        "",
        f"_Generated by `bench/fuzz.py` at {started} (UTC); rerunning replaces this section._",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, Linux "
        f"{info['kernel']}; Python {info['python']}, msgspec {info['msgspec']}. TrackLayer "
        f"sources fuzzed: sha256 `{info['tracklayer_sources']}` of `tracklayer/**/*.py`. "
        f"One fuzzing process; other processes used {result['cpu']['other_cores']:.2f} cores "
        f"on average, steal {result['cpu']['steal']:.1%}.",
        "",
        f"Command: `{command}`; engine: {engine}.",
        "",
        f"**{inputs:,} inputs in {seconds:,.0f} s ({rate:,.0f} execs/s), "
        f"{len(crashes)} distinct crash{'es' if len(crashes) != 1 else ''}"
        f" ({sum(c['count'] for c in crashes.values()):,} crashing inputs).**",
    ]
    if fuzz.get("cov") is not None:
        lines += [
            "",
            f"Coverage at the end: {fuzz['cov']:,} edges, {fuzz['ft']:,} features; corpus "
            f"{fuzz['corpus']:,} inputs ({fuzz['corpus_size']}) grown from {len(seeds())} seeds"
            f" ({fuzz.get('new_units_added', 0):,} new units); peak RSS "
            f"{fuzz.get('peak_rss_mb', 0):,} MB; slowest input "
            f"{fuzz.get('slowest_unit_time_sec', 0)} s.",
        ]
    lines += [
        "",
        "| target | what runs | inputs | outcomes |",
        "|---|---|---|---|",
    ]
    what = {
        "segment": "`/v1/<type>` body: `decode_or_refuse(SegmentMessage)` + "
        "`Canonicaliser.from_segment`",
        "segment-batch": "`/v1/batch` body: `SegmentBatch`, `decode_item`, `sentAt`, "
        "`from_segment` per message",
        "native": "`/v1/events` body: `dict[str, Raw]`, `batch`, `writeKey`, `NativeEvent`, "
        "`from_native`",
        "normalize": "every field x variant of `normalize` and every public normaliser, on the "
        "text (and as an int)",
        "click-ids": "`from_url`, `from_campaign` (JSON), `fbc_from_fbclid`, `is_valid_fbc/fbp`",
    }
    for name in TARGETS:
        counts = stats.get("targets", {}).get(name, {})
        total = sum(counts.values())
        outcome = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda i: -i[1]))
        lines.append(f"| {name} | {what[name]} | {total:,} | {outcome} |")
    lines += [
        "",
        "Per-target counts are the worker's own (written every 2 s, so the last moment is "
        "missing); `Refusal` / `InvalidEvent` are the documented 400 answers.",
    ]
    if crashes:
        lines += ["", "### Crashes found", ""]
        for number, (key, crash) in enumerate(crashes.items(), 1):
            last = crash["traceback"].strip().splitlines()[-1]
            lines += [
                f"{number}. `{key}`: {crash['count']:,} inputs; shortest ({crash['length']:,} "
                f"bytes, after the target byte): `{crash['input'][:300].replace('`', chr(39))}`"
                f"; `{last[:200]}`",
            ]
    if result["artifacts"] or fuzz.get("libfuzzer_errors"):
        lines += [
            "",
            "libFuzzer stopped early: "
            + "; ".join(fuzz.get("libfuzzer_errors", []) + result["artifacts"]),
        ]
    return "\n".join(lines) + "\n"


def render_console(result: dict) -> str:
    inputs, seconds, rate = figures(result)
    crashes = result["stats"].get("crashes", {})
    lines = [
        f"engine {result['engine']} {result['version']}, worker exit {result['exit']}",
        f"inputs {inputs:,} in {seconds:,.0f} s: {rate:,.0f} execs/s",
    ]
    for name, counts in result["stats"].get("targets", {}).items():
        lines.append(f"  {name:14} {sum(counts.values()):>10,}  {counts}")
    lines.append(f"crashes: {len(crashes)} distinct")
    for key, crash in crashes.items():
        lines.append(f"  {key}: {crash['count']:,} inputs, shortest: {crash['input'][:300]}")
        lines.append("    " + crash["traceback"].strip().splitlines()[-1][:200])
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="TrackLayer long fuzz run")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--engine", choices=["atheris", "hypothesis"], help="default: atheris")
    parser.add_argument("--readme", type=Path, default=BENCH / "README.md")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--keep", type=Path, help="copy the corpus, crashes and log here")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.worker:
        return worker(args.worker, args.engine, args.seconds, [a for a in rest if a != "--"])
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")
    info = machine()
    result = run(args)
    print(render_console(result))
    markdown = render(info, result, args, started)
    if not args.no_readme:
        update_section(args.readme, "fuzz", markdown)
        log(f"wrote {args.readme}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    inputs = figures(result)[0]
    return 0 if inputs and not result["stats"].get("crashes") else 1


if __name__ == "__main__":
    sys.exit(main())
