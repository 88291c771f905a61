"""The one sort ``WindowedCounts.apply`` does per family: rows by (metric, node, second)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.counts import _by_metric_node_second
from pipeline.core.delta import FamilyColumns

_ROWS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5), st.integers(-(2**61), 2**61)), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(_ROWS, st.booleans())
def test_rows_sorted_by_metric_node_second(rows: list[tuple[int, int, int]], narrow: bool) -> None:
    """Narrow: a few minutes of seconds (packed key); wide: a spread no int64 key can pack."""
    if narrow:
        rows = [(m, nd, 1_700_000_000 + s % 300) for m, nd, s in rows]
    metric, node, sec = (np.array(col) for col in zip(*rows, strict=True))
    keys = np.arange(len(rows), dtype=np.uint32)
    cols = FamilyColumns(4, sec.astype(np.int64), metric.astype(np.uint8), node.astype(np.uint32), keys, keys * 2)
    ordered = _by_metric_node_second(cols, 6)
    expected = sorted(range(len(rows)), key=lambda i: (rows[i][0], rows[i][1], rows[i][2], i))
    assert ordered.key.tolist() == expected
    assert ordered.n.tolist() == [2 * i for i in expected]
    assert ordered.sec.tolist() == [rows[i][2] for i in expected]
