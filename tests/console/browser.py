"""Headless Chromium from Debian (``chromium``, ``chromium-driver``) driven by Selenium: no browser download.

Where the browser is missing the console's browser tests skip, except with ``STOKER_TEST_BROWSER=1`` (set by
scripts/setup.d/40-browser.sh, so in CI), where a missing browser fails them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver",)


def _find(names: tuple[str, ...]) -> str | None:
    return next((p for p in (shutil.which(n) for n in names) if p), None)


def chromium() -> Any:
    """A headless Chromium session (window 1400x1000) that keeps the page's console messages."""
    binary, driver = _find(CHROMIUM), _find(DRIVER)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:  # pragma: no cover - selenium is a dev dependency
        binary = None
        why = str(exc)
    else:
        why = "install chromium and chromium-driver (scripts/setup.d/40-browser.sh)"
    if binary is None or driver is None:
        if os.environ.get("STOKER_TEST_BROWSER"):
            pytest.fail(f"STOKER_TEST_BROWSER=1 but no browser: {why}")
        pytest.skip(f"no headless Chromium: {why}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver))


def console_errors(driver: Any) -> list[str]:
    """The page's console messages at level SEVERE since the last call (JavaScript errors, failed loads, CSP
    violations)."""
    return [f"{e['level']}: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(driver: Any, name: str) -> None:
    """Save the page to $STOKER_CONSOLE_SCREENSHOTS/<name>.png when that is set (CI keeps them as artefacts)."""
    folder = os.environ.get("STOKER_CONSOLE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (exceptions count as not yet); fail after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # the element is not there yet, or went stale while re-rendering
            last = exc
        else:
            if value:
                return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))
