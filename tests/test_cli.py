"""The ``tracklayer`` command as a subprocess: ``check``, ``run`` (signals, logs),
``TRACKLAYER_CONFIG``, SIGHUP reload, ``replay``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.fakes.webhook import Answer, FakeWebhook
from tests.harness import Daemon, base_config, post, track, webhook

EXAMPLE = Path(__file__).resolve().parent.parent / "tracklayer.yaml.example"
RAW_EMAIL = "Grace.Hopper+cli@Example.org"


def tracklayer(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tracklayer", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        cwd=cwd,
        timeout=timeout,
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without TRACKLAYER_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKLAYER_")}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# check -----------------------------------------------------------------------------------


def test_example_config_exists():
    assert EXAMPLE.is_file(), EXAMPLE


def test_check_example_prints_the_plan(tmp_path):
    result = tracklayer("check", "--config", str(EXAMPLE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "OK" in out
    assert "127.0.0.1:8080" in out  # TRACKLAYER_LISTEN unset: the example's default
    # sources, with what they accept
    assert "segment" in out and "web" in out
    assert "sdk" in out
    # destinations with their limits, batching, retries and mode
    for text in ("hooks", "ads-hook", "observe", "20 req/s", "burst 40", "batch 100", "retry 10"):
        assert text in out, (text, out)
    assert "purchase" in out and "ads" in out
    assert not (tmp_path / "data").exists()  # check never opens the store


def test_check_shows_source_limits(tmp_path):
    config = base_config(tmp_path, destinations=[webhook("http://127.0.0.1:9/in")])
    config["sources"][0]["rate_limit"] = {"rps": 250, "burst": 500}
    config["sources"][0]["allow_events"] = ["Order Completed", "Signed Up"]
    path = write_yaml(tmp_path / "tl.yaml", config)
    result = tracklayer("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "250" in result.stdout, result.stdout
    assert "hooks" in result.stdout


BROKEN = [
    ("unknown-nested-key", "sources: []\nserver:\n  lisen: 127.0.0.1:1\n", "server.lisen"),
    (
        "missing-url",
        "sources: []\ndestinations:\n  - {id: h, type: webhook}\n",
        "destinations[0].url",
    ),
    ("bad-duration", "sources: []\nstorage:\n  retention: 3 weeks\n", "storage.retention"),
    ("unset-variable", "sources: []\nadmin:\n  token: ${TL_CLI_UNSET_TOKEN}\n", "admin.token"),
    (
        "bad-rps",
        "sources: []\ndestinations:\n  - id: h\n    type: webhook\n    url: http://x/y\n"
        "    rate_limit:\n      rps: fast\n",
        "destinations[0].rate_limit.rps",
    ),
]


@pytest.mark.parametrize(("text", "key"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_check_broken_config_exits_1_naming_the_key(tmp_path, text, key):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    result = tracklayer("check", "--config", str(path))
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one clear line, no traceback
    assert lines[0].startswith(f"{path}: {key}: "), lines[0]
    assert "OK" not in result.stdout


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"sources:\n  - id: s\n\ttype: segment\n", "line 3"),
        (b"sources: []\nadmin:\n  token: caf\xe9\xff\n", ""),
    ],
    ids=["invalid-yaml", "not-utf8"],
)
def test_check_unparsable_file_exits_1_with_one_line(tmp_path, content, what):
    path = tmp_path / "broken.yaml"
    path.write_bytes(content)
    result = tracklayer("check", "--config", str(path))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip()
    assert line.startswith(f"{path}: "), line
    assert what in line


def test_check_missing_file(tmp_path):
    path = tmp_path / "absent.yaml"
    result = tracklayer("check", "--config", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().startswith(f"{path}: "), result.stderr
    assert "Traceback" not in result.stderr


def test_tracklayer_config_env_is_the_default(tmp_path):
    result = tracklayer("check", env=clean_env(TRACKLAYER_CONFIG=str(EXAMPLE)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ads-hook" in result.stdout

    broken = tmp_path / "broken.yaml"
    broken.write_text("sources: []\nbogus: 1\n")
    result = tracklayer("check", env=clean_env(TRACKLAYER_CONFIG=str(broken)))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{broken}: bogus: unknown key"

    # --config wins over the variable
    result = tracklayer(
        "check", "--config", str(EXAMPLE), env=clean_env(TRACKLAYER_CONFIG=str(broken))
    )
    assert result.returncode == 0, result.stderr

    # neither: a usage error, not a crash
    result = tracklayer("check", env=clean_env())
    assert result.returncode != 0
    assert "TRACKLAYER_CONFIG" in result.stderr
    assert "Traceback" not in result.stderr


# run on the example ------------------------------------------------------------------------


def wait_for_line(path: Path, message: str, process: subprocess.Popen, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == message:
                return entry
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}: {path.read_text()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no {message!r} line: {path.read_text()[-3000:]}")


async def test_run_example_serves_and_stops_on_sigterm(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    stderr_path, stdout_path = tmp_path / "stderr.log", tmp_path / "stdout.log"
    env = clean_env(
        TRACKLAYER_LISTEN=f"127.0.0.1:{port}", TRACKLAYER_DATA=str(data), PYTHONUNBUFFERED="1"
    )
    with open(stderr_path, "wb") as err, open(stdout_path, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tracklayer", "run", "--config", str(EXAMPLE)],
            stdout=out,
            stderr=err,
            env=env,
            cwd=tmp_path,
        )
    try:
        started = await asyncio.to_thread(wait_for_line, stderr_path, "started", process)
        assert started["listen"]["public"] == f"127.0.0.1:{port}"
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/healthz") as response:
                assert response.status == 200
            async with session.get(url + "/readyz") as response:
                assert response.status == 200

        traits = {"email": RAW_EMAIL, "phone": "+1 415 555 0100"}
        message = track(
            "Order Completed",
            userId="cli-user",
            messageId="cli-1",
            properties={"order_id": "o-cli", "value": 12.5, "currency": "USD"},
            context={"traits": traits},
        )
        status, body, _ = await post(url + "/v1/track", message, key="dev_write_key")
        assert (status, body) == (200, {"success": True})
        identify = {"userId": "cli-user", "traits": traits, "messageId": "cli-2"}
        status, body, _ = await post(url + "/v1/identify", identify, key="dev_write_key")
        assert (status, body) == (200, {"success": True})
        status, _, _ = await post(url + "/v1/track", message, key="not-the-key")
        assert status == 401
        # a refused message carrying the email must not put it in the logs either
        bad = dict(message, timestamp="whenever", messageId="cli-3")
        status, _, _ = await post(url + "/v1/track", bad, key="dev_write_key")
        assert status == 400

        await asyncio.sleep(0.2)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 10)
        assert code == 0, stderr_path.read_text()[-3000:]
        assert time.monotonic() - signalled < 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)

    lines = [line for line in stderr_path.read_text().splitlines() if line.strip()]
    assert lines, "no logs at all"
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object
        assert isinstance(entry, dict) and "msg" in entry and "level" in entry, line
        entries.append(entry)
    assert [e["msg"] for e in entries].count("started") == 1
    assert entries[-1]["msg"] == "stopped", entries[-3:]
    logs = stderr_path.read_text() + stdout_path.read_text()
    assert RAW_EMAIL not in logs and RAW_EMAIL.lower() not in logs
    assert "dev_write_key" not in logs
    # identity.pii: hashed in the example: the store keeps no raw email at rest either
    for file in data.iterdir():
        content = file.read_bytes()
        assert RAW_EMAIL.encode() not in content, file
        assert RAW_EMAIL.lower().encode() not in content, file


def test_run_on_a_taken_port_exits_1(tmp_path):
    """Says why and exits (so a supervisor restarts it), rather than hanging."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        env = clean_env(TRACKLAYER_LISTEN=f"127.0.0.1:{port}", TRACKLAYER_DATA=str(tmp_path))
        process = subprocess.Popen(
            [sys.executable, "-m", "tracklayer", "run", "--config", str(EXAMPLE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        try:
            _, stderr = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate(timeout=5)
            raise AssertionError(
                f"still running 5 s after failing to bind: {stderr[-2000:]}"
            ) from None
    assert process.returncode == 1, stderr[-2000:]
    assert "address already in use" in stderr.lower() or str(port) in stderr, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]


def test_run_broken_config_exits_1(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("sources: []\nserver:\n  lisen: x\n")
    result = tracklayer("run", "--config", str(path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"{path}: server.lisen: unknown key"


# SIGHUP ------------------------------------------------------------------------------------


async def test_sighup_reload_adds_destination_and_keeps_running_config_on_error(tmp_path, daemons):
    first = await FakeWebhook(secret="s3cret").start()
    second = await FakeWebhook(secret="other-secret").start()
    try:
        config = base_config(tmp_path, destinations=[webhook(first.url)])
        daemon = Daemon(tmp_path, config)
        daemons.append(daemon)
        await asyncio.to_thread(daemon.start)

        status, _, _ = await post(daemon.url + "/v1/track", track(messageId="before"))
        assert status == 200
        await first.wait_for(1)
        status, _, _ = await post(daemon.url + "/v1/track", track(), key="added_key")
        assert status == 401  # not configured yet

        # add a destination and a source, then SIGHUP
        reloaded = base_config(
            tmp_path,
            destinations=[
                webhook(first.url),
                webhook(second.url, secret="other-secret", id="second"),
            ],
        )
        reloaded["sources"].append({"id": "added", "type": "segment", "write_keys": ["added_key"]})
        offset = daemon.log_size()
        daemon.write_config(reloaded)
        daemon.signal(signal.SIGHUP)
        entry = await asyncio.to_thread(daemon.wait_for_log, "reloaded", 10, offset)
        assert entry["destinations"] == ["hooks", "second"]

        status, body, _ = await post(daemon.url + "/v1/track", track(messageId="after"))
        assert (status, body) == (200, {"success": True})
        status, _, _ = await post(
            daemon.url + "/v1/track", track(messageId="added-src"), key="added_key"
        )
        assert status == 200
        await first.wait_for(3)
        await second.wait_for(2)
        assert sorted(e["message_id"] for e in first.accepted_events) == [
            "added-src",
            "after",
            "before",
        ]
        assert sorted(e["message_id"] for e in second.accepted_events) == ["added-src", "after"]

        # an invalid config: SIGHUP keeps the running one and says which key is wrong
        offset = daemon.log_size()
        broken = json.loads(json.dumps(reloaded))
        broken["destinations"][1]["urll"] = broken["destinations"][1].pop("url")
        daemon.write_config(broken)
        daemon.signal(signal.SIGHUP)
        failed = await asyncio.to_thread(
            daemon.wait_for_log, "reload failed; keeping the running config", 10, offset
        )
        assert "destinations[1].urll" in failed["error"], failed
        assert failed.get("level") == "error"
        assert daemon.process.poll() is None

        status, body, _ = await post(daemon.url + "/v1/track", track(messageId="still"))
        assert (status, body) == (200, {"success": True})
        status, _, _ = await post(
            daemon.url + "/v1/track", track(messageId="still-added"), key="added_key"
        )
        assert status == 200
        await first.wait_for(5)
        await second.wait_for(4)
        assert sorted(e["message_id"] for e in second.accepted_events) == [
            "added-src",
            "after",
            "still",
            "still-added",
        ]
        async with (
            aiohttp.ClientSession() as session,
            session.get(daemon.url + "/readyz") as response,
        ):
            assert response.status == 200

        # a reload that removes a destination stops deliveries to it
        offset = daemon.log_size()
        daemon.write_config(config)
        daemon.signal(signal.SIGHUP)
        await asyncio.to_thread(daemon.wait_for_log, "reloaded", 10, offset)
        status, _, _ = await post(daemon.url + "/v1/track", track(messageId="last"))
        assert status == 200
        status, _, _ = await post(daemon.url + "/v1/track", track(), key="added_key")
        assert status == 401  # the removed source's key no longer works
        await first.wait_for(6)
        await asyncio.sleep(0.3)
        assert len(second.accepted_events) == 4
        assert first.problems == [] and second.problems == []

        assert await asyncio.to_thread(daemon.stop) == 0
    finally:
        await first.stop()
        await second.stop()


# replay ------------------------------------------------------------------------------------


def test_replay_unknown_destination_exits_1(tmp_path):
    env = clean_env(TRACKLAYER_DATA=str(tmp_path / "data"))
    result = tracklayer(
        "replay", "--config", str(EXAMPLE), "--destination", "nope", env=env, cwd=tmp_path
    )
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "nope" in message, message
    assert "hooks" in message  # says which destinations exist
    assert "Traceback" not in message
    assert not (tmp_path / "data").exists()  # nothing was opened or created


def test_replay_without_destination_is_a_usage_error(tmp_path):
    result = tracklayer("replay", "--config", str(EXAMPLE), cwd=tmp_path)
    assert result.returncode == 2
    assert "--destination" in result.stderr


async def test_replay_requeues_dead_letters(tmp_path, hook, daemons):
    hook.script = [Answer(status=400, body=b'{"error":"bad payload"}')]
    config = base_config(tmp_path, destinations=[webhook(hook.url)])
    daemon = Daemon(tmp_path, config)
    daemons.append(daemon)
    await asyncio.to_thread(daemon.start)
    status, _, _ = await post(daemon.url + "/v1/track", track(messageId="dead-1"))
    assert status == 200
    await wait_for_requests(hook, 1)
    await asyncio.sleep(0.2)  # the rejection is recorded as a dead letter
    assert await asyncio.to_thread(daemon.stop) == 0
    assert hook.accepted_events == []

    result = await asyncio.to_thread(
        tracklayer, "replay", "--config", str(daemon.config_path), "--destination", "hooks"
    )
    assert result.returncode == 0, result.stderr
    assert "1" in result.stdout and "hooks" in result.stdout, result.stdout

    await asyncio.to_thread(daemon.start)
    events = await hook.wait_for(1)
    assert [e["message_id"] for e in events] == ["dead-1"]
    assert hook.problems == []


async def wait_for_requests(hook: FakeWebhook, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while len(hook.requests) < count:
        assert time.monotonic() < deadline, "no delivery attempt arrived"
        await asyncio.sleep(0.02)
