"""The console in a real browser (headless Chromium) against a real ``stoker up`` with the example functions."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stoker import bundle
from tests.console.browser import chromium, console_errors, screenshot, wait_for
from tests.platform_fixture import PASSWORD, Platform, write_handler

pytestmark = pytest.mark.slow

FLAKY = """
import os

def handle(event, context):
    if os.environ.get("BROKEN") == "1":
        raise RuntimeError("broken on purpose")
    return "fixed: " + event.body.decode()
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def no_console_errors(browser: Any) -> Iterator[None]:
    """Every test ends with no JavaScript error, failed load or CSP violation in the page's console."""
    console_errors(browser)  # start clean
    yield
    assert console_errors(browser) == []


def _by(kind: str) -> Any:
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def _login(browser: Any, p: Platform) -> None:
    browser.delete_all_cookies()
    browser.get(p.url + "/ui/")
    browser.find_element(_by("ID"), "password").send_keys(PASSWORD)
    browser.find_element(_by("ID"), "submit").click()
    wait_for(lambda: browser.find_elements(_by("CSS_SELECTOR"), "#functions tbody tr"), what="the overview")


def _cell(browser: Any, function: str, column: str) -> str:
    row = browser.find_element(_by("CSS_SELECTOR"), f'tr[data-function="{function}.openfaas-fn"]')
    text: str = row.find_element(_by("CSS_SELECTOR"), f"td.{column}").text
    return text


def test_a_wrong_password_is_refused(browser: Any, console_platform: Platform) -> None:
    browser.delete_all_cookies()
    browser.get(console_platform.url + "/ui/")
    assert browser.current_url.endswith("/ui/login")
    browser.find_element(_by("ID"), "password").send_keys("wrong")
    browser.find_element(_by("ID"), "submit").click()
    wait_for(lambda: "Wrong user name or password" in browser.page_source, what="the refusal")
    assert browser.get_cookies() == []
    screenshot(browser, "login")
    # The refusal is a 401, which Chromium reports as a failed load; nothing else may be there.
    assert [e for e in console_errors(browser) if "/ui/login" not in e or "401" not in e] == []


def test_overview_lists_the_functions_with_live_numbers(browser: Any, console_platform: Platform) -> None:
    _login(browser, console_platform)
    examples = {"hello.openfaas-fn", "echo.openfaas-fn", "wordcount.openfaas-fn"}

    def listed() -> bool:  # the stack is deployed while the platform serves already: they come one by one
        rows = browser.find_elements(_by("CSS_SELECTOR"), "#functions tbody tr")
        return examples <= {r.get_attribute("data-function") for r in rows}

    wait_for(listed, timeout=60, what="the example functions")
    before = int(_cell(browser, "wordcount", "calls"))
    for _ in range(6):
        assert httpx.post(console_platform.url + "/function/wordcount", content=b"a b c").status_code == 200
    wait_for(lambda: int(_cell(browser, "wordcount", "calls")) >= before + 6, what="the call count to grow")
    wait_for(lambda: _cell(browser, "wordcount", "rate") not in ("0", "\u2013"), what="a call rate")
    screenshot(browser, "overview")
    browser.find_element(_by("ID"), "filter").send_keys("wordc")
    wait_for(lambda: len(browser.find_elements(_by("CSS_SELECTOR"), "#functions tbody tr")) == 1, what="the filter")


def test_invoke_form_calls_the_function_and_shows_its_answer(browser: Any, console_platform: Platform) -> None:
    _login(browser, console_platform)
    browser.get(console_platform.url + "/ui/#/function/echo.openfaas-fn")
    body = wait_for(lambda: browser.find_element(_by("ID"), "invoke-body"), what="the invoke form")
    body.send_keys("hello from the browser")
    browser.find_element(_by("ID"), "invoke-query").send_keys("x=1")
    browser.find_element(_by("ID"), "invoke-send").click()
    status = wait_for(lambda: browser.find_element(_by("ID"), "invoke-status").text, what="the answer")
    assert status.startswith("200")
    answer = browser.find_element(_by("ID"), "invoke-body-out").text
    assert "hello from the browser" in answer and '"x": "1"' in answer
    assert "stoker_session" not in answer  # the operator's cookie never reaches a function
    screenshot(browser, "function")


