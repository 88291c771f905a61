"""Ask the pipeline questions the way a Momentum policy asks ``msys.audit``: over the bus.

A client owns one producer, one reply topic (see ``reply_topics``: its own, deleted on close, or
the process's shared one) and one non-group consumer on it; any number of concurrent queries share
them and are matched to their replies by request ``id``. The connecting ``ip``, the ``node`` and
the reference time ``at`` are the client's *context* (what a policy script has implicitly in
Momentum) and can be overridden per call. While Kafka is unreachable, queries fail at once with
``KafkaUnreachable`` (after one WARNING) instead of each waiting out its timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.clients.publisher import EventPublisher
from pipeline.clients.reply_topics import (
    create_reply_topic,
    delete_reply_topic,
    private_reply_topic,
    process_reply_topic,
)
from pipeline.errors import AuditError, AuditTimeout, InboundAuditError
from pipeline.kafka.connection import client_options, connection_error
from pipeline.kafka.outage_log import OutageLog, install_log_gate
from pipeline.kafka.reachability import reachable, require_reachable, unreachable
from pipeline.settings import Settings

__all__ = [
    "AuditClient",
    "SyncAuditClient",
    "Options",
    "build_request",
    "build_series_request",
    "DEFAULT_TIMEOUT_S",
]

T = TypeVar("T")

#: Momentum's ``options``: a table (dict) of startv/endv/cidr/cluster, a string (the cidr), or nil.
Options = Mapping[str, Any] | str | None

#: Keys of the options table that become request fields; any other key is ignored, as in Momentum.
OPTION_KEYS: tuple[str, ...] = ("startv", "endv", "cidr", "cluster")
#: The same for ``msys.audit_series.count`` (a non-table option is the key).
SERIES_OPTION_KEYS: tuple[str, ...] = ("startv", "endv", "key", "cluster")

DEFAULT_TIMEOUT_S = 20.0  # a worker dying takes ~6-8 s to be taken over (session 6 s)

log = logging.getLogger(__name__)


def build_request(
    op: str,
    monitor: str | None,
    options: Options,
    *,
    ip: str | None,
    node: str | None,
    at: float | None,
    cluster: bool,
    service: str | None = None,
) -> dict[str, Any]:
    """The SPEC request body (without ``id``/``reply_to``), options read exactly as Momentum reads them.

    Values are passed through unchecked: the worker is the one authority on validity, so a
    mistyped option comes back as ``invalid_request`` rather than a client-side guess.
    """
    request: dict[str, Any] = {"op": op, "cluster": cluster}
    if monitor is not None:
        request["monitor"] = monitor
    if isinstance(options, Mapping):
        request.update({key: options[key] for key in OPTION_KEYS if options.get(key) is not None})
    elif options is not None:
        request["cidr"] = options
    for key, value in (("ip", ip), ("node", node), ("at", at), ("service", service)):
        if value is not None:
            request[key] = value
    return request


def build_series_request(
    name: str, options: Options, *, ip: str | None, node: str | None, at: float | None, cluster: bool
) -> dict[str, Any]:
    """A ``series_count`` request body, options read as Momentum's ``msys.audit_series.count``."""
    request: dict[str, Any] = {"op": "series_count", "series": name, "cluster": cluster}
    if isinstance(options, Mapping):
        request.update({key: options[key] for key in SERIES_OPTION_KEYS if options.get(key) is not None})
    elif options is not None:
        request["key"] = options
    for key, value in (("ip", ip), ("node", node), ("at", at)):
        if value is not None:
            request[key] = value
    return request


