"""A real full file system under storage.path (a small tmpfs): ingest answers 503, nothing
acknowledged is lost, and service resumes by itself when space returns."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from tests.harness import base_config, request_json, start_app, track, webhook


def mount(path, size: str, remount: bool = False) -> bool:
    options = f"remount,size={size}" if remount else f"size={size}"
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    return result.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    if os.geteuid() != 0 or not mount(path, "1m"):
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: a tmpfs must be mountable for the disk-full test")
        pytest.skip("mounting a tmpfs needs root")
    yield path
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


async def test_full_disk_answers_503_and_loses_nothing(tmp_path, small_disk, hook):
    config = base_config(tmp_path, destinations=[webhook(hook.url)])
    config["storage"] = {"path": str(small_disk)}
    app = await start_app(config)
    try:
        padding = "x" * 4000
        acknowledged, refused = [], []
        for i in range(2000):
            message = track(messageId=f"m-{i}", properties={"order_id": f"o-{i}", "note": padding})
            status, body, headers = await app.post("/v1/track", message)
            if status == 200:
                acknowledged.append(f"m-{i}")
                continue
            assert (status, body["code"]) == (503, "unavailable"), body
            assert headers.get("Retry-After")
            refused.append(f"m-{i}")
            if len(refused) >= 3:
                break
        assert refused, "the 1 MB file system never filled"
        status, _, _ = await request_json("GET", app.url + "/readyz")
        assert status == 503

        assert mount(small_disk, "64m", remount=True)  # space returns
        for _ in range(50):
            status, _, _ = await request_json("GET", app.url + "/readyz")
            if status == 200:
                break
            await asyncio.sleep(0.1)
        assert status == 200
        for message_id in refused:  # the client retries what was refused
            status, _, _ = await app.post("/v1/track", track(messageId=message_id))
            assert status == 200
        await hook.wait_for_ids(set(acknowledged) | set(refused), timeout=30)
        delivered = [e["message_id"] for e in hook.accepted_events]
        assert len(delivered) == len(set(delivered))
        print(f"\nacknowledged {len(acknowledged)} before the disk filled, refused {len(refused)}")
    finally:
        await app.stop()
