"""The worker's HTTP endpoints on Faust's web server: ``/metrics``, ``/healthz``, ``/ready``, ``/query``
(and the dashboard, ``dashboard.py``).

Metrics are read at scrape time from the counters the worker keeps anyway (``Ingester.stats``,
``Responder.stats``, the table's ``Health``, the replica), so no hot path pays for them; only the
query latency is measured as it happens (``Responder.latency``). Each app has its own registry:
two apps in one process (tests) never share or collide on metrics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.app.dashboard import register_dashboard
from pipeline.app.lag import consumer_lag, state_lag
from pipeline.core.query import OPS
from pipeline.errors import AuditError

if TYPE_CHECKING:
    from pipeline.app.app import AuditApp

__all__ = ["register_web", "request_from_params", "metrics_registry"]

#: Responder.stats keys that are not "<op>:<outcome>".
_REQUEST_TOTALS = {"requests", "unroutable", "dead_letters"}


def register_web(audit: AuditApp) -> None:
    """Add the endpoints to the app's web server (nothing when the web server is off)."""
    if audit.settings.web_port == 0:
        return
    app, registry = audit.app, metrics_registry(audit)

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        return self.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(self: View, request: Request) -> Response:
        # Answering at all shows the event loop (which runs every agent and timer) is alive.
        if audit.failure is not None:
            return _json(self, {"ok": False, "reason": audit.failure}, 503)
        return _json(self, {"ok": True, "reason": "alive"}, 200)

    @app.page("/ready")
    async def ready(self: View, request: Request) -> Response:
        ok, reason = audit.readiness()
        return _json(self, {"ready": ok, "reason": reason}, 200 if ok else 503)

    @app.page("/query")
    async def query(self: View, request: Request) -> Response:
        ok, reason = audit.readiness()
        if not ok:
            return _json(self, {"ok": False, "error": {"code": "not_ready", "message": reason}}, 503)
        try:
            value = audit.responder.evaluate(request_from_params(request.query))
        except AuditError as exc:
            return _json(self, {"ok": False, "error": {"code": exc.code, "message": exc.message}}, 400)
        return _json(self, {"ok": True, "value": value}, 200)

    register_dashboard(audit)


def _json(view: View, body: Any, status: int) -> Response:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status)


def request_from_params(params: Mapping[str, str]) -> dict[str, Any]:
    """A bus request from query parameters: typed where the text parses, left as text otherwise,
    so ``parse_request`` refuses it with the bus's own code and message."""
    obj: dict[str, Any] = {"id": "http"}
    for name in ("op", "monitor", "cidr", "ip", "node", "service", "series", "key", "type"):
        if name in params:
            obj[name] = params[name]
    numbers = (
        ("startv", int),
        ("endv", int),
        ("at", float),
        ("interval", int),
        ("num_windows", int),
        ("prefix_len", int),
    )
    for name, parse in (*numbers, ("cluster", _boolean)):
        if name in params:
            try:
                obj[name] = parse(params[name])
            except ValueError:
                obj[name] = params[name]
    return obj


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError(text)


def metrics_registry(audit: AuditApp) -> CollectorRegistry:
    """This app's metrics: the worker's counters, the query latency, the process basics."""
    registry = CollectorRegistry()
    registry.register(_AuditCollector(audit))
    registry.register(audit.responder.latency)
    ProcessCollector(registry=registry)
    return registry


