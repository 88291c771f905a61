"""Is Kafka there? A quick TCP probe of the bootstrap servers, so that commands and clients fail in
seconds with one clear line instead of aiokafka retrying (and logging) for a minute; and, for a
running worker, whether a broker still answers (``broker_answers``).

A probe also refuses a *self-connection*: connecting to a port nobody listens on that lies in the
kernel's ephemeral range can, rarely, get that same port as its own source port, and TCP's
simultaneous open then "connects" the socket to itself. Such a socket looks like a live server and
holds the port the broker needs; the probe closes it and reports the port unreachable.
"""

from __future__ import annotations

import asyncio

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from pipeline.errors import KafkaUnreachable

__all__ = [
    "DEFAULT_PROBE_TIMEOUT_S",
    "bootstrap_addresses",
    "broker_answers",
    "probe",
    "reachable",
    "require_reachable",
    "unreachable",
]

DEFAULT_PROBE_TIMEOUT_S = 3.0

HINT = "start it with `make run` or set KAFKA_BOOTSTRAP_SERVERS"


def bootstrap_addresses(bootstrap: str) -> list[tuple[str, int]]:
    """``host:port[,host:port…]`` (IPv6 hosts bracketed) as (host, port) pairs; port 9092 if omitted."""
    addresses = []
    for entry in (part.strip() for part in bootstrap.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or host.endswith(":") or (":" in host and not host.startswith("[")):
            host, port = entry, "9092"
        addresses.append((host.strip("[]"), int(port)))
    return addresses


async def probe(
    host: str, port: int, timeout_s: float = DEFAULT_PROBE_TIMEOUT_S, *, local_addr: tuple[str, int] | None = None
) -> bool:
    """Whether a TCP connection to ``host:port`` opens, and not to this very socket."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=local_addr), timeout_s)
    except (OSError, TimeoutError):
        return False
    try:
        return writer.get_extra_info("sockname") != writer.get_extra_info("peername")
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)


async def reachable(bootstrap: str, timeout_s: float = DEFAULT_PROBE_TIMEOUT_S) -> bool:
    """Whether any of the bootstrap servers accepts a connection."""
    results = await asyncio.gather(*(probe(host, port, timeout_s) for host, port in bootstrap_addresses(bootstrap)))
    return any(results)


def unreachable(bootstrap: str) -> KafkaUnreachable:
    """The one line a user sees: the address and the fix."""
    return KafkaUnreachable(f"Kafka is not reachable at {bootstrap} ({HINT})")


async def require_reachable(bootstrap: str, timeout_s: float = DEFAULT_PROBE_TIMEOUT_S) -> None:
    """Raise ``KafkaUnreachable`` unless Kafka answers."""
    if not await reachable(bootstrap, timeout_s):
        raise unreachable(bootstrap)


async def broker_answers(client: AIOKafkaClient, topic: str) -> bool:
    """Whether a broker the started ``client`` knows answers a metadata request for ``topic``.

    One topic, not the client's own refresh: a producer that has not sent yet knows no topics and
    refreshes every topic of the cluster, which the worker parsed on its event loop each second
    (25-135 ms with 400 topics on the broker, under ingest).
    """
    for node_id in [broker.nodeId for broker in client.cluster.brokers()]:
        try:
            await client.send(node_id, MetadataRequest([topic]))
        except (KafkaError, OSError, TimeoutError):
            continue
        return True
    return False
