"""What the worker fuzz runner sent, and what must come of each input.

Value-level event inputs are booked by construction (``fuzz_inputs``): counted per node, metric,
address and hour window, or owed a dead letter with a reason at their message's offset.
Byte-level mutated messages are booked from the reference (pure-Python) decoder run on the
record as the broker appended it (same offset, same append time), after publishing.
Requests owe one reply on the runner's topic, or a dead letter at their offset.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from audit_oracle import WINDOWED, Monitor, addr_of
from fuzz_inputs import EventInput

from pipeline.core.decoding import BatchDecoder
from pipeline.core.events import METRICS

__all__ = ["Ledger", "Location", "CountKey"]

#: (source topic, partition, offset) of one message
Location = tuple[str, int, int]
#: (node, op, family, address, window start)
CountKey = tuple[str, str, int, int, int]


@dataclass
class Ledger:
    """Inputs sent and the outcomes they are owed."""

    monitor: Monitor
    counted: Counter[CountKey] = field(default_factory=Counter)
    letters: dict[Location, Counter[str]] = field(default_factory=dict)
    replies: Counter[str] = field(default_factory=Counter)  # request id -> replies owed on our topic
    mutated: list[tuple[int, int, int, bytes]] = field(default_factory=list)  # partition, offset, append ms, value
    inputs: Counter[str] = field(default_factory=Counter)  # kind -> how many
    valid_events: int = 0

    def batch(self, location: Location, elements: list[EventInput]) -> None:
        """A message of value-level event inputs, as appended at ``location``."""
        reasons = Counter(e.reason for e in elements if e.reason is not None)
        if reasons:
            self.letters[location] = reasons
        for element in elements:
            if element.reason is not None:
                continue
            self.valid_events += 1
            event = element.value
            if event["event"] in WINDOWED:
                family, addr = addr_of(event["ip"])
                key = (event["node"], WINDOWED[event["event"]], family, addr, self.monitor.start(event["ts"]))
                self.counted[key] += event.get("n", 1)
        self.inputs["event"] += len(elements)

    def request(self, location: Location, reply_id: str | None) -> None:
        if reply_id is None:
            self.letters[location] = Counter({"*": 1})  # any reason: the request is unroutable
        else:
            self.replies[reply_id] += 1
        self.inputs["request"] += 1

    def mutated_message(self, partition: int, offset: int, append_ms: int, value: bytes) -> None:
        self.mutated.append((partition, offset, append_ms, value))
        self.inputs["mutated message"] += 1

    def judge_mutated(self, decoder: BatchDecoder, events_topic: str) -> None:
        """Book the byte-level mutated messages as the reference decoder judges them."""
        for partition, offset, append_ms, value in self.mutated:
            delta, rejected = decoder.decode(partition, -1, [value], [offset], [append_ms])
            for _, rejection in rejected:
                self.letters.setdefault((events_topic, partition, offset), Counter())[rejection.reason] += 1
            self.valid_events += delta.event_count + len(delta.sessions)
            for cols in (delta.v4, delta.v6):
                for i in range(len(cols)):
                    key = int.from_bytes(cols.key[i].tobytes(), "big") if cols.family == 6 else int(cols.key[i])
                    op = WINDOWED[METRICS[int(cols.metric[i])]]
                    window = self.monitor.start(int(cols.sec[i]))
                    self.counted[(delta.nodes[int(cols.node[i])], op, cols.family, key, window)] += int(cols.n[i])

    def total(self, node: str | None, op: str, block: tuple[int, int, int], oldest: int) -> int:
        """What the worker must answer for ``block`` (whole kept range from window ``oldest``)."""
        family, lo, hi = block
        return sum(
            n
            for (nd, o, fam, addr, window), n in self.counted.items()
            if o == op and fam == family and lo <= addr <= hi and window >= oldest and (node is None or nd == node)
        )