def test_a_call_s_log_line_appears_in_the_live_log_within_2_s(browser: Any, console_platform: Platform) -> None:
    _login(browser, console_platform)
    browser.get(console_platform.url + "/ui/#/function/hello.openfaas-fn")
    wait_for(lambda: "(live)" in browser.find_element(_by("ID"), "logs").text, what="the live log to connect")
    r = httpx.post(console_platform.url + "/function/hello", content=b"log me")
    call_id = r.headers["x-call-id"]
    answered = time.monotonic()
    wait_for(lambda: call_id in browser.find_element(_by("ID"), "log").text, timeout=2.0, what="the log line")
    assert time.monotonic() - answered < 2.0
    browser.find_element(_by("ID"), "log-filter").send_keys(call_id)
    lines = wait_for(
        lambda: (
            (ls := browser.find_elements(_by("CSS_SELECTOR"), "#log .line"))
            and all(call_id in x.text for x in ls)
            and ls
        ),
        what="the call id filter",
    )
    assert len(lines) >= 1


def test_a_dead_letter_replayed_from_the_queue_page_then_succeeds(browser: Any, console_platform: Platform) -> None:
    folder = write_handler(console_platform.home.parent / "flaky", FLAKY)
    body = {"service": "flaky", "source": base64.b64encode(bundle.pack(folder)).decode(), "envVars": {"BROKEN": "1"}}
    with console_platform.client() as c:
        assert c.post("/system/functions", json=body).status_code == 202
        call_id = httpx.post(console_platform.url + "/async-function/flaky", content=b"again").headers["x-call-id"]

        def dead() -> bool:
            return any(q["function"] == "flaky.openfaas-fn" and q["dead"] for q in c.get("/system/queues").json())

        wait_for(dead, timeout=60, what="the call to become a dead letter")
        # The fix: redeploy without the fault, then replay from the console.
        assert c.put("/system/functions", json={**body, "envVars": {"BROKEN": "0"}}).status_code == 202
        wait_for(lambda: c.post("/function/flaky", content=b"x").text == "fixed: x", timeout=60, what="the fix")
    _login(browser, console_platform)
    browser.get(console_platform.url + "/ui/#/queues")
    wait_for(
        lambda: browser.find_element(_by("CSS_SELECTOR"), 'tr[data-function="flaky.openfaas-fn"] .show-dead'),
        what="the dead letter",
    ).click()
    row = wait_for(lambda: browser.find_element(_by("CSS_SELECTOR"), "#dead tr[data-dead]"), what="the dead letters")
    assert "broken on purpose" in row.text or "500" in row.text
    screenshot(browser, "queues")
    row.find_element(_by("CSS_SELECTOR"), "button.replay").click()
    wait_for(lambda: "Replayed 1 call" in browser.find_element(_by("ID"), "replay-message").text, what="the replay")
    browser.find_element(_by("ID"), "call-id").send_keys(call_id)

    def succeeded() -> bool:
        browser.find_element(_by("ID"), "lookup-send").click()
        return browser.find_element(_by("ID"), "lookup-status").text == "200"

    wait_for(succeeded, timeout=30, what="the replayed call to succeed")
    assert "fixed: again" in browser.find_element(_by("ID"), "lookup-result").text


def test_platform_page(browser: Any, console_platform: Platform) -> None:
    _login(browser, console_platform)
    browser.get(console_platform.url + "/ui/#/platform")
    assert wait_for(lambda: browser.find_element(_by("ID"), "backend").text, what="the platform page") == "local"
    screenshot(browser, "platform")


def test_the_function_page_shows_the_deploy_history_with_who_and_what(browser: Any, console_platform: Platform) -> None:
    folder = write_handler(console_platform.home.parent / "historic", "def handle(event, context):\n    return 'v1'\n")
    assert console_platform.deploy("historic", folder, labels={"team": "blue"}).status_code == 202
    _login(browser, console_platform)
    browser.get(console_platform.url + "/ui/#/function/historic.openfaas-fn")
    deploy = wait_for(
        lambda: browser.find_element(_by("CSS_SELECTOR"), '#history tr[data-action="deploy"]'), what="the history"
    )
    assert "admin (basic)" in deploy.text and "ok" in deploy.text and "label +team=blue" in deploy.text
    assert "source:sha256:" in deploy.text
    # A change made in the console is in the history at once, as the console's.
    wait_for(lambda: browser.find_element(_by("ID"), "scale-replicas"), what="the scale form").send_keys("2")
    browser.find_element(_by("ID"), "scale").click()
    wait_for(lambda: browser.find_element(_by("ID"), "confirm"), what="the confirmation").click()
    scale = wait_for(
        lambda: browser.find_element(_by("CSS_SELECTOR"), '#history tr[data-action="scale"]'), what="the scaling"
    )
    assert "admin (console)" in scale.text and "replicas: 1 -> 2" in scale.text
    browser.execute_script("document.getElementById('history').scrollIntoView()")
    screenshot(browser, "function-history")
