"""Every exception inbound-audit raises on purpose, in one place.

    InboundAuditError
    ├── ConfigError        bad settings: the worker or CLI refuses to start (one line, exit 2)
    ├── KafkaAccessError   Kafka refused us (credentials, TLS trust, ACLs) or cannot be reached
    ├── LocalKafkaError    the bundled local broker could not be fetched, started or reached
    ├── KafkaUnreachable   nothing answers at the bootstrap address (commands and clients fail fast)
    └── AuditError         a query the contract rejects; carries the SPEC error ``code``
        └── AuditTimeout   no reply within the client's timeout (code ``timeout``)

Malformed *events* are not exceptions: validation returns a reason per event so that one bad
event never costs the rest of its batch (see ``events.py``).
"""

from __future__ import annotations

__all__ = [
    "InboundAuditError",
    "ConfigError",
    "KafkaAccessError",
    "LocalKafkaError",
    "KafkaUnreachable",
    "AuditError",
    "AuditTimeout",
    "ERROR_CODES",
    "SERIES_ERROR_CODES",
]

#: SPEC section 4 error codes, in the precedence order the contract fixes.
ERROR_CODES: tuple[str, ...] = (
    "invalid_request",
    "unknown_op",
    "unknown_monitor",
    "invalid_range",
    "window_out_of_range",
    "missing_node",
    "missing_ip",
    "invalid_cidr",
)

#: SPEC section 8's codes for the series ops (their precedence is in ``core/series_query.py``).
SERIES_ERROR_CODES: tuple[str, ...] = ("unknown_series", "series_conflict", "invalid_key")


class InboundAuditError(Exception):
    """Base class, so callers can catch everything of ours in one clause."""


class ConfigError(InboundAuditError):
    """A setting is missing or malformed; the message names the variable and the bad value."""


class KafkaAccessError(InboundAuditError):
    """Connecting to Kafka failed; the one-line message names the setting to check, never a secret."""


class LocalKafkaError(InboundAuditError):
    """The local development broker could not be prepared or started."""


class KafkaUnreachable(InboundAuditError):
    """No bootstrap server accepts a connection; only ``worker`` starts the bundled broker."""


class AuditError(InboundAuditError):
    """A request the contract answers with ``ok: false``; ``code`` is in ``ERROR_CODES`` or ``SERIES_ERROR_CODES``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AuditTimeout(AuditError):
    """The pipeline did not answer in time (no worker running, or the bus is unreachable)."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message)
