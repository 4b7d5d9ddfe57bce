from __future__ import annotations

import contextlib

import pytest

from tests.fakes.webhook import FakeWebhook
from tests.harness import Daemon
from tracklayer.delivery import worker as worker_module


@pytest.fixture(autouse=True)
def fast_idle_recheck(monkeypatch):
    """Workers re-check an idle outbox every 5 s (for rows another process queued, such as
    ``tracklayer replay``); tests should not wait that long."""
    monkeypatch.setattr(worker_module, "IDLE_RECHECK_SECONDS", 0.2)


@pytest.fixture
async def hook():
    fake = await FakeWebhook(secret="s3cret").start()
    yield fake
    await fake.stop()


@pytest.fixture
def daemons():
    """Subprocess daemons started by a test, always stopped afterwards."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        with contextlib.suppress(AssertionError):
            daemon.stop()
