"""The worker consumer's fetch size comes from ``INBOUND_AUDIT_FETCH_MAX_BYTES``: the whole fetch,
and a quarter of it per partition (a small fetch lets requests through while events stream in)."""

from __future__ import annotations

import pytest

from pipeline.app.app import build_app
from pipeline.app.transport import FETCH_MAX_WAIT_MS, METADATA_MAX_AGE_MS
from pipeline.errors import ConfigError
from pipeline.settings import load_settings


@pytest.mark.parametrize(("configured", "expected"), [(None, 2 << 20), ("1048576", 1 << 20)])
async def test_the_worker_consumer_fetches_what_is_configured(configured: str | None, expected: int) -> None:
    env = {"INBOUND_AUDIT_FETCH_MAX_BYTES": configured} if configured else {}
    settings = load_settings(env)
    app = build_app(settings, "127.0.0.1:1").app
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # built, never started
    assert consumer._fetch_max_bytes == expected
    assert consumer._max_partition_fetch_bytes == expected // 4
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS
    # A restarted broker's topics reach the group leader's metadata within seconds (assignor.py).
    assert consumer._client._metadata_max_age_ms == METADATA_MAX_AGE_MS < 300_000


@pytest.mark.parametrize("bad", ["1000", "lots", str(2 << 30)])
def test_a_fetch_size_out_of_range_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ConfigError, match="INBOUND_AUDIT_FETCH_MAX_BYTES"):
        load_settings({"INBOUND_AUDIT_FETCH_MAX_BYTES": bad})
