"""The one settings object, resolved once from environment variables at start-up.

Every knob the README documents lives here; nothing else in the package reads ``os.environ``.
A bad value raises ``ConfigError`` whose message names the variable and the value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pipeline.core.series import SeriesDef, parse_series_list
from pipeline.core.windows import Monitor, parse_monitors
from pipeline.errors import ConfigError

__all__ = ["Settings", "Secret", "load_settings", "SECURITY_PROTOCOLS", "SASL_MECHANISMS"]

T = TypeVar("T")

DEFAULT_MONITORS = "60,1 300,6 1800,4"
#: ``INBOUND_AUDIT_DECODER``: ``auto`` takes the native decoder when it is built, else Python.
DECODER_CHOICES = ("auto", "python", "native")

#: What ``INBOUND_AUDIT_SECURITY_PROTOCOL`` accepts: Kafka's own listener security protocols.
SECURITY_PROTOCOLS: tuple[str, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: What ``INBOUND_AUDIT_SASL_MECHANISM`` accepts (username and password mechanisms only).
SASL_MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class Secret:
    """A password that cannot leak by accident: its repr and str are masked; ``reveal()`` says you meant it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; build it with ``load_settings()`` (or directly in tests)."""

    bootstrap_servers: str | None = None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: Secret | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
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
    series_topic: str = "audit.series"
    #: Series defined by configuration (``INBOUND_AUDIT_SERIES``), known before any log is read.
    series: tuple[SeriesDef, ...] = ()
    partitions: int = 8
    replication_factor: int = 1
    group_id: str = "inbound-audit"
    window_grace_s: float = 5.0
    top_talkers: int = 10
    batch_max_events: int = 20_000
    #: The worker consumer's fetch size (a quarter of it per partition): small answers requests
    #: sooner while events stream in, large ingests faster (see ``pipeline/app/transport.py``).
    fetch_max_bytes: int = 2 << 20
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
    def longest_span_s(self) -> int:
        """The longest a delta matters: the longest monitor or configured series span (seconds).
        The state log keeps that plus an hour, and no series may be defined longer."""
        return max([m.span_s for m in self.monitors] + [d.interval * d.num_windows for d in self.series])

    @property
    def snapshot_path(self) -> Path:
        """This fleet's local replica snapshot (one per state topic: any worker may load it)."""
        return (self.snapshot_dir or self.home_dir / "snapshots") / f"{self.state_topic}.snapshot"

    @property
    def uses_local_kafka(self) -> bool:
        return not self.bootstrap_servers

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")


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


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.upper() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text.upper()

    return parse


def _boolean(text: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "on": True, "false": False, "no": False, "0": False, "off": False}
    if text.lower() not in words:
        raise ValueError("must be true or false")
    return words[text.lower()]


def _readable_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError("no such file")
    return path


def _password(env: Mapping[str, str]) -> Secret | None:
    """From ``INBOUND_AUDIT_SASL_PASSWORD`` or the file ``..._FILE`` names (a mounted secret); never both.

    Errors name the variable, and the file's path, but never the password.
    """
    inline, path = env.get("INBOUND_AUDIT_SASL_PASSWORD", ""), env.get("INBOUND_AUDIT_SASL_PASSWORD_FILE", "").strip()
    if inline and path:
        raise ConfigError("set INBOUND_AUDIT_SASL_PASSWORD or INBOUND_AUDIT_SASL_PASSWORD_FILE, not both")
    if not path:
        return Secret(inline) if inline else None
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"INBOUND_AUDIT_SASL_PASSWORD_FILE={path!r} cannot be read: {exc.__class__.__name__}"
        ) from None
    return Secret(text.rstrip("\r\n")) if text.strip() else None


