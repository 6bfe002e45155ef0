"""report.html in a real browser (Debian's headless Chromium): every image loads, no console errors.

CI installs chromium and chromium-driver; elsewhere the test skips when they are absent. A
screenshot of the page is kept in test-output/report.png.
"""

import os
import shutil
from pathlib import Path

import pytest

from dlstudies.cli import main
from dlstudies.studies import ORDER

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[2] / "test-output" / "report.png"


def _require_browser():
    if CHROMIUM and DRIVER:
        return
    if os.environ.get("CI"):
        pytest.fail("CI must install Debian's chromium and chromium-driver for the browser test")
    pytest.skip("chromium and chromedriver are not installed")


def _driver():
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser")
    # Every study at smoke scale: the page a user gets from `dlstudies run all`, all 13 sections.
    assert main(["run", "all", "--scale", "smoke", "--seeds", "2", "--out", str(out)]) == 0
    return out / "report.html"


def test_report_renders_in_chromium(report):
    _require_browser()
    driver = _driver()
    try:
        driver.get(report.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete && i.naturalWidth > 0, i.alt || i.src.slice(0, 40)])")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        SCREENSHOT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
        title = driver.title
        sections = driver.execute_script("return Array.from(document.querySelectorAll('section[id]')).map(s => s.id)")
    finally:
        driver.quit()
    assert len(images) >= 2 * len(ORDER), "every study draws at least two figures"
    assert all(ok for ok, _ in images), [name for ok, name in images if not ok]
    assert errors == []
    assert "dlstudies" in title.lower()
    assert sections == list(ORDER), "one section per study, in the order of the studies"
