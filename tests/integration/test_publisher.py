"""EventPublisher against a real worker: what it publishes is what gets counted, in SPEC-sized batches."""

from __future__ import annotations

import asyncio
import random
import time

import orjson
import pytest
from audit_oracle import Monitor
from harness import read_topic
from usage import expected, running_worker, settled, stream_of_events, wait_caught_up

from pipeline.clients.client import AuditClient
from pipeline.clients.publisher import EventPublisher
from pipeline.core.events import MAX_MESSAGE_BYTES

pytestmark = pytest.mark.integration

MONITORS = [Monitor(3600, 2)]


async def test_published_events_are_counted_and_node_reset_clears_sessions(kafka_bootstrap: str) -> None:
    rng = random.Random(5)
    ips = [f"198.51.100.{i}" for i in range(1, 60)] + [f"2001:db8:5::{i:x}" for i in range(1, 40)]
    async with running_worker(kafka_bootstrap, "3600,2") as running:
        published = []
        t0 = time.time()
        for node in ("mta-1", "mta-2"):
            async with EventPublisher(running.settings, node, batch_size=300, max_pending=600) as events:
                published.append({"node": node, "ts": t0, "ip": "0.0.0.0", "event": "node_reset"})
                for _ in range(3000):
                    ip, ts = rng.choice(ips), time.time()
                    kind = rng.choice(
                        ["connection", "reception", "rejection", "session_open", "session_open", "session_close"]
                    )
                    if kind.startswith("session"):
                        await getattr(events, kind)(ip, ts=ts)
                        published.append({"node": node, "ts": ts, "ip": ip, "event": kind})
                    else:
                        n = rng.randint(1, 5)
                        await getattr(events, kind)(ip, ts=ts, n=n)
                        published.append({"node": node, "ts": ts, "ip": ip, "event": kind, "n": n})
                    assert events._pending <= 600  # noqa: SLF001 - backpressure bound
        stream = stream_of_events(published, MONITORS, t0)
        async with AuditClient(running.settings, cluster=True) as client:
            await wait_caught_up(client, stream, "3600,2")
            for ip in ips[:10] + ips[-10:]:
                for options in ("/24", {"cidr": "/64" if ":" in ip else "/28", "endv": 1}):
                    got, want = await settled(
                        lambda ip=ip, options=options: client.rejections("3600,2", options, ip=ip),
                        lambda now, ip=ip, options=options: expected(
                            stream, "rejections", "3600,2", options, ip=ip, node=None, now=now, cluster=True
                        ),
                    )
                    assert got in want
            before = await client.inbound_session_count("0.0.0.0/0")
            assert before == stream.open_sessions((4, 0, 2**32 - 1), "SMTP", None) > 0
            async with EventPublisher(running.settings, "mta-1"):
                pass  # a restarted MTA: its open sessions are gone
            remaining = stream.open_sessions((4, 0, 2**32 - 1), "SMTP", "mta-2")
            for _ in range(50):
                if await client.inbound_session_count("0.0.0.0/0") == remaining:
                    break
                await asyncio.sleep(0.1)
            assert await client.inbound_session_count("0.0.0.0/0") == remaining < before
        records = await read_topic(kafka_bootstrap, running.settings.events_topic)
        assert all(len(r.value) <= MAX_MESSAGE_BYTES and r.key in (b"mta-1", b"mta-2") for r in records)
        sizes = [len(orjson.loads(r.value)) for r in records]
        assert sum(sizes) == len(published) + 1 and max(sizes) <= 300
