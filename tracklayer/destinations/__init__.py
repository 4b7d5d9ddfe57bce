"""Destination plugins, one module per platform, registered here by config ``type``."""

from __future__ import annotations

from tracklayer.destinations.base import Destination, DestinationConfig
from tracklayer.destinations.webhook import WebhookDestination

PLUGINS: dict[str, type] = {
    "webhook": WebhookDestination,
}


def config_types() -> tuple[type[DestinationConfig], ...]:
    """Every destination config Struct, for the config's tagged union on ``type``."""
    return tuple(plugin.config_type for plugin in PLUGINS.values())


def create(config: DestinationConfig) -> Destination:
    """The plugin instance for one configured destination."""
    for plugin in PLUGINS.values():
        if isinstance(config, plugin.config_type):
            return plugin(config)
    raise LookupError(f"no destination plugin for {type(config).__name__}")
