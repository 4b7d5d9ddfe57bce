"""The single-event baseline: a bare aiohttp + uvloop handler on the same machine.

It does only what no ingest server can avoid: read the body, msgspec-decode it, answer
``{"success": true}``. Same server setup as TrackLayer (AppRunner, no access log, no
auto-decompress), so the ratio TrackLayer / baseline isolates TrackLayer's own work.

    python bench/baseline_server.py [--listen 127.0.0.1:0]

Logs ``{"msg": "started", "listen": {"public": "HOST:PORT"}}`` on stderr like the daemon,
and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import msgspec
import uvloop
from aiohttp import web

SUCCESS = b'{"success":true}'
_decode = msgspec.json.Decoder().decode


async def handle(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        _decode(body)
    except msgspec.DecodeError:
        return web.Response(
            status=400,
            body=b'{"success":false,"code":"invalid_json","message":"malformed JSON"}',
            content_type="application/json",
        )
    return web.Response(body=SUCCESS, content_type="application/json")


async def main(listen: str) -> None:
    host, _, port = listen.rpartition(":")
    app = web.Application(client_max_size=2**31)
    for path in ("/v1/track", "/v1/batch"):
        app.router.add_post(path, handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, host, int(port), reuse_address=True)
    await site.start()
    bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]
    print(
        json.dumps({"msg": "started", "listen": {"public": f"{bound[0]}:{bound[1]}"}}),
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    uvloop.run(main(parser.parse_args().listen))