class _AuditCollector(Collector):
    """Reads the worker's own counters at scrape time."""

    def __init__(self, audit: AuditApp) -> None:
        self.audit = audit

    def collect(self) -> Iterator[Metric]:
        yield from self._ingest()
        yield from self._requests()
        yield from self._state()
        yield from self._replica()

    def _ingest(self) -> Iterator[Metric]:
        stats = self.audit.ingester.stats
        for name, key, doc in (
            ("events", "events", "Valid events this worker counted into deltas (windowed and session events)."),
            ("deltas_written", "deltas", "Delta operations this worker wrote to the state topic."),
            ("redelivered_messages", "redelivered", "Event messages delivered again and skipped."),
            ("refetched_messages", "refetched", "Event messages Faust skipped, read back from Kafka directly."),
            ("write_failures", "send_failures", "Writes to Kafka that failed for good (the worker then stops)."),
        ):
            yield CounterMetricFamily(f"inbound_audit_{name}", doc, value=stats[key])
        stalled = CounterMetricFamily(
            "inbound_audit_stalled_reads",
            "Messages of a partition Faust stopped delivering, read from Kafka directly.",
            labels=["source"],
        )
        for guard in self.audit.stall_guards:
            stalled.add_metric([guard.source], guard.read_directly)
        yield stalled
        letters = CounterMetricFamily(
            "inbound_audit_dead_letters", "Messages written to the dead-letter topic.", labels=["source", "reason"]
        )
        for (source, reason), count in self.audit.dead_letters().items():
            letters.add_metric([source, reason], count)
        yield letters

    def _requests(self) -> Iterator[Metric]:
        answered = CounterMetricFamily(
            "inbound_audit_requests",
            "Audit requests answered (bus and HTTP), by op and outcome (ok or the error code).",
            labels=["op", "outcome"],
        )
        by_label = Counter[tuple[str, str]]()
        for key, count in self.audit.responder.stats.items():
            if key not in _REQUEST_TOTALS:
                op, _, outcome = key.rpartition(":")
                # Only known ops as label values: a request's free text must not create series.
                by_label[op if op in OPS else "unknown", outcome] += count
        for labels, count in sorted(by_label.items()):
            answered.add_metric(list(labels), count)
        yield answered
        yield CounterMetricFamily(
            "inbound_audit_unroutable_requests",
            "Requests that could not be answered (no JSON object, no reply_to, an own topic): dead-lettered.",
            value=self.audit.responder.stats["unroutable"],
        )

    def _state(self) -> Iterator[Metric]:
        manager = self.audit.manager
        health = manager.health
        for name, value, doc in (
            ("deltas_applied", health.deltas_applied, "Deltas this worker's replica applied from the state topic."),
            ("deltas_duplicate", health.deltas_duplicate, "Deltas recognised as already applied and skipped."),
            ("delta_gaps", health.gaps, "Deltas that did not continue their partition's chain (held, then repaired)."),
            ("state_undecodable", health.undecodable, "State-topic records that could not be decoded."),
        ):
            yield CounterMetricFamily(f"inbound_audit_{name}", doc, value=value)
        yield CounterMetricFamily(
            "inbound_audit_window_summaries",
            "Window summaries this worker published (the owner of events partition 0 does).",
            value=self.audit.summaries_published,
        )
        ready = self.audit.readiness()[0]
        yield GaugeMetricFamily("inbound_audit_ready", "1 once the replica caught up with the state log.", value=ready)
        offsets = GaugeMetricFamily(
            "inbound_audit_state_offset", "Last state-topic offset applied, per partition.", labels=["partition"]
        )
        for partition, offset in sorted(manager.positions.items()):
            offsets.add_metric([str(partition)], offset)
        yield offsets
        yield from self._lag()

    def _lag(self) -> Iterator[Metric]:
        for name, doc, lag in (
            (
                "consumer_lag",
                "Event messages not yet written into a delta, per events partition this worker owns.",
                consumer_lag(self.audit),
            ),
            ("state_lag", "State-topic records not yet applied, per partition.", state_lag(self.audit)),
        ):
            gauge = GaugeMetricFamily(f"inbound_audit_{name}", doc, labels=["partition"])
            for partition, behind in sorted(lag.items()):
                gauge.add_metric([str(partition)], behind)
            yield gauge

    def _replica(self) -> Iterator[Metric]:
        counts = self.audit.replica.counts
        addresses = GaugeMetricFamily(
            "inbound_audit_replica_addresses",
            "Distinct addresses held, summed over the monitor's windows, scopes and metrics.",
            labels=["monitor"],
        )
        held = GaugeMetricFamily(
            "inbound_audit_replica_bytes", "Bytes of counts held for the monitor.", labels=["monitor"]
        )
        for monitor in counts.monitors:
            starts = counts.window_starts(monitor)
            cells = [cell for start in starts for cell in counts.window_cells(monitor, start).values()]
            addresses.add_metric([monitor.name], sum(len(cell) for cell in cells))
            held.add_metric([monitor.name], sum(cell.nbytes for cell in cells))
        yield addresses
        yield held
