"""``simulate`` is reproducible: the same seed gives the same traffic (timestamps aside)."""

from __future__ import annotations

import ipaddress

from pipeline.cli.simulate import TrafficModel


def run(seed: int, count: int = 3000) -> list[dict]:
    model = TrafficModel(seed, nodes=3)
    events = []
    for i in range(count):
        if i % 100 == 0:
            model.tick()
        events.append(model.event(1000.0 + i))
    return events


def test_same_seed_same_events_and_blocks() -> None:
    assert run(7) == run(7)
    assert TrafficModel(7, 3).abusive == TrafficModel(7, 3).abusive
    assert run(7) != run(8)


def test_abusive_blocks_really_send_and_sessions_never_close_unopened() -> None:
    model = TrafficModel(3, nodes=2)
    blocks = [ipaddress.ip_network(b) for b in model.abusive]
    events = []
    for i in range(5000):
        if i % 50 == 0:
            model.tick()
        events.append(model.event(float(i)))
    hits = {b: sum(ipaddress.ip_address(e["ip"]) in b for e in events) for b in blocks}
    assert all(hits.values()), hits
    open_now: dict[tuple[str, str, str], int] = {}
    for e in events:
        key = (e["node"], e["ip"], e.get("service", ""))
        if e["event"] == "session_open":
            open_now[key] = open_now.get(key, 0) + 1
        elif e["event"] == "session_close":
            assert open_now.get(key, 0) > 0
            open_now[key] -= 1
