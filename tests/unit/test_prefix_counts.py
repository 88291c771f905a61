"""PrefixCounts at sizes that force merging, against numpy brute force."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.prefix_counts import PrefixCounts, key_of


@pytest.mark.parametrize("family", [4, 6])
def test_range_sums_across_merges_match_brute_force(family: int) -> None:
    rng = np.random.default_rng(7)
    cell = PrefixCounts(family)
    all_addrs: list[int] = []
    all_counts: list[int] = []
    for _ in range(12):  # 12 x 20,000 inserts: crosses the merge threshold several times
        size = 20_000
        # A narrow space so addresses repeat and merges really add counts up.
        addrs = rng.integers(0, 50_000, size).tolist()
        if family == 6:
            addrs = [a << 64 | 0xABCD for a in addrs]
        counts = rng.integers(1, 5, size)
        keys = np.array([key_of(family, a) for a in addrs], dtype=cell.keys.dtype)
        cell.add(keys, counts)
        all_addrs += addrs
        all_counts += counts.tolist()
        ref_addrs = np.array(all_addrs, dtype=object)
        ref_counts = np.array(all_counts)
        top = 2**32 - 1 if family == 4 else 2**128 - 1
        shift = 0 if family == 4 else 64
        for lo, hi in [
            (0, top),
            (100 << shift, 100 << shift),
            (5000 << shift, 9000 << shift),
            (all_addrs[3], all_addrs[3]),
        ]:
            expected = int(ref_counts[(ref_addrs >= lo) & (ref_addrs <= hi)].sum())
            assert cell.range_sum(lo, hi) == expected
    assert cell.total() == sum(all_counts)
    assert len(cell) == len(set(all_addrs))
