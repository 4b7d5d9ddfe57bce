"""The YAML config as msgspec Structs, with ``${ENV}`` interpolation and errors that name
the key at fault (``FILE: path.to.key: what is wrong``)."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any, Literal, Union

import msgspec
import yaml

from tracklayer import destinations
from tracklayer.destinations.base import DestinationConfig, RateLimit
from tracklayer.duration import Duration, parse_duration


class ConfigError(Exception):
    """A config that cannot run; ``str()`` is the line to print."""

    def __init__(self, file: str, path: str, problem: str) -> None:
        self.file, self.path, self.problem = file, path, problem
        super().__init__(f"{file}: {path}: {problem}" if path else f"{file}: {problem}")


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:8080``) → ``(host, port)``."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class TLS(_Section):
    cert_file: str
    key_file: str


class Server(_Section):
    listen: str = "127.0.0.1:8080"
    max_body_bytes: int = 512_000
    cors_origins: list[str] = []
    trusted_proxies: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    tls: TLS | None = None

    def __post_init__(self) -> None:
        try:
            split_listen(self.listen)
        except ValueError as problem:
            raise ValueError(f"listen: {problem}") from None
        if self.max_body_bytes < 1024:
            raise ValueError("max_body_bytes: must be at least 1024")
        for network in self.trusted_proxies:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as problem:
                raise ValueError(f"trusted_proxies: {problem}") from None


class Admin(_Section):
    token: str = ""
    listen: str | None = None

    def __post_init__(self) -> None:
        if self.listen:
            try:
                split_listen(self.listen)
            except ValueError as problem:
                raise ValueError(f"listen: {problem}") from None


class Storage(_Section):
    path: str = "./data"
    durability: Literal["process", "power"] = "process"
    retention: Duration = Duration(7 * 86400)


class Dedup(_Section):
    window: Duration = Duration(48 * 3600)
    expected_keys: int = 10_000_000
    false_positive_rate: float = 0.001

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise ValueError("window: must be greater than 0")
        if self.expected_keys < 1:
            raise ValueError("expected_keys: must be at least 1")
        if not 0 < self.false_positive_rate < 1:
            raise ValueError("false_positive_rate: must be between 0 and 1")


class Source(_Section):
    id: str
    type: Literal["segment", "sdk", "shopify"]
    write_keys: list[str] = []
    shared_secret: str = ""
    secret: str = ""
    allow_events: list[str] | None = None
    rate_limit: RateLimit | None = None


class Events(_Section):
    aliases: dict[str, str] = {}


class Identity(_Section):
    default_country: str = "US"
    pii: Literal["hashed", "raw"] = "hashed"
    # how long a click id stays usable after the click, per id (defaults in
    # pipeline/click_ids.py: each platform's longest click-through window)
    click_id_windows: dict[str, Duration] = {}
    retention: Duration = Duration(400 * 86400)  # profiles not seen for this long are deleted

    def __post_init__(self) -> None:
        if len(self.default_country) != 2 or not self.default_country.isalpha():
            raise ValueError("default_country: expected an ISO 3166-1 alpha-2 code like US")


class Consent(_Section):
    purposes: dict[str, list[str]] = {}
    default: Literal["grant", "deny"] = "grant"
    regions: dict[str, Literal["grant", "deny"]] = {}
    country_header: str = ""
    ldu_regions: list[str] = []


class Alerts(_Section):
    webhook: str = ""


# A tagged union on ``type`` over every registered plugin (built at import, hence Union).
AnyDestination = Union[destinations.config_types()]  # type: ignore[valid-type]  # noqa: UP007


class Config(_Section):
    server: Server = msgspec.field(default_factory=Server)
    admin: Admin = msgspec.field(default_factory=Admin)
    storage: Storage = msgspec.field(default_factory=Storage)
    dedup: Dedup = msgspec.field(default_factory=Dedup)
    sources: list[Source] = []
    events: Events = msgspec.field(default_factory=Events)
    identity: Identity = msgspec.field(default_factory=Identity)
    consent: Consent = msgspec.field(default_factory=Consent)
    alerts: Alerts = msgspec.field(default_factory=Alerts)
    destinations: list[AnyDestination] = []  # type: ignore[valid-type]

    def destination(self, destination_id: str) -> DestinationConfig:
        for destination in self.destinations:
            if destination.id == destination_id:
                return destination
        known = ", ".join(d.id for d in self.destinations) or "none"
        raise KeyError(f"no destination {destination_id!r} (configured: {known})")


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")


def interpolate(value: Any, path: str, file: str, env: dict[str, str]) -> Any:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in every string of the parsed YAML."""
    if isinstance(value, dict):
        return {
            key: interpolate(item, join_path(path, str(key)), file, env)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [interpolate(item, f"{path}[{i}]", file, env) for i, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, has_default, default = match.group(1), match.group(2), match.group(3)
        if name in env:
            return env[name]
        if has_default is not None:
            return default or ""
        raise ConfigError(file, path, f"environment variable {name} is not set")

    return _ENV.sub(replace, value)


def join_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _decode_hook(kind: type, value: Any) -> Any:
    if kind is Duration:
        return parse_duration(value)
    raise NotImplementedError


def _yaml_path(msgspec_path: str) -> str:
    """msgspec's ``$.destinations[0].url`` → ``destinations[0].url``."""
    return msgspec_path.removeprefix("$").removeprefix(".")


_ERROR = re.compile(r"^(?P<problem>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)


def parse(data: Any, file: str, env: dict[str, str] | None = None) -> Config:
    """Validate parsed YAML into a ``Config``, or raise ``ConfigError`` naming the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, "", "the top level must be a mapping of sections")
    data = interpolate(data, "", file, dict(os.environ) if env is None else env)
    listed = data.get("destinations")
    for i, destination in enumerate(listed if isinstance(listed, list) else []):
        if isinstance(destination, dict) and "type" not in destination:
            known = ", ".join(sorted(destinations.PLUGINS))
            raise ConfigError(file, f"destinations[{i}].type", f"required (one of: {known})")
    try:
        config = msgspec.convert(data, Config, strict=False, dec_hook=_decode_hook)
    except msgspec.ValidationError as error:
        match = _ERROR.match(str(error))
        assert match is not None
        path = _yaml_path(match.group("path") or "")
        problem = match.group("problem")
        unknown = re.match(r"Object contains unknown field `(.+)`", problem)
        if unknown:
            path, problem = join_path(path, unknown.group(1)), "unknown key"
        missing = re.match(r"Object missing required field `(.+)`", problem)
        if missing:
            path, problem = join_path(path, missing.group(1)), "required key is missing"
        # __post_init__ checks say "key: problem" so the path can name the key itself
        own_key = re.match(r"^([a-z_]+): (.+)$", problem, re.S)
        if own_key:
            path, problem = join_path(path, own_key.group(1)), own_key.group(2)
        if path.endswith(".type") and problem.startswith("Invalid value"):
            known = ", ".join(sorted(destinations.PLUGINS))
            problem = f"unknown type {problem.removeprefix('Invalid value ')} (known: {known})"
        raise ConfigError(file, path, problem[0].lower() + problem[1:]) from None
    check_references(config, file)
    return config


def check_references(config: Config, file: str) -> None:
    """Rules that span keys: unique ids, write keys owned by one source."""
    owners: dict[str, str] = {}
    seen_sources: set[str] = set()
    for i, source in enumerate(config.sources):
        if source.id in seen_sources:
            raise ConfigError(file, f"sources[{i}].id", f"duplicate source id {source.id!r}")
        seen_sources.add(source.id)
        for key in source.write_keys:
            if not key:
                raise ConfigError(file, f"sources[{i}].write_keys", "a write key is empty")
            if key in owners:
                raise ConfigError(
                    file, f"sources[{i}].write_keys", f"write key already used by {owners[key]!r}"
                )
            owners[key] = source.id
    seen_destinations: set[str] = set()
    for i, destination in enumerate(config.destinations):
        if destination.id in seen_destinations:
            raise ConfigError(
                file, f"destinations[{i}].id", f"duplicate destination id {destination.id!r}"
            )
        seen_destinations.add(destination.id)


def load(file: str, env: dict[str, str] | None = None) -> Config:
    """Read, interpolate and validate the config file."""
    try:
        with open(file, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError(file, "", f"cannot read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(file, "", f"not UTF-8 text (byte {error.start})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or error
        raise ConfigError(file, "", f"{where}invalid YAML: {problem}") from None
    return parse(data, file, env)
