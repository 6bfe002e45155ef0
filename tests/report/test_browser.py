"""report.html in a real browser (Debian's headless Chromium), looked at as a reader would: every
image loads, nothing runs past the page's width (wide tables scroll inside their box), every figure
has a caption that says something (not its file name), no console errors.

CI installs chromium and chromium-driver; elsewhere the test skips when they are absent. Screenshots
are kept in test-output/: report.png (the top) and one per study, report-<study>.png.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

from dlstudies.cli import main
from dlstudies.studies import ORDER

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SHOTS = Path(__file__).resolve().parents[2] / "test-output"
SCREENSHOT = SHOTS / "report.png"

# Elements whose right edge passes the page's, unless a box that scrolls (or clips) holds them.
OVERFLOWING = """
const width = document.documentElement.clientWidth;
const held = e => { for (let a = e.parentElement; a; a = a.parentElement) {
    if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(a).overflowX)) return true; } return false; };
return Array.from(document.querySelectorAll('body *'))
  .filter(e => e.getBoundingClientRect().right > width + 1 && !held(e))
  .map(e => e.tagName + (e.id ? '#' + e.id : '') + (e.className ? '.' + e.className : ''));
"""
CAPTIONS = """
return Array.from(document.querySelectorAll('figure')).map(f => {
  const c = f.querySelector('figcaption'); return [f.closest('section').id, c ? c.textContent.trim() : '']; });
"""


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


def _screenshots(driver, sections) -> None:
    SHOTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(SCREENSHOT))
    for sid in sections:
        element = driver.find_element("id", sid)
        driver.execute_script("arguments[0].scrollIntoView()", element)
        element.screenshot(str(SHOTS / f"report-{sid}.png"))


def test_report_renders_in_chromium(report):
    _require_browser()
    from selenium.webdriver.support.wait import WebDriverWait

    driver = _driver()
    try:
        driver.get(report.as_uri())
        # A busy machine may hand the page back before it has parsed and decoded every image.
        WebDriverWait(driver, 120).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete && i.naturalWidth > 0, i.alt || i.src.slice(0, 40)])")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        title = driver.title
        sections = driver.execute_script("return Array.from(document.querySelectorAll('section[id]')).map(s => s.id)")
        overflowing = driver.execute_script(OVERFLOWING)
        page_width = driver.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        captions = driver.execute_script(CAPTIONS)
        _screenshots(driver, sections)
    finally:
        driver.quit()
    assert len(images) >= 2 * len(ORDER), "every study draws at least two figures"
    assert all(ok for ok, _ in images), [name for ok, name in images if not ok]
    assert errors == []
    assert "dlstudies" in title.lower()
    assert sections == list(ORDER), "one section per study, in the order of the studies"
    assert overflowing == [] and page_width[0] <= page_width[1], overflowing
    bare = [(sid, text) for sid, text in captions if len(text.split()) < 6 or re.search(r"\.(png|svg)\b", text)]
    assert len(captions) == len(images) and bare == [], bare
    assert all((SHOTS / f"report-{sid}.png").stat().st_size > 10_000 for sid in sections)
