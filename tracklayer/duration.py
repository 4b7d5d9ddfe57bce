"""Durations as the config writes them: ``500ms``, ``30s``, ``5m``, ``48h``, ``7d``."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


class Duration(float):
    """Seconds, decoded from a duration string; a bare number means seconds."""

    def __repr__(self) -> str:
        return f"Duration({format_duration(self)})"


def parse_duration(value: object) -> Duration:
    """Parse ``value`` into seconds; raise ``ValueError`` with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 500ms, 30s, 5m, 48h or 7d")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return Duration(value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            number, unit = match.groups()
            return Duration(float(number) * _UNITS[unit or "s"])
    raise ValueError(f"expected a duration like 500ms, 30s, 5m, 48h or 7d, got {value!r}")


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` in the config's units."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{round(seconds * 1000)}ms" if seconds < 1 else f"{seconds:g}s"
