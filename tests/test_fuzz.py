"""Property-based fuzzing: whatever arrives, the decoders answer a clear 4xx or 200 (never a
5xx, never a crash), and the config loader raises only ConfigError naming the key."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import SDK_KEY, WRITE_KEY, Daemon, base_config
from tracklayer.config import Config, ConfigError, parse

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
SEGMENT_KEYS = ["type", "userId", "anonymousId", "event", "messageId", "properties", "traits",
                "context", "timestamp", "sentAt", "integrations", "writeKey", "name"]  # fmt: skip
segment_like = st.dictionaries(st.sampled_from(SEGMENT_KEYS), json_values, max_size=8)
NATIVE_KEYS = ["name", "user", "properties", "consent", "context", "event_id", "timestamp"]
native_like = st.dictionaries(st.sampled_from(NATIVE_KEYS), json_values, max_size=6)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz")
    running = Daemon(path, base_config(path)).start()
    yield running
    running.stop()


def post(url: str, body: bytes, key: str) -> int:
    auth = base64.b64encode(f"{key}:".encode()).decode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Authorization": f"Basic {auth}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        document = json.loads(error.read())
        assert isinstance(document.get("code"), str) and isinstance(document.get("message"), str)
        return error.code


# TRACKLAYER_FUZZ_EXAMPLES raises the count for a long run (bench/README.md records one).
EXAMPLES = int(os.environ.get("TRACKLAYER_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(message=segment_like)
def test_segment_single_routes_never_fail_with_5xx(daemon, message):
    assert post(daemon.url + "/v1/track", json.dumps(message).encode(), WRITE_KEY) in (200, 400)


@FUZZ
@given(batch=st.lists(segment_like | json_values, max_size=6), extra=segment_like)
def test_segment_batches_never_fail_with_5xx(daemon, batch, extra):
    body = json.dumps({**extra, "batch": batch}).encode()
    assert post(daemon.url + "/v1/batch", body, WRITE_KEY) in (200, 400, 401)


@FUZZ
@given(event=native_like, as_batch=st.booleans())
def test_native_events_never_fail_with_5xx(daemon, event, as_batch):
    body = json.dumps({"batch": [event, event]} if as_batch else event).encode()
    assert post(daemon.url + "/v1/events", body, SDK_KEY) in (200, 400)


@FUZZ
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_cleanly(daemon, body):
    assert post(daemon.url + "/v1/batch", body, WRITE_KEY) in (200, 400, 401)


CONFIG_KEYS = ["server", "admin", "storage", "dedup", "sources", "destinations", "events",
               "identity", "consent", "alerts", "listen", "id", "type", "url", "rps"]  # fmt: skip
config_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(CONFIG_KEYS) | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=EXAMPLES * 3, deadline=None)
@given(data=config_like)
def test_config_loader_raises_only_config_errors(data):
    try:
        result = parse(data, "fuzz.yaml", env={})
    except ConfigError as error:
        assert str(error).startswith("fuzz.yaml: ")
    else:
        assert isinstance(result, Config)
