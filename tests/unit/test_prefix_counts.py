"""PrefixCounts at sizes that force merging, against numpy brute force; the native merge against
numpy's (the reference), and whichever is in use against a dict."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.native import NATIVE
from pipeline.core.prefix_counts import (
    KEY_DTYPES,
    MERGE,
    PrefixCounts,
    key_of,
    keys_to_ints,
    merge_native,
    merge_numpy,
)


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


def _ints(family: int) -> st.SearchStrategy[int]:
    """Addresses crowded near both ends and in one spot, so keys repeat and share bytes."""
    top = 2**32 - 1 if family == 4 else 2**128 - 1
    near = st.integers(0, 300)
    return st.one_of(near, near.map(lambda d: top - d), near.map(lambda d: (top >> 1) + d), st.integers(0, top))


def _keys(family: int, ints: list[int]) -> np.ndarray:
    return np.array([key_of(family, value) for value in ints], dtype=KEY_DTYPES[family])


@pytest.mark.skipif(NATIVE is None, reason="native module not built (no cargo when installed)")
@settings(max_examples=300, deadline=None)
@given(data=st.data(), family=st.sampled_from([4, 6]))
def test_native_merge_equals_numpy_merge(data: st.DataObject, family: int) -> None:
    counts = st.integers(-(2**63), 2**63 - 1) | st.integers(1, 9)
    existing = sorted(set(data.draw(st.lists(_ints(family), max_size=60))))
    pending = data.draw(st.lists(st.tuples(_ints(family), counts), max_size=80))
    keys = _keys(family, existing)
    vals = np.array(data.draw(st.lists(counts, min_size=len(existing), max_size=len(existing))), dtype=np.int64)
    pending_keys = _keys(family, [key for key, _ in pending])
    pending_vals = np.array([count for _, count in pending], dtype=np.int64)
    with np.errstate(over="ignore"):
        expected = merge_numpy(family, keys, vals, pending_keys, pending_vals)
    got = merge_native(family, keys, vals, pending_keys, pending_vals)
    for mine, reference in zip(got, expected, strict=True):
        assert mine.dtype == reference.dtype
        assert mine.tolist() == reference.tolist()


@pytest.mark.parametrize("family", [4, 6])
def test_the_merge_in_use_sums_like_a_dict(family: int) -> None:
    rng = np.random.default_rng(11)
    ints = [int(x) for x in rng.integers(0, 1_000, 5_000)]
    if family == 6:
        ints = [x << 100 | x for x in ints]
    sums: dict[int, int] = {}
    for value in ints:
        sums[value] = sums.get(value, 0) + value % 7
    half = len(ints) // 2
    keys, vals, cum = MERGE(
        family,
        _keys(family, []),
        np.empty(0, np.int64),
        _keys(family, ints[:half]),
        np.array([v % 7 for v in ints[:half]], np.int64),
    )
    keys, vals, cum = MERGE(
        family, keys, vals, _keys(family, ints[half:]), np.array([v % 7 for v in ints[half:]], np.int64)
    )
    assert keys_to_ints(family, keys) == sorted(sums)
    assert vals.tolist() == [sums[k] for k in sorted(sums)]
    assert cum.tolist() == [0, *np.cumsum([sums[k] for k in sorted(sums)]).tolist()]
