"""The sandbox checkout page in a real headless Chromium: open, choose a method, pay."""

from __future__ import annotations

import json
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from bot.xpay.signing import signature_matches

# Fixtures, imported so pytest finds them here (hence F401 and the test's F811 noqa).
from tests.browser import chrome  # noqa: F401
from tests.test_sandbox_gateway import (  # noqa: F401
    WEBHOOK_SECRET,
    Gateway,
    gateway,
    recorder,
)


def test_pay_in_browser(gateway: Gateway, chrome: WebDriver, tmp_path: Path) -> None:  # noqa: F811
    success_url = f"{gateway.recorder.url}/success?order=42"
    data = gateway.create_ok(
        success_url=success_url, failure_url=f"{gateway.recorder.url}/failure?order=42"
    )

    chrome.get(data["checkout_page_url"])

    assert "Paylink sandbox" in chrome.title
    assert chrome.find_element(By.ID, "amount").text == "PKR 1,500.50"
    assert chrome.find_element(By.ID, "customer").text == "<b>&"
    methods = chrome.find_elements(By.CSS_SELECTOR, "input[name=method]")
    assert [m.get_attribute("value") for m in methods] == ["card", "jazzcash"]
    chrome.find_element(By.ID, "method-jazzcash").click()
    chrome.save_screenshot(str(tmp_path / "checkout.png"))

    chrome.find_element(By.ID, "pay").click()

    WebDriverWait(chrome, 10).until(lambda d: d.current_url == success_url)
    assert chrome.find_element(By.ID, "merchant").text == "Thank you"
    hooks = [r for r in gateway.recorder.posts() if r.path == "/xpay/webhook"]
    assert len(hooks) == 1
    assert signature_matches(WEBHOOK_SECRET, hooks[0].body, hooks[0].headers["x-signature"])
    event = json.loads(hooks[0].body)
    assert event["payment_intent_id"] == data["_id"]
    assert event["status"] == "succeeded"
    assert event["payment_method_types"] == "jazzcash"

    chrome.back()  # the page now shows the final state instead of the buttons
    chrome.refresh()
    assert chrome.find_element(By.ID, "state").text == "Paid with JazzCash"
    assert not chrome.find_elements(By.ID, "pay")
    chrome.save_screenshot(str(tmp_path / "paid.png"))
