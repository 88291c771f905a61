"""The one settings object, resolved once from environment variables at start-up.

Every knob the README documents lives here; nothing else in the package reads ``os.environ``.
A bad value raises ``ConfigError`` whose message names the variable and the value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pipeline.core.windows import Monitor, parse_monitors
from pipeline.errors import ConfigError

__all__ = ["Settings", "load_settings"]

T = TypeVar("T")

DEFAULT_MONITORS = "60,1 300,6 1800,4"
#: ``INBOUND_AUDIT_DECODER``: ``auto`` takes the native decoder when it is built, else Python.
DECODER_CHOICES = ("auto", "python", "native")


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; build it with ``load_settings()`` (or directly in tests)."""

    bootstrap_servers: str | None = None
    local_kafka_port: int = 9092
    home_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "inbound-audit")
    monitors: tuple[Monitor, ...] = parse_monitors(DEFAULT_MONITORS)
    max_future_s: float = 300.0
    events_topic: str = "mta.events"
    requests_topic: str = "audit.requests"
    reply_topic_prefix: str = "audit.replies"
    deadletter_topic: str = "audit.deadletter"
    windows_topic: str = "audit.windows"
    state_topic: str = "audit.state"
    partitions: int = 8
    replication_factor: int = 1
    group_id: str = "inbound-audit"
    window_grace_s: float = 5.0
    top_talkers: int = 10
    batch_max_events: int = 20_000
    snapshot_interval_s: float = 60.0
    snapshot_dir: Path | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    kafka_timeout_s: float = 60.0
    decoder: str = "auto"

    @property
    def bootstrap(self) -> str:
        """Where to connect: the configured servers, or the local broker's address."""
        return self.bootstrap_servers or f"127.0.0.1:{self.local_kafka_port}"

    @property
    def snapshot_path(self) -> Path:
        """This fleet's local replica snapshot (one per state topic: any worker may load it)."""
        return (self.snapshot_dir or self.home_dir / "snapshots") / f"{self.state_topic}.snapshot"

    @property
    def uses_local_kafka(self) -> bool:
        return not self.bootstrap_servers


def _read(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name}={raw!r} is invalid: {exc}") from None


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return parse


def _positive_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError("must be a non-negative number of seconds")
    return value


def _topic_name(text: str) -> str:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if len(text) > 249 or not set(text) <= allowed or text in (".", ".."):
        raise ValueError("a Kafka topic name is 1-249 of [a-zA-Z0-9._-]")
    return text


def _decoder(text: str) -> str:
    if text not in DECODER_CHOICES:
        raise ValueError(f"must be one of {', '.join(DECODER_CHOICES)}")
    return text


def _monitors(text: str) -> tuple[Monitor, ...]:
    return parse_monitors(text)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from the environment (or the mapping given, for tests)."""
    env = os.environ if env is None else env
    d = Settings()
    return Settings(
        bootstrap_servers=_read(env, "KAFKA_BOOTSTRAP_SERVERS", str, d.bootstrap_servers),
        local_kafka_port=_read(env, "INBOUND_AUDIT_KAFKA_PORT", _int_in(1, 65535), d.local_kafka_port),
        home_dir=_read(env, "INBOUND_AUDIT_HOME", Path, d.home_dir),
        monitors=_read(env, "INBOUND_AUDIT_MONITORS", _monitors, d.monitors),
        max_future_s=_read(env, "INBOUND_AUDIT_MAX_FUTURE_S", _positive_float, d.max_future_s),
        events_topic=_read(env, "INBOUND_AUDIT_EVENTS_TOPIC", _topic_name, d.events_topic),
        requests_topic=_read(env, "INBOUND_AUDIT_REQUESTS_TOPIC", _topic_name, d.requests_topic),
        reply_topic_prefix=_read(env, "INBOUND_AUDIT_REPLY_TOPIC_PREFIX", _topic_name, d.reply_topic_prefix),
        deadletter_topic=_read(env, "INBOUND_AUDIT_DEADLETTER_TOPIC", _topic_name, d.deadletter_topic),
        windows_topic=_read(env, "INBOUND_AUDIT_WINDOWS_TOPIC", _topic_name, d.windows_topic),
        state_topic=_read(env, "INBOUND_AUDIT_STATE_TOPIC", _topic_name, d.state_topic),
        partitions=_read(env, "INBOUND_AUDIT_PARTITIONS", _int_in(1, 1024), d.partitions),
        replication_factor=_read(env, "INBOUND_AUDIT_REPLICATION_FACTOR", _int_in(1, 16), d.replication_factor),
        group_id=_read(env, "INBOUND_AUDIT_GROUP_ID", str, d.group_id),
        window_grace_s=_read(env, "INBOUND_AUDIT_WINDOW_GRACE_S", _positive_float, d.window_grace_s),
        top_talkers=_read(env, "INBOUND_AUDIT_TOP_TALKERS", _int_in(1, 1000), d.top_talkers),
        batch_max_events=_read(env, "INBOUND_AUDIT_BATCH_MAX_EVENTS", _int_in(1, 10_000_000), d.batch_max_events),
        snapshot_interval_s=_read(env, "INBOUND_AUDIT_SNAPSHOT_INTERVAL_S", _positive_float, d.snapshot_interval_s),
        snapshot_dir=_read(env, "INBOUND_AUDIT_SNAPSHOT_DIR", Path, d.snapshot_dir),
        web_host=_read(env, "INBOUND_AUDIT_WEB_HOST", str, d.web_host),
        web_port=_read(env, "INBOUND_AUDIT_WEB_PORT", _int_in(0, 65535), d.web_port),
        kafka_timeout_s=_read(env, "INBOUND_AUDIT_KAFKA_TIMEOUT_S", _positive_float, d.kafka_timeout_s),
        decoder=_read(env, "INBOUND_AUDIT_DECODER", _decoder, d.decoder),
    )
