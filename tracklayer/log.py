"""Structured logs: one JSON object per line on stderr.

Fields come from ``extra={"fields": {...}}``. Nothing here ever receives an event body, a
write key or a secret; values under keys that look secret are masked all the same.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_SECRET_SUFFIXES = ("token", "secret", "password", "authorization", "write_key", "api_key")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry[key] = "***" if key.lower().endswith(_SECRET_SUFFIXES) else value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would print every request: too much at ingest rates.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
