"""Destination plugins, one module per platform, registered here by config ``type``."""

from __future__ import annotations

from collections.abc import Iterable

from tracklayer.destinations.base import Destination, DestinationConfig, Identifier
from tracklayer.destinations.ga4 import GA4Destination
from tracklayer.destinations.google_ads import GoogleAdsDestination
from tracklayer.destinations.meta import MetaDestination
from tracklayer.destinations.tiktok import TikTokDestination
from tracklayer.destinations.webhook import WebhookDestination

PLUGINS: dict[str, type] = {
    "webhook": WebhookDestination,
    "meta": MetaDestination,
    "google_ads": GoogleAdsDestination,
    "ga4": GA4Destination,
    "tiktok": TikTokDestination,
}


def config_types() -> tuple[type[DestinationConfig], ...]:
    """Every destination config Struct, for the config's tagged union on ``type``."""
    return tuple(plugin.config_type for plugin in PLUGINS.values())


def identifiers_for(configs: Iterable[DestinationConfig]) -> set[Identifier]:
    """Every identifier the configured destinations send, for the pipeline to compute."""
    wanted: set[Identifier] = set()
    for config in configs:
        wanted.update(plugin_for(config).identifiers)
    return wanted


def match_weights_for(configs: Iterable[DestinationConfig]) -> dict[str, dict[str, float]]:
    """Destination id → its plugin's match-quality weight table (if it scores)."""
    return {
        config.id: dict(weights)
        for config in configs
        if (weights := getattr(plugin_for(config), "match_weights", None))
    }


def plugin_for(config: DestinationConfig) -> type:
    for plugin in PLUGINS.values():
        if isinstance(config, plugin.config_type):
            return plugin
    raise LookupError(f"no destination plugin for {type(config).__name__}")


def create(config: DestinationConfig) -> Destination:
    """The plugin instance for one configured destination."""
    return plugin_for(config)(config)
