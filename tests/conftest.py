from __future__ import annotations

import contextlib

import pytest

from tests.fakes.webhook import FakeWebhook
from tests.harness import Daemon


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
