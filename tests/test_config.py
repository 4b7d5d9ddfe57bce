"""Config loading: ``parse(dict, file, env)`` and ``load(path)``. Every error reads
``FILE: path.to.key: what is wrong``; ``${VAR}`` interpolation; durations; defaults."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tracklayer.config import Config, ConfigError, load, parse
from tracklayer.duration import parse_duration

SOURCES = [{"id": "segment", "type": "segment", "write_keys": ["k1"]}]


def hook(**keys: Any) -> dict[str, Any]:
    destination = {"id": "hooks", "type": "webhook", "url": "http://127.0.0.1:9000/in"}
    destination.update(keys)
    return destination


def minimal(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"sources": copy.deepcopy(SOURCES)}
    data.update(sections)
    return data


def error_of(data: Any, env: dict[str, str] | None = None, file: str = "f.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(data, file, env={} if env is None else env)
    return caught.value


def assert_error(error: ConfigError, path: str, *words: str, file: str = "f.yaml") -> None:
    """``str(error)`` is ``FILE: path: problem`` and the problem says what is wrong."""
    text = str(error)
    assert text.startswith(f"{file}: {path}: "), text
    problem = text.removeprefix(f"{file}: {path}: ")
    assert problem.strip(), text
    assert "\n" not in text, text
    for word in words:
        assert word.lower() in problem.lower(), text
    assert error.file == file and error.path == path


# errors name the key ---------------------------------------------------------------------

ERRORS = [
    ("unknown-top-level", minimal(bogus=1), "bogus", ["unknown"]),
    ("unknown-nested", minimal(server={"lisen": "127.0.0.1:1"}), "server.lisen", ["unknown"]),
    (
        "unknown-deep",
        minimal(server={"tls": {"cert_file": "a", "key_file": "b", "x": 1}}),
        "server.tls.x",
        ["unknown"],
    ),
    (
        "unknown-in-destination",
        minimal(destinations=[{"id": "h", "type": "webhook", "urll": "http://x"}]),
        "destinations[0].urll",
        ["unknown"],
    ),
    (
        "unknown-in-second-destination",
        minimal(destinations=[hook(), hook(id="b", sekret="x")]),
        "destinations[1].sekret",
        ["unknown"],
    ),
    (
        "unknown-in-source",
        minimal(sources=[{"id": "s", "type": "sdk", "writekeys": ["k"]}]),
        "sources[0].writekeys",
        ["unknown"],
    ),
    (
        "unknown-in-rate-limit",
        minimal(destinations=[hook(rate_limit={"rps": 1, "brust": 2})]),
        "destinations[0].rate_limit.brust",
        ["unknown"],
    ),
    (
        "wrong-type-rps",
        minimal(destinations=[hook(rate_limit={"rps": "x"})]),
        "destinations[0].rate_limit.rps",
        ["float"],
    ),
    (
        "wrong-type-max-body",
        minimal(server={"max_body_bytes": "lots"}),
        "server.max_body_bytes",
        ["int"],
    ),
    ("wrong-type-sources", minimal(sources="segment"), "sources", ["array"]),
    (
        "wrong-type-write-keys",
        minimal(sources=[{"id": "s", "type": "sdk", "write_keys": "k"}]),
        "sources[0].write_keys",
        ["array"],
    ),
    (
        "missing-url",
        minimal(destinations=[{"id": "h", "type": "webhook"}]),
        "destinations[0].url",
        ["required"],
    ),
    (
        "missing-id",
        minimal(destinations=[{"type": "webhook", "url": "http://x/y"}]),
        "destinations[0].id",
        ["required"],
    ),
    ("missing-source-type", minimal(sources=[{"id": "s"}]), "sources[0].type", ["required"]),
    (
        "missing-destination-type",
        minimal(destinations=[{"id": "h", "url": "http://x/y"}]),
        "destinations[0].type",
        ["required"],
    ),
    (
        "bad-retention",
        minimal(storage={"retention": "3 weeks"}),
        "storage.retention",
        ["3 weeks", "7d"],
    ),
    (
        "bad-batch-wait",
        minimal(destinations=[hook(batch={"max_wait": "soon"})]),
        "destinations[0].batch.max_wait",
        ["soon"],
    ),
    ("bad-dedup-window", minimal(dedup={"window": "2 days"}), "dedup.window", ["2 days"]),
    ("negative-duration", minimal(storage={"retention": -5}), "storage.retention", ["negative"]),
    (
        "unknown-destination-type",
        minimal(destinations=[hook(type="myspace")]),
        "destinations[0].type",
        ["myspace", "webhook"],
    ),
    (
        "unknown-source-type",
        minimal(sources=[{"id": "s", "type": "segmnt"}]),
        "sources[0].type",
        ["segmnt"],
    ),
    ("bad-durability", minimal(storage={"durability": "disk"}), "storage.durability", ["disk"]),
    ("bad-mode", minimal(destinations=[hook(mode="dry-run")]), "destinations[0].mode", ["dry-run"]),
    ("bad-pii", minimal(identity={"pii": "plain"}), "identity.pii", ["plain"]),
    ("bad-url", minimal(destinations=[hook(url="ftp://x/y")]), "destinations[0].url", ["http"]),
    (
        "zero-rps",
        minimal(destinations=[hook(rate_limit={"rps": 0})]),
        "destinations[0].rate_limit.rps",
        ["greater than 0"],
    ),
    (
        "source-zero-rps",
        minimal(sources=[{"id": "s", "type": "segment", "rate_limit": {"rps": 0}}]),
        "sources[0].rate_limit.rps",
        ["greater than 0"],
    ),
    ("small-max-body", minimal(server={"max_body_bytes": 10}), "server.max_body_bytes", ["1024"]),
    ("bad-listen", minimal(server={"listen": "everywhere"}), "server.listen", ["host:port"]),
    (
        "bad-listen-port",
        minimal(server={"listen": "127.0.0.1:99999"}),
        "server.listen",
        ["host:port"],
    ),
    ("bad-admin-listen", minimal(admin={"listen": "9464x"}), "admin.listen", ["host:port"]),
    (
        "bad-trusted-proxy",
        minimal(server={"trusted_proxies": ["10.0.0.0/33"]}),
        "server.trusted_proxies",
        ["10.0.0.0/33"],
    ),
    (
        "bad-false-positive-rate",
        minimal(dedup={"false_positive_rate": 2}),
        "dedup.false_positive_rate",
        ["between"],
    ),
    (
        "zero-max-attempts",
        minimal(destinations=[hook(retry={"max_attempts": 0})]),
        "destinations[0].retry.max_attempts",
        ["at least 1"],
    ),
    (
        "duplicate-source-id",
        minimal(sources=[*SOURCES, {"id": "segment", "type": "sdk"}]),
        "sources[1].id",
        ["duplicate", "segment"],
    ),
    (
        "duplicate-destination-id",
        minimal(destinations=[hook(), hook(url="http://x/2")]),
        "destinations[1].id",
        ["duplicate", "hooks"],
    ),
    (
        "write-key-twice",
        minimal(sources=[*SOURCES, {"id": "web", "type": "sdk", "write_keys": ["k1"]}]),
        "sources[1].write_keys",
        ["segment"],
    ),
    (
        "empty-write-key",
        minimal(sources=[{"id": "s", "type": "sdk", "write_keys": [""]}]),
        "sources[0].write_keys",
        ["empty"],
    ),
]


@pytest.mark.parametrize(
    ("data", "path", "words"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_error_names_the_key(data, path, words):
    assert_error(error_of(data), path, *words)


def test_error_names_the_file_it_was_given():
    error = error_of(minimal(bogus=1), file="/etc/tracklayer/prod.yaml")
    assert str(error) == "/etc/tracklayer/prod.yaml: bogus: unknown key"


def test_top_level_not_a_mapping():
    for data in ([1, 2], "sources", 7):
        text = str(error_of(data))
        assert text.startswith("f.yaml: "), text
        assert "mapping" in text, text


def test_unset_variable_without_default_names_the_key():
    data = minimal(destinations=[hook(secret="${HOOK_SECRET}")])
    assert_error(error_of(data, env={}), "destinations[0].secret", "HOOK_SECRET", "not set")
    data = minimal(sources=[{"id": "s", "type": "segment", "write_keys": ["${KEY}"]}])
    assert_error(error_of(data, env={}), "sources[0].write_keys[0]", "KEY")
    data = minimal(server={"listen": "127.0.0.1:${PORT}"})
    assert_error(error_of(data, env={}), "server.listen", "PORT")


def test_unset_variable_set_to_empty_counts_as_set():
    config = parse(
        minimal(destinations=[hook(secret="${HOOK_SECRET}")]), "f.yaml", env={"HOOK_SECRET": ""}
    )
    assert config.destinations[0].secret == ""


# interpolation ---------------------------------------------------------------------------


def test_interpolation_whole_value_default_and_inside_a_longer_string():
    data = minimal(
        server={"listen": "${HOST:-127.0.0.1}:${PORT:-8080}"},
        admin={"token": "${TOKEN}"},
        storage={"path": "/var/lib/${APP:-tracklayer}/data"},
        destinations=[
            hook(url="https://${HOOK_HOST}/in?x=${MISSING:-}", secret="pre-${A}-${B:-dflt}-post")
        ],
    )
    env = {"TOKEN": "t0ken", "HOOK_HOST": "hooks.example.com", "A": "aa", "PORT": "9999"}
    config = parse(data, "f.yaml", env=env)
    assert config.server.listen == "127.0.0.1:9999"
    assert config.admin.token == "t0ken"
    assert config.storage.path == "/var/lib/tracklayer/data"
    assert config.destinations[0].url == "https://hooks.example.com/in?x="
    assert config.destinations[0].secret == "pre-aa-dflt-post"


def test_environment_wins_over_default():
    config = parse(minimal(admin={"token": "${T:-fallback}"}), "f.yaml", env={"T": "from-env"})
    assert config.admin.token == "from-env"
    config = parse(minimal(admin={"token": "${T:-fallback}"}), "f.yaml", env={})
    assert config.admin.token == "fallback"


def test_numbers_from_the_environment():
    data = minimal(
        server={"max_body_bytes": "${MAX_BODY:-2048}"},
        destinations=[
            hook(
                rate_limit={"rps": "${RPS:-5}", "burst": "${BURST:-10}"},
                retry={"max_attempts": "${ATTEMPTS}"},
            )
        ],
    )
    config = parse(data, "f.yaml", env={"ATTEMPTS": "3"})
    limit = config.destinations[0].rate_limit
    assert limit.rps == 5.0 and isinstance(limit.rps, float)
    assert limit.burst == 10.0
    assert config.server.max_body_bytes == 2048
    assert config.destinations[0].retry.max_attempts == 3
    config = parse(data, "f.yaml", env={"ATTEMPTS": "3", "RPS": "7.5"})
    assert config.destinations[0].rate_limit.rps == 7.5
    # a variable that is not a number where one is needed names the key
    assert_error(error_of(data, env={"ATTEMPTS": "three"}), "destinations[0].retry.max_attempts")


def test_interpolation_from_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("TL_TEST_TOKEN", "from-process")
    config = parse(minimal(admin={"token": "${TL_TEST_TOKEN}"}), "f.yaml")
    assert config.admin.token == "from-process"


def test_interpolation_in_a_file(tmp_path):
    path = tmp_path / "tl.yaml"
    path.write_text(
        "server:\n"
        "  listen: ${LISTEN:-127.0.0.1:8181}\n"
        "sources:\n"
        "  - id: segment\n"
        "    type: segment\n"
        '    write_keys: ["${KEY:-dev}"]\n'
        "destinations:\n"
        "  - id: hooks\n"
        "    type: webhook\n"
        "    url: http://127.0.0.1:9000/in\n"
        "    rate_limit:\n"
        "      rps: ${RPS:-5}\n"
    )
    config = load(str(path), env={"KEY": "live-key"})
    assert config.server.listen == "127.0.0.1:8181"
    assert config.sources[0].write_keys == ["live-key"]
    assert config.destinations[0].rate_limit.rps == 5.0


# durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("48h", 172800),
        ("7d", 604800),
        (90, 90),
        (1.5, 1.5),
        ("2", 2),
        ("0", 0),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)
    config = parse(minimal(storage={"retention": text}), "f.yaml", env={})
    assert config.storage.retention == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["3 weeks", "5 minutes", "1w", "-5s", "ms", "", "1h30m", True])
def test_bad_durations(text):
    assert_error(error_of(minimal(storage={"retention": text})), "storage.retention")


def test_durations_everywhere_they_are_used():
    data = minimal(
        dedup={"window": "30m"},
        destinations=[
            hook(
                batch={"max_events": 10, "max_wait": "250ms"},
                retry={"max_age": "2h", "initial_backoff": "100ms", "max_backoff": "1m"},
                timeout="5s",
            )
        ],
    )
    config = parse(data, "f.yaml", env={})
    destination = config.destinations[0]
    assert config.dedup.window == 1800
    assert destination.batch.max_wait == pytest.approx(0.25)
    assert destination.retry.max_age == 7200
    assert destination.retry.initial_backoff == pytest.approx(0.1)
    assert destination.retry.max_backoff == 60
    assert destination.timeout == 5


# defaults --------------------------------------------------------------------------------


def test_defaults_of_a_config_with_only_sources():
    config = parse({"sources": copy.deepcopy(SOURCES)}, "f.yaml", env={})
    assert isinstance(config, Config)
    assert config.server.listen == "127.0.0.1:8080"
    assert config.server.max_body_bytes == 512_000
    assert config.server.cors_origins == []
    assert config.server.tls is None
    assert "127.0.0.1/32" in config.server.trusted_proxies
    assert config.admin.token == "" and config.admin.listen is None
    assert config.storage.path == "./data"
    assert config.storage.durability == "process"
    assert config.storage.retention == 7 * 86400
    assert config.dedup.window == 48 * 3600
    assert config.dedup.expected_keys == 10_000_000
    assert config.dedup.false_positive_rate == pytest.approx(0.001)
    assert config.identity.pii == "hashed"
    assert config.identity.default_country == "US"
    assert config.consent.default == "grant"
    assert config.destinations == []
    assert config.events.aliases == {}


def test_destination_defaults():
    config = parse(minimal(destinations=[hook()]), "f.yaml", env={})
    destination = config.destinations[0]
    assert destination.mode == "live"
    assert destination.events is None  # omitted = all events
    assert destination.requires_consent == []
    assert destination.rename == {}
    assert destination.endpoint == ""


def test_full_contract_example_parses():
    """The config block of CONTRACT.md, with only the platform destinations left out."""
    data = {
        "server": {
            "listen": "127.0.0.1:8080",
            "max_body_bytes": 512000,
            "cors_origins": ["https://shop.example.com"],
            "trusted_proxies": ["127.0.0.1/32"],
            "tls": {"cert_file": "/etc/tl/cert.pem", "key_file": "/etc/tl/key.pem"},
        },
        "admin": {"token": "${TRACKLAYER_ADMIN_TOKEN}", "listen": "127.0.0.1:9464"},
        "storage": {"path": "./data", "durability": "power", "retention": "7d"},
        "dedup": {"window": "48h", "expected_keys": 10000000, "false_positive_rate": 0.001},
        "sources": [
            {
                "id": "segment",
                "type": "segment",
                "write_keys": ["${SEGMENT_WRITE_KEY}"],
                "shared_secret": "${SEGMENT_SHARED_SECRET:-}",
                "allow_events": ["Order Completed", "Checkout Started", "Signed Up"],
                "rate_limit": {"rps": 2000, "burst": 4000},
            },
            {"id": "web", "type": "sdk", "write_keys": ["pk_web_1"]},
        ],
        "events": {"aliases": {"Purchase Completed": "purchase"}},
        "identity": {"default_country": "US", "pii": "hashed"},
        "consent": {
            "purposes": {"ads": ["Advertising", "C0004"], "analytics": ["C0002"]},
            "default": "grant",
            "regions": {"EEA": "deny", "GB": "deny"},
            "country_header": "CF-IPCountry",
            "ldu_regions": ["US-CA"],
        },
        "alerts": {"webhook": "https://hooks.slack.com/x"},
        "destinations": [
            {
                "id": "hooks",
                "type": "webhook",
                "mode": "live",
                "url": "http://127.0.0.1:9000/in",
                "secret": "${HOOK_SECRET}",
                "events": ["purchase", "lead"],
                "requires_consent": [],
                "rate_limit": {"rps": 20, "burst": 40},
                "batch": {"max_events": 100, "max_wait": "1s"},
                "retry": {"max_attempts": 10, "max_age": "24h"},
            },
        ],
    }
    env = {"TRACKLAYER_ADMIN_TOKEN": "t", "SEGMENT_WRITE_KEY": "wk", "HOOK_SECRET": "h"}
    config = parse(data, "f.yaml", env=env)
    assert config.sources[0].write_keys == ["wk"]
    assert config.sources[0].shared_secret == ""
    assert config.sources[0].rate_limit.burst == 4000
    assert config.storage.durability == "power"
    assert config.admin.listen == "127.0.0.1:9464"
    assert config.destinations[0].retry.max_age == 86400


# files -----------------------------------------------------------------------------------


def test_load_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("sources:\n  - id: s\n    type: segment\nserver:\n  listen: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load(str(path), env={})
    text = str(caught.value)
    assert text.startswith(f"{path}: "), text
    assert "line " in text and "yaml" in text.lower(), text

    path.write_text("sources:\n  - id: s\n\ttype: segment\n")
    with pytest.raises(ConfigError) as caught:
        load(str(path), env={})
    assert "line 3" in str(caught.value), caught.value


def test_load_unreadable_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load(str(missing), env={})
    text = str(caught.value)
    assert text.startswith(f"{missing}: "), text
    assert "cannot read" in text or "no such file" in text.lower(), text
    with pytest.raises(ConfigError) as caught:
        load(str(tmp_path), env={})  # a directory
    assert str(caught.value).startswith(f"{tmp_path}: ")


def test_load_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"sources: []\nadmin:\n  token: caf\xe9\xff\n")
    with pytest.raises(ConfigError) as caught:
        load(str(path), env={})
    assert str(caught.value).startswith(f"{path}: "), caught.value


def test_load_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "tl.yaml"
    path.write_text(
        "sources:\n  - {id: s, type: segment}\n"
        "destinations:\n  - {id: h, type: webhook, url: 'http://x/y', rate_limit: {rps: x}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load(str(path), env={})
    assert str(caught.value).startswith(f"{path}: destinations[0].rate_limit.rps: ")


def test_load_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing configured yet\n")
    config = load(str(path), env={})
    assert config.server.listen == "127.0.0.1:8080"
    assert config.sources == []
