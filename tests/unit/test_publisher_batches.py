"""Publisher batches stay within SPEC section 3 limits (10,000 events, 1 MiB) and keep event order."""

from __future__ import annotations

import orjson

from pipeline.clients.publisher import encode_batches
from pipeline.core.events import MAX_BATCH_EVENTS, MAX_MESSAGE_BYTES


def test_encode_batches_respects_both_limits() -> None:
    small = [orjson.dumps({"i": i}) for i in range(25_000)]
    values = list(encode_batches(small))
    assert [len(orjson.loads(v)) for v in values] == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS, 5_000]
    big = [orjson.dumps({"pad": "x" * 100_000, "i": i}) for i in range(25)]
    values = list(encode_batches(big))
    assert all(len(v) <= MAX_MESSAGE_BYTES for v in values) and len(values) == 3
    assert [e["i"] for v in values for e in orjson.loads(v)] == list(range(25))
