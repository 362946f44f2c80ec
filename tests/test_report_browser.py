"""A real screening run's report, opened from disk in headless Chromium (Debian's, driven by Selenium).

The page must load with no console error and no network request, list the flagged records most
anomalous first, show the injected ``<script>`` merchant name as text without running it, and sort
and filter in place. Screenshots are kept as test artefacts in ``tests/artifacts/`` (git-ignored).
``make test`` installs ``chromium`` and ``chromium-driver`` where it can; without them the test is
skipped, except under CI (``CI=true``), where a skipped browser test would hide a broken install.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import IMG, SCRIPT

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).with_name("artifacts")

pytestmark = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)) and os.environ.get("CI") != "true",
    reason=f"needs Debian's chromium and chromedriver ({CHROMIUM}, {CHROMEDRIVER}): "
           f"apt-get install chromium chromium-driver (make test does, as root)")


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def requested_urls(driver) -> list[str]:
    """Every URL the page asked the network stack for, from the DevTools performance log."""
    events = (json.loads(entry["message"])["message"] for entry in driver.get_log("performance"))
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


def test_report_opens_from_disk_safely_and_lists_the_flagged_records(browser, screening_run):
    page = (screening_run["run"] / "report.html").resolve()
    browser.get(page.as_uri())
    assert browser.title.startswith("maskae screening")

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    requested = requested_urls(browser)
    assert page.as_uri() in requested  # the log sees requests: the page's own is the only one
    assert [url for url in requested if url != page.as_uri() and not url.startswith("data:")] == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018  (the injected scripts ran no alert())

    rows = browser.find_elements(By.CSS_SELECTOR, "#flagged tbody tr")
    scores = [float(r.get_attribute("data-score")) for r in rows]
    assert len(rows) > 2 and scores == sorted(scores, reverse=True)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert SCRIPT in body and IMG in body  # shown as text, in the details and the quarantined rows
    assert "where ~" in body and "was expected" in body

    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "report.png"))
    assert browser.find_element(By.ID, "flagged").screenshot(str(ARTIFACTS / "report-flagged.png"))
    print(f"screenshots: {ARTIFACTS / 'report.png'}, {ARTIFACTS / 'report-flagged.png'}")

    score_header = browser.find_element(By.XPATH, "//table[@id='flagged']//th[normalize-space()='score']")
    score_header.click()  # now ascending
    rows = browser.find_elements(By.CSS_SELECTOR, "#flagged tbody tr")
    assert [float(r.get_attribute("data-score")) for r in rows] == sorted(scores)
    browser.find_element(By.ID, "filter-score").send_keys(str(scores[1]))
    shown = [r for r in browser.find_elements(By.CSS_SELECTOR, "#flagged tbody tr") if r.is_displayed()]
    assert len(shown) == sum(s >= scores[1] for s in scores)
    # The text filter finds a record by any of its values, as name=value, not only by what its row shows.
    browser.find_element(By.ID, "filter-score").clear()
    values = [r.get_attribute("data-values") for r in rows]
    country = next(t for t in values[0].split("\n") if t.startswith("country="))
    browser.find_element(By.ID, "filter-text").send_keys(country)
    shown = [r for r in browser.find_elements(By.CSS_SELECTOR, "#flagged tbody tr") if r.is_displayed()]
    # whole name=value pairs: country=GB is not home_country=GB
    assert 0 < len(shown) == sum(country.lower() in v.lower().split("\n") for v in values)
    assert all(country in r.get_attribute("data-values").split("\n") for r in shown)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
