"""Named audit series on the real broker (SPEC section 8), every answer against a brute-force oracle.

Adds and removes from two MTA nodes through two workers; counts per node and for the fleet over
every CIDR form; every new error code; a define conflict; definitions and counts that survive a
SIGKILL and restart of every worker with no loss and no double count.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import random
import time
from typing import Any

import orjson
import pytest
from harness import Requester, isolated_env, prepare_topics, publish, read_topic
from test_pipeline_e2e import start_workers, stop_all

pytestmark = pytest.mark.integration

#: Windows long enough that nothing the test sends expires while it runs.
CONFIGURED = "cfg.fails:cidr:60,30"
NODES = ("mta-1", "mta-2")
V4 = ["192.0.2.1", "192.0.2.77", "192.0.3.4", "198.51.100.9", "::ffff:192.0.2.1"]
V6 = ["2001:db8::1", "2001:db8::ffff", "2001:db8:0:1::7", "2001:db8:1::9"]
STRINGS = ["alice@example.com", "bob@example.com", "carol"]


class SeriesOracle:
    """Every series event published, and answers as filtered sums (ipaddress, plain arithmetic)."""

    def __init__(self, definitions: dict[str, tuple[str, int, int, int | None]]) -> None:
        self.definitions = definitions
        self.events: list[dict[str, Any]] = []

    def key_of(self, name: str, key: str) -> Any:
        kind, _, _, prefix = self.definitions[name]
        if kind == "string":
            return key
        ip = ipaddress.ip_address(key)
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if prefix is not None:
            return int(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
        return int(ip)

    def count(self, name: str, query: Any, startv: int, endv: int, at: float, node: str | None) -> int:
        kind, size, num, _ = self.definitions[name]
        wanted = {math.floor(at / size) * size - k * size for k in range(startv, endv + 1)}
        oldest = math.floor(time.time() / size) * size - (num - 1) * size
        removed: dict[Any, float] = {}
        for e in self.events:
            if e["series"] == name and e["event"] == "series_remove":
                key = self.key_of(name, e["key"])
                removed[key] = max(removed.get(key, -math.inf), e["ts"])
        total = 0
        for e in self.events:
            if e["series"] != name or e["event"] != "series_add" or (node is not None and e["node"] != node):
                continue
            start = math.floor(e["ts"] / size) * size
            key = self.key_of(name, e["key"])
            if start in wanted and start >= oldest and e["ts"] > removed.get(key, -math.inf) and query(key):
                total += e.get("count", 1)
        return total


def in_block(cidr: str, family: int, prefix_len: int | None = None) -> Any:
    """Membership of a counted key in ``cidr``; a block narrower than the series' ``prefix_len``
    asks for the truncated key that holds it."""
    net = ipaddress.ip_network(cidr.replace("[", "").replace("]", ""), strict=False)
    if prefix_len is not None and net.prefixlen > prefix_len:
        net = net.supernet(new_prefix=prefix_len)
    assert net.version == family
    return lambda key: int(net.network_address) <= key <= int(net.broadcast_address)


async def ask_ok(rq: Requester, request: dict[str, Any]) -> int:
    reply = await rq.ask(request)
    assert reply["ok"] is True, (request, reply)
    return reply["value"]


async def check_counts(rq: Requester, oracle: SeriesOracle, now: float) -> int:
    """Every series, CIDR form and scope against the oracle; returns how many answers were non-zero."""
    asks: list[tuple[dict[str, Any], int]] = []
    forms = [("cfg.fails", c, 4) for c in ("192.0.2.0/24", "192.0.0.0/16", "0.0.0.0/0", "192.0.2.1", "198.51.100.9/32")]
    forms += [("auth6", c, 6) for c in ("2001:db8::/32", "2001:db8::/48", "[2001:db8:0:1::]/64", "2001:db8:1::/48")]
    for name, cidr, family in forms:
        for node in (None, *NODES):
            for startv, endv in ((0, 0), (0, 2), (1, 4) if name == "cfg.fails" else (1, 2)):
                request = {"op": "series_count", "series": name, "key": cidr, "startv": startv, "endv": endv, "at": now}
                request.update({"cluster": True} if node is None else {"node": node})
                query = in_block(cidr, family, oracle.definitions[name][3])
                asks.append((request, oracle.count(name, query, startv, endv, now, node)))
    relative = {
        "op": "series_count",
        "series": "cfg.fails",
        "key": "/24",
        "ip": "192.0.2.200",
        "cluster": True,
        "endv": 4,
        "at": now,
    }
    asks.append((relative, oracle.count("cfg.fails", in_block("192.0.2.0/24", 4), 0, 4, now, None)))
    for key in (*STRINGS, "nobody"):
        request = {"op": "series_count", "series": "senders", "key": key, "endv": 2, "at": now, "cluster": True}
        asks.append((request, oracle.count("senders", lambda k, key=key: k == key, 0, 2, now, None)))
    answers = await asyncio.gather(*(ask_ok(rq, request) for request, _ in asks))
    for (request, expected), got in zip(asks, answers, strict=True):
        assert got == expected, request
    return sum(1 for expected in (e for _, e in asks) if expected)


def make_events(rng: random.Random, now: float, count: int) -> list[dict[str, Any]]:
    events = []
    for _ in range(count):
        name = rng.choice(["cfg.fails", "auth6", "senders"])
        keys = {"cfg.fails": V4, "auth6": V6, "senders": STRINGS}[name]
        event = {"node": rng.choice(NODES), "ts": now - rng.uniform(0, 170), "series": name, "key": rng.choice(keys)}
        if rng.random() < 0.1:
            event["event"] = "series_remove"
        else:
            event["event"] = "series_add"
            event["count"] = rng.choice([1, 1, 2, 5, -1, -3])
        events.append(event)
    return events


async def wait_for(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.3)


async def test_series_define_count_remove_errors_and_restart(kafka_bootstrap: str) -> None:
    env = isolated_env(kafka_bootstrap, 2, "60,1 300,6", INBOUND_AUDIT_SERIES=CONFIGURED)
    settings = await prepare_topics(env)
    workers = await start_workers(env, 2)
    rng = random.Random(15)
    try:
        async with Requester(settings) as rq:
            define = {
                "op": "series_define",
                "series": "auth6",
                "type": "cidr_ipv6",
                "interval": 60,
                "num_windows": 10,
                "prefix_len": 48,
            }
            assert await ask_ok(rq, define) == 1
            assert await ask_ok(rq, define) == 1  # idempotent
            assert (
                await ask_ok(
                    rq,
                    {"op": "series_define", "series": "senders", "type": "string", "interval": 60, "num_windows": 10},
                )
                == 1
            )
            conflict = await rq.ask({**define, "prefix_len": 64})
            assert conflict["error"]["code"] == "series_conflict", conflict
            # Concurrent different definitions of one new name: exactly one ok.
            racers = [{**define, "series": "race", "interval": interval} for interval in (60, 120)]
            replies = await asyncio.gather(*(rq.ask(r) for r in racers))
            assert sorted(str(r.get("error", {}).get("code", "ok")) for r in replies) == ["ok", "series_conflict"]

            now = time.time()
            oracle = SeriesOracle(
                {
                    "cfg.fails": ("cidr", 60, 30, None),
                    "auth6": ("cidr_ipv6", 60, 10, 48),
                    "senders": ("string", 60, 10, None),
                }
            )
            events = make_events(rng, now, 600)
            bad = [
                {"node": "mta-1", "ts": now, "event": "series_add", "series": "nope", "key": "192.0.2.1"},
                {"node": "mta-1", "ts": now, "event": "series_add", "series": "cfg.fails", "key": "2001:db8::1"},
                {"node": "mta-1", "ts": now, "event": "series_add", "series": "auth6", "key": "192.0.2.1"},
            ]
            messages = [(b"mta", orjson.dumps(events[i : i + 50] + (bad if i == 0 else []))) for i in range(0, 600, 50)]
            await publish(settings.bootstrap, settings.events_topic, messages)
            oracle.events += events

            async def counted() -> bool:
                """The fleet totals of every series equal the oracle's (what is sent is all applied)."""
                totals = [("cfg.fails", "0.0.0.0/0", 4), ("auth6", "::/0", 6)]
                for name, cidr, family in totals:
                    request = {"op": "series_count", "series": name, "key": cidr, "endv": 9, "at": now, "cluster": True}
                    if await ask_ok(rq, request) != oracle.count(name, in_block(cidr, family), 0, 9, now, None):
                        return False
                return True

            await wait_for(counted)
            assert await check_counts(rq, oracle, now) > 20
            letters = [
                orjson.loads(r.value) for r in await read_topic(settings.bootstrap, settings.deadletter_topic, 3)
            ]
            assert sorted(letter["reason"] for letter in letters) == ["invalid_key", "invalid_key", "unknown_series"]

            errors = {
                "unknown_series": {"series": "nope", "cluster": True, "key": "/24", "ip": "192.0.2.1"},
                "invalid_range": {"series": "cfg.fails", "cluster": True, "startv": 2, "endv": 1, "key": "10.0.0.1"},
                "window_out_of_range": {"series": "cfg.fails", "cluster": True, "endv": 30, "key": "10.0.0.1"},
                "missing_node": {"series": "cfg.fails", "key": "10.0.0.1"},
                "missing_ip": {"series": "cfg.fails", "cluster": True, "key": "/24"},
                "invalid_key": {"series": "senders", "cluster": True},
            }
            for code, fields in errors.items():
                reply = await rq.ask({"op": "series_count", **fields})
                assert reply["ok"] is False and reply["error"]["code"] == code, (code, reply)

            # Every worker killed, then restarted: definitions and counts exactly as before.
            for worker in workers:
                worker.kill()
            for worker in workers:
                worker.start()
            await asyncio.gather(*(w.wait_ready() for w in workers))
            assert await ask_ok(rq, define) == 1
            assert (await rq.ask({**define, "prefix_len": 64}))["error"]["code"] == "series_conflict"
            await wait_for(counted)
            more = make_events(rng, time.time(), 200)
            await publish(settings.bootstrap, settings.events_topic, [(b"mta", orjson.dumps(more))])
            oracle.events += more
            await wait_for(counted)
            assert await check_counts(rq, oracle, now) > 20
    finally:
        stop_all(workers)
