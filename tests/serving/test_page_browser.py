"""The page for people in a real browser (headless Chromium driven by Selenium) against the
shared service: it shows what gRPC answers, explains, follows edits and says what is wrong.

Needs Debian's chromium and chromium-driver; without them these tests are skipped, unless
ATTNREC_REQUIRE_BROWSER=1 (CI sets it) makes that a failure."""

import os
import shutil

import pytest

from attnrec.model.feedback_log import read_events

pytestmark = pytest.mark.integration

BROWSER, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
# as root, in a machine with no route out: no sandbox, and none of Chromium's own calls home
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")
HISTORY = ["i3", "i10", "i27", "i44"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (BROWSER and DRIVER):
        message = "needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("ATTNREC_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)  # no driver download
    yield driver
    driver.quit()


def wait(driver, condition, what: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # an element read while the page re-renders its list is stale: read again at the next poll
    return WebDriverWait(driver, 90, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: condition(d), message=f"the page never {what}")


def shown_items(driver) -> list[str]:
    """The recommended item ids on the page, read in one step (the list may be re-rendering)."""
    return driver.execute_script("return Array.from(document.querySelectorAll('#items > li'), li => li.dataset.itemId)")


def top(client, history, k=10) -> list[str]:
    return [i.item_id for i in client.recommend(history=history, k=k).items]


def open_page(driver, service, query: str) -> None:
    driver.get(f"http://127.0.0.1:{service['http_port']}/ui/?{query}")


def test_the_page_shows_what_grpc_answers_explains_and_follows_edits(browser, service, client):
    from selenium.webdriver.common.by import By

    expected = top(client, HISTORY)
    open_page(browser, service, f"history={','.join(HISTORY)}")
    wait(browser, lambda d: shown_items(d) == expected, f"listed gRPC's answer {expected}")

    browser.find_element(By.CSS_SELECTOR, "#items > li button.why").click()  # the top item's explanation
    wait(browser, lambda d: (d.find_element(By.ID, "heatmap").get_attribute("src") or "").startswith(
        "data:image/png;base64,"), "showed the explanation's picture")
    assert browser.find_element(By.ID, "reason").text.startswith("Recommended")
    assert f"explain={expected[0]}" in browser.current_url  # the view is a link

    # remove a history item whose absence changes the answer (the tiny model ignores some)
    gone = next(i for i in range(len(HISTORY)) if top(client, HISTORY[:i] + HISTORY[i + 1:]) != expected)
    browser.find_elements(By.CSS_SELECTOR, "#history > li button.remove")[gone].click()
    history = HISTORY[:gone] + HISTORY[gone + 1:]
    edited = top(client, history)
    wait(browser, lambda d: shown_items(d) == edited, f"listed gRPC's answer for the edited history {edited}")

    new = next(f"i{j}" for j in range(100, 200) if top(client, [*history, f"i{j}"]) != edited)
    browser.find_element(By.ID, "search").send_keys(new)
    pick = f"#search-results button[data-item-id='{new}']"
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, pick), f"found {new} by searching")
    browser.find_element(By.CSS_SELECTOR, pick).click()
    added = top(client, [*history, new])
    wait(browser, lambda d: shown_items(d) == added, f"listed gRPC's answer with {new} added {added}")
    assert "history=" + "%2C".join([*history, new]) in browser.current_url  # the edited view is a link too
    browser.save_screenshot(str(service["feedback_dir"] / "page.png"))  # for a person looking into a failure


def test_feedback_buttons_log_the_event_against_the_answer_shown(browser, service):
    from selenium.webdriver.common.by import By

    open_page(browser, service, f"history={','.join(HISTORY)}&user_id=page-user")
    wait(browser, lambda d: shown_items(d), "listed recommendations")
    item = shown_items(browser)[1]
    button = browser.find_element(By.CSS_SELECTOR, f"#items > li[data-item-id='{item}'] button.purchase")
    button.click()
    wait(browser, lambda d: "sent" in button.get_attribute("class"), "confirmed the purchase")
    events = read_events(service["feedback_dir"]).to_pylist()
    mine = [e for e in events if e["user_id"] == "page-user"]
    assert [(e["item_id"], e["event_type"]) for e in mine] == [(item, "purchase")] and mine[0]["request_id"]


def test_bad_input_is_said_on_the_page(browser, service):
    from selenium.webdriver.common.by import By

    def message(d):
        return d.find_element(By.ID, "message").text

    open_page(browser, service, "history=i3," + "x" * 300)
    wait(browser, lambda d: "history: an id of 300 bytes" in message(d), "said the id is too long")
    assert shown_items(browser) == []
    open_page(browser, service, "history=i3,no-such-item")
    wait(browser, lambda d: "no-such-item" in message(d) and "catalogue" in message(d), "named the unknown id")
    assert shown_items(browser)  # the known part of the history still counts
    open_page(browser, service, "history=i3&k=100000")
    wait(browser, lambda d: message(d).startswith("k: must be between 1 and"), "said k is out of range")
