"""Debian's headless Chromium driven by Selenium through Debian's chromedriver, and the dashboard
page's controls (its test and ``make screenshot``). Nothing is downloaded: both binaries come
from ``deploy/system-deps``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: No sandbox (root in a container), and nothing that would reach the network on its own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--disable-lcd-text",  # grey anti-aliasing: smaller, steadier screenshots
)


def missing_browser() -> str | None:
    """Why the browser cannot run here, or None."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if absent:
        return f"{' and '.join(absent)} not installed: run deploy/system-deps (Debian's chromium, chromium-driver)"
    return None


@contextmanager
def headless_chromium(profile_dir: Path, width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A fresh browser with its own profile, keeping the page's console messages for ``console``."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def console(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The page's console messages (and failed loads) since the last call."""
    return list(driver.get_log("browser"))


def full_page_screenshot(driver: webdriver.Chrome, path: Path) -> None:
    """The whole page as PNG, below the window's bottom too (Chrome DevTools' capture)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))


def first_row(driver: WebDriver, level: str) -> list[tuple[str, str]]:
    """(cidr, events) of the first row of every ``level`` table on the page, read in one script
    run: the page rebuilds its tables on every refresh, so elements found earlier go stale."""
    rows = driver.execute_script(
        """return Array.from(document.querySelectorAll(`table.talkers[data-level="${arguments[0]}"]`))
             .map((table) => Array.from(table.querySelectorAll("tbody tr:first-child td")).map((td) => td.textContent))
             .filter((cells) => cells.length === 2);""",
        level,
    )
    return [(cidr, events) for cidr, events in rows]


def ask_form(driver: WebDriver, fields: dict[str, str], cluster: bool) -> str:
    """Fill the query form, submit it, and return the answer it shows (its data-value)."""
    form = driver.find_element(By.ID, "query-form")
    Select(form.find_element(By.NAME, "op")).select_by_value(fields["op"])
    Select(form.find_element(By.NAME, "monitor")).select_by_value(fields["monitor"])
    for name in ("ip", "cidr", "startv", "endv", "at", "node", "service"):
        box = form.find_element(By.NAME, name)
        box.clear()
        box.send_keys(fields.get(name, ""))
    checkbox = form.find_element(By.NAME, "cluster")
    if checkbox.is_selected() != cluster:
        checkbox.click()
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    result = driver.find_element(By.ID, "query-result")
    WebDriverWait(driver, 20).until(lambda _: result.get_attribute("data-value") is not None, result.text)
    return str(result.get_attribute("data-value"))
