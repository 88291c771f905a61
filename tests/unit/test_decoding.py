"""``BatchDecoder``: a partition's records to one Delta and offset-tagged rejections, whichever
decoder is active (CI runs this file with the native one built and with it hidden)."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from pipeline.core import decoding
from pipeline.core.decoding import DECODER_NAME, NATIVE, BatchDecoder
from pipeline.core.delta import decode_delta, encode_delta
from pipeline.core.windows import Monitor
from pipeline.errors import ConfigError
from pipeline.settings import load_settings

MONITORS = (Monitor(60, 1), Monitor(300, 6))
NOW_MS = 1_700_000_000_000
AVAILABLE = ["python"] + (["native"] if NATIVE is not None else [])


def _ev(**fields: Any) -> dict[str, Any]:
    return {"node": "mx1", "ts": NOW_MS / 1000 - 10, "ip": "10.0.0.1", "event": "connection", **fields}


def test_decoder_name_says_what_auto_uses() -> None:
    assert DECODER_NAME == ("native" if NATIVE is not None else "python")
    assert BatchDecoder(MONITORS, 300.0).name == DECODER_NAME
    assert BatchDecoder(MONITORS, 300.0, "python").name == "python"


def test_native_when_not_built_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding, "NATIVE", None)
    with pytest.raises(ConfigError, match="INBOUND_AUDIT_DECODER=native .* pipeline_native"):
        BatchDecoder(MONITORS, 300.0, "native")


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ConfigError, match="'rust'"):
        BatchDecoder(MONITORS, 300.0, "rust")


@pytest.mark.parametrize(("env", "expected"), [({}, "auto"), ({"INBOUND_AUDIT_DECODER": "python"}, "python")])
def test_setting(env: dict[str, str], expected: str) -> None:
    assert load_settings(env).decoder == expected


@pytest.mark.parametrize("name", AVAILABLE)
def test_batch_to_delta_and_tagged_rejections(name: str) -> None:
    records = [
        orjson.dumps([_ev(), _ev(ip="2001:db8::1", node="mx2", n=4), _ev(event="session_open", ip="::ffff:1.2.3.4")]),
        b"[1",
        None,
        orjson.dumps(_ev(ts=NOW_MS / 1000 - 200)),  # too late at its own record time, see below
        orjson.dumps([_ev(event="rejection", ts=NOW_MS / 1000 + 0.75)]),
    ]
    offsets = [40, 41, 42, 43, 44]
    stamps = [NOW_MS, NOW_MS, NOW_MS, NOW_MS + 3_600_000, NOW_MS + 1]
    delta, rejected = BatchDecoder(MONITORS, 300.0, name).decode(5, 39, records, offsets, stamps)
    assert (delta.partition, delta.prev_offset, delta.nodes) == (5, 39, ["mx1", "mx2"])
    assert delta.spans == [(40, 1, 1, 1), (41, 1, 1, 1), (42, 1, 1, 1), (43, 1, 1, 1), (44, 2, 1, 1)]
    assert delta.v4.sec.tolist() == [NOW_MS // 1000 - 10, NOW_MS // 1000]
    assert delta.v4.metric.tolist() == [0, 2] and delta.v4.node.tolist() == [0, 0]
    assert delta.v4.key.tolist() == [0x0A000001, 0x0A000001] and delta.v4.n.tolist() == [1, 1]
    assert delta.v6.key.tolist() == [(0x20010DB8 << 96 | 1).to_bytes(16, "big")] and delta.v6.n.tolist() == [4]
    assert delta.v6.node.tolist() == [1]
    assert delta.sessions == [("open", "mx1", 4, 0x01020304, "SMTP")]
    assert [(offset, r.reason) for offset, r in rejected] == [
        (41, "invalid_json"),
        (42, "invalid_json"),
        (43, "too_late"),
    ]
    assert rejected[0][1].detail.startswith("value is not UTF-8 JSON: ") and rejected[0][1].value == b"[1"
    assert decode_delta(encode_delta(delta)).spans == delta.spans


@pytest.mark.parametrize("name", AVAILABLE)
def test_columns_have_the_delta_dtypes(name: str) -> None:
    delta, _ = BatchDecoder(MONITORS, 300.0, name).decode(0, -1, [orjson.dumps([_ev(), _ev(ip="::1")])], [0], [NOW_MS])
    for cols, key_dtype in ((delta.v4, np.uint32), (delta.v6, np.dtype("S16"))):
        assert [a.dtype for a in (cols.sec, cols.metric, cols.node, cols.key, cols.n)] == [
            np.int64,
            np.uint8,
            np.uint32,
            key_dtype,
            np.int64,
        ]


@pytest.mark.parametrize("name", AVAILABLE)
def test_an_empty_batch(name: str) -> None:
    delta, rejected = BatchDecoder(MONITORS, 300.0, name).decode(0, 7, [], [], [])
    assert (delta.spans, delta.event_count, delta.sessions, rejected) == ([], 0, [], [])