class AuditClient:
    """Async client; use ``async with AuditClient(settings, ip=..., node=...) as audit:``.

    ``reply_topic`` names the topic replies come back on (created if missing, and then deleted on
    close); ``shared_reply_topic=True`` uses the process's one shared reply topic instead.
    ``series_add``/``series_remove`` publish through ``publisher`` (an MTA's own ``EventPublisher``)
    or, without one, through a publisher per node (the call's or the client's ``node``) made on
    first use (no ``node_reset``) and flushed by ``close``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        ip: str | None = None,
        node: str | None = None,
        at: float | None = None,
        cluster: bool = False,
        bootstrap: str | None = None,
        reply_topic: str | None = None,
        shared_reply_topic: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        publisher: EventPublisher | None = None,
    ) -> None:
        if reply_topic is not None and shared_reply_topic:
            raise ValueError("pass reply_topic or shared_reply_topic, not both")
        self.settings = settings
        self.ip = ip
        self.node = node
        self.at = at
        self.cluster = cluster
        self.bootstrap = bootstrap or settings.bootstrap
        self.reply_topic = reply_topic or private_reply_topic(settings)
        self.shared_reply_topic = shared_reply_topic
        self.timeout_s = timeout_s
        self._owns_reply_topic = False
        self._outage = OutageLog(log, "audit client", self.bootstrap)
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._publisher = publisher
        self._own_publishers: dict[str, EventPublisher] = {}  # by node, made on first use

    async def __aenter__(self) -> AuditClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the reply topic if needed and be positioned at its end before the first request."""
        install_log_gate()
        await require_reachable(self.bootstrap)
        try:
            if self.shared_reply_topic:
                self.reply_topic = await process_reply_topic(self.settings, self.bootstrap)
            else:
                self._owns_reply_topic = await create_reply_topic(self.settings, self.bootstrap, self.reply_topic)
            self._producer = AIOKafkaProducer(**client_options(self.settings, self.bootstrap), linger_ms=0)
            self._consumer = AIOKafkaConsumer(
                **client_options(self.settings, self.bootstrap), fetch_max_wait_ms=10, enable_auto_commit=False
            )
            await self._producer.start()
            await self._consumer.start()
            tp = TopicPartition(self.reply_topic, 0)
            self._consumer.assign([tp])
            await self._consumer.seek_to_end(tp)
            await asyncio.wait_for(self._consumer.position(tp), self.timeout_s)
        except (TimeoutError, KafkaError) as exc:
            await self.close()
            raise await connection_error(self.settings, exc, self.bootstrap) from exc
        self._reader = asyncio.create_task(self._read_replies(), name="audit-client-replies")

    async def close(self) -> None:
        """Flush series events, stop reading, fail any query still waiting (no caller hangs on a
        closed client), and delete the reply topic if this client created it."""
        publishers, self._own_publishers = self._own_publishers, {}
        for own in publishers.values():
            await own.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(InboundAuditError("audit client closed"))
        self._waiters.clear()
        for part in (self._consumer, self._producer):
            if part is not None:
                await part.stop()
        self._consumer = self._producer = None
        if self._owns_reply_topic:
            self._owns_reply_topic = False
            await delete_reply_topic(self.settings, self.bootstrap, self.reply_topic)

    async def _read_replies(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    self._deliver(record.value)

    def _deliver(self, raw: bytes) -> None:
        try:
            reply = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        if not isinstance(reply, dict):
            return
        waiter = self._waiters.pop(str(reply.get("id")), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    async def query(
        self,
        op: str,
        monitor: str | None = None,
        options: Options = None,
        *,
        ip: str | None = None,
        node: str | None = None,
        at: float | None = None,
        service: str | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """Any SPEC op; the named methods below are what policies call."""
        request = build_request(
            op,
            monitor,
            options,
            ip=ip or self.ip,
            node=node or self.node,
            at=self.at if at is None else at,
            cluster=self.cluster,
            service=service,
        )
        return await self._ask(request, timeout_s)

    async def _ask(self, request: dict[str, Any], timeout_s: float | None = None) -> int:
        """Send one request body and return its value; raises ``AuditError`` for an error reply."""
        if self._producer is None:
            raise InboundAuditError("audit client is not started (use 'async with' or start())")
        if self._outage.down and not await reachable(self.bootstrap):
            raise unreachable(self.bootstrap)
        op = request["op"]
        request_id = uuid.uuid4().hex
        request.update(id=request_id, reply_to=self.reply_topic)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            reply = await asyncio.wait_for(self._exchange(request, waiter), timeout)
        except KafkaError as exc:
            await self._check_outage(exc)
            raise InboundAuditError(f"cannot send {op} request to Kafka at {self.bootstrap}: {exc!r}") from exc
        except TimeoutError:
            await self._check_outage(f"no reply within {timeout:g} s")
            raise AuditTimeout(
                f"no reply to {op} request {request_id} within {timeout:g}s on topic "
                f"{self.settings.requests_topic!r} at {self.bootstrap}: is an inbound-audit worker running?"
            ) from None
        finally:
            self._waiters.pop(request_id, None)
        if reply.get("ok") is True:
            return int(reply["value"])
        error = reply.get("error") or {}
        raise AuditError(str(error.get("code", "unknown")), str(error.get("message", reply)))

    async def _check_outage(self, failure: object) -> None:
        """After a failed query: if Kafka itself is gone, say so once and raise ``KafkaUnreachable``."""
        if not await reachable(self.bootstrap):
            self._outage.went_down(failure)
            raise unreachable(self.bootstrap)

    async def _exchange(self, request: dict[str, Any], waiter: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        """Send and await the reply as one step, so one timeout bounds a dead broker too."""
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.settings.requests_topic, orjson.dumps(request), key=request["id"].encode()
        )
        self._outage.came_back()
        return await waiter

    async def connections(self, monitor: str, options: Options = None, **context: Any) -> int:
        """``msys.audit.connections``: inbound sessions accepted from the block in the windows."""
        return await self.query("connections", monitor, options, **context)

    async def receptions(self, monitor: str, options: Options = None, **context: Any) -> int:
        """``msys.audit.receptions``: messages accepted from the block in the windows."""
        return await self.query("receptions", monitor, options, **context)

    async def rejections(self, monitor: str, options: Options = None, **context: Any) -> int:
        """``msys.audit.rejections``: messages refused from the block in the windows."""
        return await self.query("rejections", monitor, options, **context)

    async def series_define(
        self,
        name: str,
        type: str,
        interval: int,
        num_windows: int,
        options: Mapping[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> int:
        """``msys.audit_series.define``: 1 once the series is defined fleet-wide (idempotent);
        ``AuditError`` ``series_conflict`` if it is defined differently. ``options``: ``prefix_len``."""
        request = {"op": "series_define", "series": name, "type": type, "interval": interval}
        request["num_windows"] = num_windows
        if isinstance(options, Mapping) and options.get("prefix_len") is not None:
            request["prefix_len"] = options["prefix_len"]
        return await self._ask(request, timeout_s)

    async def series_count(
        self,
        name: str,
        options: Options = None,
        *,
        ip: str | None = None,
        node: str | None = None,
        at: float | None = None,
        timeout_s: float | None = None,
    ) -> int:
        """``msys.audit_series.count``: options ``startv``, ``endv``, ``key`` (for cidr series any
        cidr form; default the connecting IP), ``cluster``; a non-table option is the key."""
        at = self.at if at is None else at
        request = build_series_request(
            name, options, ip=ip or self.ip, node=node or self.node, at=at, cluster=self.cluster
        )
        return await self._ask(request, timeout_s)

    async def series_add(
        self,
        name: str,
        options: Options = None,
        *,
        ip: str | None = None,
        node: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """``msys.audit_series.add``: options ``count`` (default 1) and ``key``; a non-table option
        is the key. Without a key the connecting IP is added, which only a cidr series accepts:
        the series is asked first, so an unknown series or a string series raises ``AuditError``."""
        key, count = (options.get("key"), options.get("count", 1)) if isinstance(options, Mapping) else (options, 1)
        if key is None:
            await self.series_count(
                name, {"cluster": True}, ip=ip, timeout_s=timeout_s
            )  # unknown_series, invalid_key, missing_ip
            key = ip or self.ip
        await (await self._series_publisher(node)).series_add(name, str(key), int(count))

    async def series_remove(self, name: str, key: str, *, node: str | None = None) -> None:
        """``msys.audit_series.remove_item``: every count of ``key`` so far, on every node."""
        await (await self._series_publisher(node)).series_remove(name, key)

    async def flush(self) -> None:
        """Wait until the series events published so far are on the bus."""
        for publisher in [self._publisher, *self._own_publishers.values()]:
            if publisher is not None:
                await publisher.flush()

    async def _series_publisher(self, node: str | None) -> EventPublisher:
        if self._publisher is not None:
            return self._publisher
        name = node or self.node
        if not name:
            raise InboundAuditError("series_add/series_remove need a node (AuditClient(node=...) or node=...)")
        publisher = self._own_publishers.get(name)
        if publisher is None:
            publisher = EventPublisher(self.settings, name, bootstrap=self.bootstrap, reset_on_start=False)
            await publisher.start()
            self._own_publishers[name] = publisher
        return publisher

    async def inbound_session_count(self, cidr: str | None = None, service: str = "SMTP", **context: Any) -> int:
        """``msys.audit.inbound_session_count``: sessions open right now (a gauge, not a window)."""
        return await self.query("inbound_session_count", None, cidr, service=service, **context)


class SyncAuditClient:
    """Blocking facade for synchronous callers (Lua policies, scripts): one loop in a daemon thread."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="audit-client", daemon=True)
        self._thread.start()
        self._client = AuditClient(settings, **kwargs)
        try:
            self._run(self._client.start())
        except BaseException:
            self._stop_loop()
            raise

    @property
    def client(self) -> AuditClient:
        """The async client underneath, e.g. to change its ``ip``/``node`` context."""
        return self._client

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def close(self) -> None:
        """Stop the client and its thread; safe to call twice."""
        if self._loop.is_closed():
            return
        self._run(self._client.close())
        self._stop_loop()

    def __enter__(self) -> SyncAuditClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, op: str, monitor: str | None = None, options: Options = None, **context: Any) -> int:
        """Blocking ``AuditClient.query``."""
        return self._run(self._client.query(op, monitor, options, **context))

    def connections(self, monitor: str, options: Options = None, **context: Any) -> int:
        """Blocking ``msys.audit.connections``."""
        return self._run(self._client.connections(monitor, options, **context))

    def receptions(self, monitor: str, options: Options = None, **context: Any) -> int:
        """Blocking ``msys.audit.receptions``."""
        return self._run(self._client.receptions(monitor, options, **context))

    def rejections(self, monitor: str, options: Options = None, **context: Any) -> int:
        """Blocking ``msys.audit.rejections``."""
        return self._run(self._client.rejections(monitor, options, **context))

    def inbound_session_count(self, cidr: str | None = None, service: str = "SMTP", **context: Any) -> int:
        """Blocking ``msys.audit.inbound_session_count``."""
        return self._run(self._client.inbound_session_count(cidr, service, **context))

    def series_define(
        self, name: str, type: str, interval: int, num_windows: int, options: Mapping[str, Any] | None = None
    ) -> int:
        """Blocking ``msys.audit_series.define``."""
        return self._run(self._client.series_define(name, type, interval, num_windows, options))

    def series_add(self, name: str, options: Options = None, **context: Any) -> None:
        """Blocking ``msys.audit_series.add``."""
        self._run(self._client.series_add(name, options, **context))

    def series_count(self, name: str, options: Options = None, **context: Any) -> int:
        """Blocking ``msys.audit_series.count``."""
        return self._run(self._client.series_count(name, options, **context))

    def series_remove(self, name: str, key: str, **context: Any) -> None:
        """Blocking ``msys.audit_series.remove_item``."""
        self._run(self._client.series_remove(name, key, **context))

    def flush(self) -> None:
        """Blocking ``AuditClient.flush``."""
        self._run(self._client.flush())
