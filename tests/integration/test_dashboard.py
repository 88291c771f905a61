"""The dashboard in Debian's headless Chromium, against a real worker on the real broker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from audit_oracle import Monitor, add_talker, block_of, generate
from browser import ask_form, console, first_row, full_page_screenshot, headless_chromium, missing_browser
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait
from web_client import poll_ready, serving_worker, wait_applied

pytestmark = pytest.mark.integration

MONITORS = [Monitor(60, 10), Monitor(300, 6)]
#: Not in the oracle's address pool: only the talker the test adds sends from this /24.
TALKER = "192.0.2.200"


async def test_dashboard_shows_the_talker_and_answers_like_the_oracle(kafka_bootstrap: str, tmp_path: Path) -> None:
    if (why := missing_browser()) is not None:
        pytest.fail(why)
    t0 = time.time()
    stream = generate(MONITORS, t0, 3000, seed=91)
    talker_connections = add_talker(stream, TALKER, "mta-2", t0, messages=60, n=50)
    async with serving_worker(kafka_bootstrap, MONITORS, stream) as (_, worker, web):
        await poll_ready(web, worker)
        await wait_applied(web, stream)
        with headless_chromium(tmp_path / "profile") as driver:
            driver.get(f"{web.base}/dashboard/")
            # The talker tops the /32 and /24 tables of the window holding t0, in both monitors.
            expected = {(f"{TALKER}/32", f"{talker_connections:,}")}
            WebDriverWait(driver, 30).until(lambda d: len(expected & set(first_row(d, "ipv4/32"))) == 1)
            assert ("192.0.2.0/24", f"{talker_connections:,}") in first_row(driver, "ipv4/24")
            assert driver.find_element(By.ID, "status").text == "ready"

            # The form answers as the oracle does (a fixed ``at``: the answer does not move).
            everything = {"op": "connections", "monitor": "300,6", "cidr": "10.0.0.0/8", "startv": "0", "endv": "5"}
            fleet = ask_form(driver, {**everything, "at": str(t0)}, cluster=True)
            assert int(fleet) == stream.count("connections", MONITORS[1], block_of("10.0.0.0/8", None), 0, 5, t0, None)
            on_node = {"op": "connections", "monitor": "60,10", "ip": TALKER, "cidr": "/24", "node": "mta-2"}
            answer = ask_form(driver, {**on_node, "at": str(t0)}, cluster=False)
            oracle = stream.count("connections", MONITORS[0], block_of("/24", TALKER), 0, 0, t0, "mta-2")
            assert int(answer) == oracle >= talker_connections

            errors = [entry for entry in console(driver) if entry["level"] == "SEVERE"]
            assert not errors, errors
            shot = tmp_path / "dashboard.png"
            full_page_screenshot(driver, shot)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
