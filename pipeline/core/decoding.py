"""One partition's batch of event records to one ``Delta`` plus its rejections.

The native decoder (``pipeline_native``, the Rust crate in ``pipeline/native``) does it in one
call, columns included, when it is built; the pure-Python reference (``EventDecoder`` then
``delta_from_decoded``) does it otherwise, or when ``INBOUND_AUDIT_DECODER=python``. Both give
the same Delta and the same rejections (``tests/unit/test_native_decoder.py`` holds them to it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.core.cidr import IpParser
from pipeline.core.delta import Delta, FamilyColumns, delta_from_decoded
from pipeline.core.events import (
    DecodedBatch,
    EventDecoder,
    Rejection,
    SeriesLookup,
    invalid_json_detail,
)
from pipeline.core.native import NATIVE
from pipeline.core.prefix_counts import KEY_DTYPES
from pipeline.core.series_columns import COLUMN_DTYPES as SERIES_DTYPES
from pipeline.core.series_columns import SeriesColumns
from pipeline.core.windows import Monitor
from pipeline.errors import ConfigError
from pipeline.settings import DECODER_CHOICES

__all__ = ["NATIVE", "DECODER_NAME", "BatchDecoder", "OffsetRejection", "Values", "Ints", "Decoded"]


#: What ``auto`` decodes with on this install: "native" or "python".
DECODER_NAME = "native" if NATIVE is not None else "python"

#: A rejection with the source offset of its record.
OffsetRejection = tuple[int, Rejection]
#: Record values (None: a tombstone), and per-record integers (offsets, timestamps in ms).
Values = Sequence[bytes | None]
Ints = Sequence[int]
#: What a batch decodes to.
Decoded = tuple[Delta, list[OffsetRejection]]

_COLUMN_DTYPES: tuple[np.dtype, ...] = (np.dtype(np.int64), np.dtype(np.uint8), np.dtype(np.uint32))
#: Only if the native decoder refuses bytes that orjson takes (a bug the differential tests hunt).
_UNWORDED_INVALID_JSON = "value is not UTF-8 JSON (native decoder)"


class BatchDecoder:
    """Decodes batches of one partition's records; ``name`` ("native"/"python") says how.

    Keep one per worker: the Python decoder's address cache lives here.
    """

    __slots__ = ("name", "_monitors", "_sizes", "_max_future_s", "_max_future_text", "_reference")

    def __init__(
        self, monitors: Sequence[Monitor], max_future_s: float, choice: str = "auto", series: SeriesLookup | None = None
    ) -> None:
        """``choice`` is ``Settings.decoder``: auto, python, or native (ConfigError if not built);
        ``series`` finds the definition of a series event's series (default: none is defined)."""
        if choice == "native" and NATIVE is None:
            raise ConfigError(
                "INBOUND_AUDIT_DECODER=native but the native decoder (module pipeline_native) is not installed;"
                " install cargo and run 'make .venv/.installed' (or pip install ./pipeline/native)"
            )
        if choice not in DECODER_CHOICES:
            raise ConfigError(
                f"INBOUND_AUDIT_DECODER={choice!r} is invalid: must be one of {', '.join(DECODER_CHOICES)}"
            )
        self.name = "python" if choice == "python" else DECODER_NAME
        self._monitors = tuple(monitors)
        self._sizes = [(m.size_s, m.count) for m in monitors]
        self._max_future_s = max_future_s
        self._max_future_text = f"{max_future_s:g}"
        self._reference = EventDecoder(IpParser(), max_future_s)
        if series is not None:
            self._reference.series = series

    def decode(self, partition: int, prev_offset: int, values: Values, offsets: Ints, timestamps_ms: Ints) -> Decoded:
        """Records ``values[i]`` (None: tombstone) at ``offsets[i]``, written at ``timestamps_ms[i]``.

        Each record is judged against its own timestamp (``now_s``) and the oldest window the
        monitors keep then, so a replay decides the same.
        """
        if self.name == "native":
            return self._decode_native(partition, prev_offset, values, offsets, timestamps_ms)
        return self._decode_python(partition, prev_offset, values, offsets, timestamps_ms)

    def _decode_native(self, partition: int, prev_offset: int, values: Values, offsets: Ints, stamps: Ints) -> Decoded:
        """Native columns, series events included (their definitions looked up through ``series``)."""
        assert NATIVE is not None
        nodes, v4, v6, sessions, spans, rejections, series = NATIVE.decode_records(
            values, offsets, stamps, self._sizes, self._max_future_s, self._max_future_text, self._reference.series
        )
        rejected: list[OffsetRejection] = [
            (offsets[index], Rejection(reason, detail if detail is not None else _invalid_json_detail(value), value))
            for index, reason, detail, value in rejections
        ]
        delta = Delta(partition, prev_offset, spans, nodes, _columns(4, v4), _columns(6, v6), sessions)
        definitions, series_nodes, arrays, text, ends = series
        if ends and ends[-1]:
            columns = [np.frombuffer(data, dtype) for data, (_, dtype) in zip(arrays, SERIES_DTYPES, strict=True)]
            delta.series = SeriesColumns.of_arrays(definitions, series_nodes, columns, text)
            delta.series_ends = ends
        return delta, rejected

    def _decode_python(self, partition: int, prev_offset: int, values: Values, offsets: Ints, stamps: Ints) -> Decoded:
        batch = DecodedBatch()
        ends: list[tuple[int, int, int]] = []
        series_ends: list[int] = []
        rejected: list[OffsetRejection] = []
        decode = self._reference.decode
        for value, offset, ts_ms in zip(values, offsets, stamps, strict=True):
            now_s = ts_ms / 1000.0
            oldest = min(monitor.oldest_kept_start(now_s) for monitor in self._monitors)
            before = len(batch.rejected)
            decode(value, now_s=now_s, oldest_kept_s=oldest, into=batch)
            rejected += [(offset, rejection) for rejection in batch.rejected[before:]]
            ends.append((offset, len(batch.node), len(batch.sessions)))
            series_ends.append(len(batch.series))
        return delta_from_decoded(batch, partition, ends, prev_offset, series_ends), rejected


def _invalid_json_detail(value: bytes) -> str:
    return invalid_json_detail(value) or _UNWORDED_INVALID_JSON


def _columns(family: int, raw: tuple[bytes, bytes, bytes, bytes, bytes]) -> FamilyColumns:
    """numpy views of the native column bytes (no copies)."""
    sec, metric, node = (np.frombuffer(data, dtype) for data, dtype in zip(raw[:3], _COLUMN_DTYPES, strict=True))
    return FamilyColumns(
        family, sec, metric, node, np.frombuffer(raw[3], KEY_DTYPES[family]), np.frombuffer(raw[4], np.int64)
    )
