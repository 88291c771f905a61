"""How every Kafka client of inbound-audit connects: one place that turns the security settings into
client arguments, and turns a refused connection into one line that names the setting to fix.

aiokafka reports a failed bootstrap only as "Unable to bootstrap from [...]" (the cause goes to its
log), so ``connection_error`` opens one probe connection with the same options to learn the cause:
a wrong password, an untrusted certificate, a plaintext client on a TLS port. Passwords never
appear in what it says.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from pipeline.errors import ConfigError, KafkaAccessError
from pipeline.settings import Settings

__all__ = ["client_options", "faust_broker_options", "connection_error"]

#: Without this, Python's last-resort handler prints aiokafka's bootstrap errors to stderr of a CLI
#: that configured no logging, next to our own one line. Configured logging still receives them.
logging.getLogger("aiokafka").addHandler(logging.NullHandler())

_PROBE_TIMEOUT_S = 10.0

_AUTHORIZATION_ERRORS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    ClusterAuthorizationFailedError,
)


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    """Trust the CA file (else the system's), present the client certificate for mTLS if set."""
    try:
        context = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
            certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
            keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        )
    except (ssl.SSLError, OSError) as exc:
        files = ", ".join(
            f"{name}={str(path)!r}"
            for name, path in (
                ("INBOUND_AUDIT_SSL_CAFILE", settings.ssl_cafile),
                ("INBOUND_AUDIT_SSL_CERTFILE", settings.ssl_certfile),
                ("INBOUND_AUDIT_SSL_KEYFILE", settings.ssl_keyfile),
            )
            if path
        )
        raise ConfigError(f"cannot load the TLS files ({files}): {exc.__class__.__name__}") from None
    context.check_hostname = settings.ssl_check_hostname
    return context


def client_options(settings: Settings, bootstrap: str | None = None) -> dict[str, Any]:
    """Keyword arguments for any aiokafka producer, consumer or admin client: where and how to connect.

    ``bootstrap`` overrides ``settings.bootstrap`` (the local broker's address once it is started).
    """
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap or settings.bootstrap,
        "security_protocol": settings.security_protocol,
    }
    if settings.uses_tls:
        options["ssl_context"] = _ssl_context(settings)
    if settings.uses_sasl:
        assert settings.sasl_password is not None  # load_settings requires it with SASL
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.reveal(),
        )
    return options


def faust_broker_options(settings: Settings, bootstrap: str | None = None) -> dict[str, Any]:
    """Keyword arguments for ``faust.App(...)``: the broker URLs and the same credentials as above."""
    from faust import SASLCredentials, SSLCredentials  # only the worker pays for importing Faust

    servers = (bootstrap or settings.bootstrap).split(",")
    options: dict[str, Any] = {"broker": [f"kafka://{server.strip()}" for server in servers if server.strip()]}
    context = _ssl_context(settings) if settings.uses_tls else None
    if settings.uses_sasl:
        assert settings.sasl_password is not None
        options["broker_credentials"] = SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.reveal(),
            ssl_context=context,
            mechanism=settings.sasl_mechanism,
        )
    elif context is not None:
        options["broker_credentials"] = SSLCredentials(context)
    return options


def _described(exc: BaseException) -> str:
    """``Class: message`` once (aiokafka's messages already hold their class name, after ``[Error N]``)."""
    name, text = exc.__class__.__name__, re.sub(r"^\[Error \d+\] ", "", str(exc))
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _who(settings: Settings) -> str:
    if settings.uses_sasl:
        return f"user {settings.sasl_username!r}"
    if settings.ssl_certfile is not None:
        return f"the client certificate {settings.ssl_certfile.name}"
    return f"a {settings.security_protocol} client"


def _probe_failure(exc: BaseException, settings: Settings, host: str) -> str | None:
    """What the probe connection's exception means, or None when it means nothing we can name."""
    if isinstance(exc, SaslAuthenticationFailed):
        return (
            f"Kafka authentication failed for user {settings.sasl_username!r} ({settings.sasl_mechanism}) "
            f"at {host}: check INBOUND_AUDIT_SASL_USERNAME/PASSWORD"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return f"Kafka at {host} does not offer SASL {settings.sasl_mechanism}: check INBOUND_AUDIT_SASL_MECHANISM"
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
            return (
                f"the TLS certificate of Kafka at {host} is not issued for that host name: connect by a name "
                "the certificate lists, or set INBOUND_AUDIT_SSL_CHECK_HOSTNAME=false"
            )
        return (
            f"the TLS certificate of Kafka at {host} is not trusted ({exc.verify_message}): "
            "check INBOUND_AUDIT_SSL_CAFILE"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"TLS handshake with Kafka at {host} failed ({exc.reason or exc.__class__.__name__}): is it a "
            f"TLS listener? INBOUND_AUDIT_SECURITY_PROTOCOL={settings.security_protocol}"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing listens at {host}: check KAFKA_BOOTSTRAP_SERVERS"
    if isinstance(exc, TimeoutError):
        return (
            f"Kafka at {host} did not answer within {_PROBE_TIMEOUT_S:g} s: check KAFKA_BOOTSTRAP_SERVERS "
            "and INBOUND_AUDIT_SECURITY_PROTOCOL"
        )
    if isinstance(exc, KafkaConnectionError) and settings.uses_tls:  # closed after a good handshake
        if settings.ssl_certfile is None:
            return (
                f"Kafka at {host} closed the connection after the TLS handshake: does it require a client "
                "certificate? set INBOUND_AUDIT_SSL_CERTFILE and INBOUND_AUDIT_SSL_KEYFILE"
            )
        return (
            f"Kafka at {host} closed the connection after the TLS handshake: does it trust the client "
            f"certificate INBOUND_AUDIT_SSL_CERTFILE={str(settings.ssl_certfile)!r}?"
        )
    if isinstance(exc, (ConnectionError, KafkaConnectionError)):
        return (
            f"Kafka at {host} dropped a {settings.security_protocol} connection: does that port serve "
            f"{settings.security_protocol}? check INBOUND_AUDIT_SECURITY_PROTOCOL and KAFKA_BOOTSTRAP_SERVERS"
        )
    return None


async def _probe(settings: Settings, host: str) -> str | None:
    """Connect once to ``host`` as the clients would and name what goes wrong (None: nothing did)."""
    name, colon, port = host.rpartition(":")
    if not colon or not port.isdigit():
        name, port = host, "9092"  # aiokafka's default port
    options = client_options(settings, host)
    del options["bootstrap_servers"]
    try:
        conn = await asyncio.wait_for(
            create_conn(name.strip("[]"), int(port), request_timeout_ms=int(_PROBE_TIMEOUT_S * 1000), **options),
            _PROBE_TIMEOUT_S,
        )
    except (OSError, KafkaError, TimeoutError) as exc:
        return _probe_failure(exc, settings, host)
    conn.close()
    return None


async def connection_error(settings: Settings, exc: BaseException, bootstrap: str | None = None) -> KafkaAccessError:
    """Our one-line error for a Kafka client failure ``exc``; raise it ``from exc`` at the call site."""
    servers = bootstrap or settings.bootstrap
    if isinstance(exc, _AUTHORIZATION_ERRORS):
        return KafkaAccessError(f"Kafka at {servers} refused {_who(settings)}: {_described(exc)}: check its ACLs")
    if isinstance(exc, KafkaConnectionError):
        for host in (h.strip() for h in servers.split(",") if h.strip()):
            reason = await _probe(settings, host)
            if reason is not None:
                return KafkaAccessError(reason)
    return KafkaAccessError(f"Kafka at {servers}: {_described(exc)}")