def _security(env: Mapping[str, str]) -> dict[str, Any]:
    """The security fields, refusing combinations that would silently not do what was asked."""
    d = Settings()
    fields: dict[str, Any] = {
        "security_protocol": _read(
            env, "INBOUND_AUDIT_SECURITY_PROTOCOL", _one_of(SECURITY_PROTOCOLS), d.security_protocol
        ),
        "sasl_mechanism": _read(env, "INBOUND_AUDIT_SASL_MECHANISM", _one_of(SASL_MECHANISMS), d.sasl_mechanism),
        "sasl_username": _read(env, "INBOUND_AUDIT_SASL_USERNAME", str, d.sasl_username),
        "sasl_password": _password(env),
        "ssl_cafile": _read(env, "INBOUND_AUDIT_SSL_CAFILE", _readable_file, d.ssl_cafile),
        "ssl_certfile": _read(env, "INBOUND_AUDIT_SSL_CERTFILE", _readable_file, d.ssl_certfile),
        "ssl_keyfile": _read(env, "INBOUND_AUDIT_SSL_KEYFILE", _readable_file, d.ssl_keyfile),
        "ssl_check_hostname": _read(env, "INBOUND_AUDIT_SSL_CHECK_HOSTNAME", _boolean, d.ssl_check_hostname),
    }
    protocol = fields["security_protocol"]
    if protocol.startswith("SASL_"):
        if fields["sasl_username"] is None:
            raise ConfigError(
                f"INBOUND_AUDIT_SASL_USERNAME is required with INBOUND_AUDIT_SECURITY_PROTOCOL={protocol}"
            )
        if fields["sasl_password"] is None:
            raise ConfigError(
                "INBOUND_AUDIT_SASL_PASSWORD (or INBOUND_AUDIT_SASL_PASSWORD_FILE) is required with "
                f"INBOUND_AUDIT_SECURITY_PROTOCOL={protocol}"
            )
    elif fields["sasl_username"] is not None or fields["sasl_password"] is not None:
        raise ConfigError(f"SASL credentials are set but INBOUND_AUDIT_SECURITY_PROTOCOL={protocol} does not use SASL")
    if protocol not in ("SSL", "SASL_SSL") and any(fields[k] for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile")):
        raise ConfigError(
            f"INBOUND_AUDIT_SSL_* files are set but INBOUND_AUDIT_SECURITY_PROTOCOL={protocol} does not use TLS"
        )
    if fields["ssl_keyfile"] is not None and fields["ssl_certfile"] is None:
        raise ConfigError("INBOUND_AUDIT_SSL_KEYFILE needs INBOUND_AUDIT_SSL_CERTFILE (the client certificate)")
    return fields


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from the environment (or the mapping given, for tests)."""
    env = os.environ if env is None else env
    d = Settings()
    return Settings(
        bootstrap_servers=_read(env, "KAFKA_BOOTSTRAP_SERVERS", str, d.bootstrap_servers),
        **_security(env),
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
        series_topic=_read(env, "INBOUND_AUDIT_SERIES_TOPIC", _topic_name, d.series_topic),
        series=_read(env, "INBOUND_AUDIT_SERIES", parse_series_list, d.series),
        partitions=_read(env, "INBOUND_AUDIT_PARTITIONS", _int_in(1, 1024), d.partitions),
        replication_factor=_read(env, "INBOUND_AUDIT_REPLICATION_FACTOR", _int_in(1, 16), d.replication_factor),
        group_id=_read(env, "INBOUND_AUDIT_GROUP_ID", str, d.group_id),
        window_grace_s=_read(env, "INBOUND_AUDIT_WINDOW_GRACE_S", _positive_float, d.window_grace_s),
        top_talkers=_read(env, "INBOUND_AUDIT_TOP_TALKERS", _int_in(1, 1000), d.top_talkers),
        batch_max_events=_read(env, "INBOUND_AUDIT_BATCH_MAX_EVENTS", _int_in(1, 10_000_000), d.batch_max_events),
        fetch_max_bytes=_read(env, "INBOUND_AUDIT_FETCH_MAX_BYTES", _int_in(1 << 18, 1 << 30), d.fetch_max_bytes),
        snapshot_interval_s=_read(env, "INBOUND_AUDIT_SNAPSHOT_INTERVAL_S", _positive_float, d.snapshot_interval_s),
        snapshot_dir=_read(env, "INBOUND_AUDIT_SNAPSHOT_DIR", Path, d.snapshot_dir),
        web_host=_read(env, "INBOUND_AUDIT_WEB_HOST", str, d.web_host),
        web_port=_read(env, "INBOUND_AUDIT_WEB_PORT", _int_in(0, 65535), d.web_port),
        kafka_timeout_s=_read(env, "INBOUND_AUDIT_KAFKA_TIMEOUT_S", _positive_float, d.kafka_timeout_s),
        decoder=_read(env, "INBOUND_AUDIT_DECODER", _decoder, d.decoder),
    )
