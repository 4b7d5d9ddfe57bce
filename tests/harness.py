"""Running real TrackLayer daemons for tests: in this process (fast) or as a subprocess
(for signals, kill -9 and the CLI). Both use real HTTP on loopback and real SQLite files."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tracklayer.app import TrackLayer
from tracklayer.config import parse

WRITE_KEY = "test_write_key"
SDK_KEY = "pk_test_sdk"
ADMIN_TOKEN = "admin-test-token"


def base_config(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """A minimal config: one Segment source, one SDK source, no destinations yet."""
    config: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:0", "cors_origins": ["https://shop.example.com"]},
        "admin": {"token": ADMIN_TOKEN},
        "storage": {"path": str(tmp_path / "data")},
        "dedup": {"window": "48h", "expected_keys": 10000, "false_positive_rate": 0.001},
        "sources": [
            {"id": "segment", "type": "segment", "write_keys": [WRITE_KEY]},
            {"id": "web", "type": "sdk", "write_keys": [SDK_KEY]},
        ],
        "destinations": [],
    }
    config.update(sections)
    return config


def webhook(url: str, secret: str = "s3cret", **keys: Any) -> dict[str, Any]:
    destination = {
        "id": "hooks",
        "type": "webhook",
        "url": url,
        "secret": secret,
        "batch": {"max_events": 100, "max_wait": "50ms"},
        "retry": {"max_attempts": 10, "initial_backoff": "50ms", "max_backoff": "500ms"},
    }
    destination.update(keys)
    return destination


class Running:
    """An in-process daemon (started in the test's event loop)."""

    def __init__(self, app: TrackLayer) -> None:
        self.app = app
        self.url = f"http://{app.addresses['public']}"

    async def post(self, path: str, body: Any, key: str | None = WRITE_KEY, **kwargs) -> tuple:
        return await post(self.url + path, body, key, **kwargs)

    async def stop(self) -> None:
        await self.app.stop()


async def start_app(config: dict[str, Any]) -> Running:
    app = TrackLayer(parse(config, "test.yaml"))
    await app.start()
    return Running(app)


async def post(
    url: str,
    body: Any,
    key: str | None = WRITE_KEY,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict, dict[str, str]]:
    """POST JSON (or ``raw`` bytes) with Basic auth; returns (status, JSON body, headers)."""
    all_headers = {"Authorization": basic(key)} if key else {}
    all_headers.update(headers or {})
    data = raw if raw is not None else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=all_headers) as response,
    ):
        text = await response.read()
        try:
            document = json.loads(text) if text else {}
        except ValueError:
            document = {"raw": text.decode("utf-8", "replace")}
        return response.status, document, dict(response.headers)


async def request_json(
    method: str, url: str, token: str | None = None
) -> tuple[int, dict, dict[str, str]]:
    """A request with an optional admin Bearer token; returns (status, JSON, headers)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers) as response,
    ):
        text = await response.read()
        return response.status, json.loads(text) if text else {}, dict(response.headers)


def basic(key: str, colon: bool = True) -> str:
    """``Authorization: Basic`` for a write key, as Segment's clients send it."""
    return "Basic " + base64.b64encode((key + (":" if colon else "")).encode()).decode()


def track(event: str = "Order Completed", **fields: Any) -> dict[str, Any]:
    message = {"type": "track", "userId": "u1", "event": event, "properties": {}}
    message.update(fields)
    return message


class Daemon:
    """``tracklayer run`` as a subprocess, on a config file in ``tmp_path``."""

    def __init__(self, tmp_path: Path, config: dict[str, Any], name: str = "daemon") -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.config_path = tmp_path / f"{name}.yaml"
        self.log_path = tmp_path / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.url = ""

    def write_config(self, config: dict[str, Any] | None = None) -> None:
        if config is not None:
            self.config = config
        self.config_path.write_text(yaml.safe_dump(self.config))

    def start(self, timeout: float = 15.0) -> Daemon:
        self.write_config()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process
        self._offset = self.log_path.stat().st_size
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tracklayer", "run", "--config", str(self.config_path)],
            stdout=self._log,
            stderr=self._log,
            env=env,
        )
        started = self.wait_for_log("started", timeout)
        self.url = "http://" + started["listen"]["public"]
        return self

    def logs(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"msg": line})
        return lines

    def wait_for_log(self, message: str, timeout: float = 15.0, after: int | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[self._offset if after is None else after :]
            for line in text.decode(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("msg") == message:
                    return entry
            if self.process and self.process.poll() is not None:
                raise AssertionError(f"daemon exited: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"no {message!r} log line: {self.log_path.read_text()[-3000:]}")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError("daemon did not stop on SIGTERM") from None


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
