"""The web page in a real headless browser, showing a real pipeline run with the tiny model.

Debian's chromium and chromium-driver (scripts/install-system-packages.sh --for-tests), driven by
selenium through /usr/bin/chromedriver, so nothing is downloaded. Screenshots of every page go to
$DLCWATCH_WEB_SCREENSHOTS (or the test's temporary folder) for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import needs_dlc, write_config
from dlcwatch.store import Store
from dlcwatch.demo.synthetic import write_video
from test_web_server import HOSTILE, get, web_server

pytestmark = needs_dlc
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("chromium and chromium-driver are not installed (scripts/install-system-packages.sh --for-tests)",
                allow_module_level=True)

NON_ASCII = "souris_été_ü.mp4"
REFRESH_S = 3


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("DLCWATCH_WEB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "overview-live.png").unlink(missing_ok=True)
    return folder


@pytest.fixture(scope="module")
def live(tiny_model, tmp_path_factory, browser, screenshots):
    """A web page started before the daemon, watching a real pipeline run to its end.

    Yield (base URL, lab folder, the statuses the page answered while the daemon worked); the
    browser takes overview-live.png while a job is in flight."""
    folder = tmp_path_factory.mktemp("web-lab")
    config_path = write_config(folder, tiny_model, watch={"settle_s": 0.5, "rescan_interval_s": 0.5},
                               executor={"videos_per_job": 2}, web={"refresh_s": REFRESH_S})
    videos = folder / "videos"
    write_video(videos / "plain.mp4", frames=30)
    write_video(videos / NON_ASCII, frames=35, phase=1)
    write_video(videos / HOSTILE, frames=40, phase=2)
    shutil.copyfile(videos / "plain.mp4", videos / "plain again.mp4")
    (videos / "notes.mp4").write_text("this is a text file\n")
    with web_server(config_path) as base:
        status, _, body = get(base + "/api/status")
        assert status == 503 and json.loads(body)["kind"] == "missing"
        daemon = subprocess.Popen([sys.executable, "-m", "dlcwatch", "run", "--until-idle", "--config",
                                   str(config_path)], cwd=folder, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        seen = []
        try:
            deadline = time.monotonic() + 400
            while daemon.poll() is None and time.monotonic() < deadline:
                status, _, body = get(base + "/api/status")
                if status == 200:
                    seen.append(json.loads(body))
                    if seen[-1]["active_jobs"] and not (screenshots / "overview-live.png").exists():
                        browser.get(base + "/")
                        browser.save_screenshot(str(screenshots / "overview-live.png"))
                time.sleep(0.3)
        finally:
            if daemon.poll() is None:
                daemon.kill()
            output = daemon.communicate(timeout=60)[0]
        assert daemon.returncode == 0, output[-3000:]
        # The page shares one status among its viewers, recomputed every refresh_s: it may show the
        # run as it was up to one refresh ago. Wait (a few refreshes at most) for it to catch up.
        deadline = time.monotonic() + 5 * REFRESH_S
        while time.monotonic() < deadline:
            latest = json.loads(get(base + "/api/status")[2])
            if not latest["pending"] and latest["total"] == 5:
                break
            time.sleep(0.3)
        yield base, folder, seen


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--lang=en-US"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def video_ids(folder: Path) -> dict[str, int]:
    store = Store(folder / "state" / "dlcwatch.db", read_only=True)
    try:
        return {Path(video.relpath).name: video.id for video in store.videos()}
    finally:
        store.close()


def no_alert(driver) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_the_page_followed_the_run_live(live, screenshots):
    base, folder, seen = live
    assert (screenshots / "overview-live.png").exists(), "no job was ever seen in flight"
    assert seen, "the page never answered while the daemon ran"
    final = json.loads(get(base + "/api/status")[2])
    # It watched the run happen, not only its end: some answer still had work in flight.
    assert any(answer["pending"] or answer["active_jobs"] for answer in seen)
    assert final["counts"]["done"] == 3 and final["counts"]["quarantined"] == 1
    assert final["counts"]["duplicate"] == 1 and final["pending"] == 0 and final["total"] == 5


def test_overview_shows_the_counts(live, browser, screenshots):
    base, folder, _ = live
    browser.get(base + "/")
    counts = browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('a.count')]"
        ".map(a => [a.dataset.state, Number(a.querySelector('b').textContent)]))")
    store = Store(folder / "state" / "dlcwatch.db", read_only=True)
    expected = store.counts()
    store.close()
    assert {state: n for state, n in counts.items() if n} == expected == {"done": 3, "quarantined": 1, "duplicate": 1}
    headline = browser.find_element("css selector", "h1").text
    assert headline.startswith("5 video(s)") and "1 need a person" in headline
    assert "notes.mp4" in browser.find_element("css selector", "main").text  # under "needs a person"
    browser.save_screenshot(str(screenshots / "overview.png"))
    browser.set_window_size(390, 844)  # a phone
    browser.get(base + "/")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390 + 1, f"the overview is {width} px wide on a 390 px phone"
    browser.save_screenshot(str(screenshots / "overview-phone.png"))
    browser.set_window_size(1280, 1000)


def test_a_video_page_shows_its_qc_picture(live, browser, screenshots):
    base, folder, _ = live
    video_id = video_ids(folder)["plain.mp4"]
    browser.get(f"{base}/videos/{video_id}")
    picture = browser.find_element("css selector", "img[data-kind=qc_png]")
    loaded = browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", picture)
    assert loaded and loaded > 100, "the QC picture did not load"
    text = browser.find_element("css selector", "main").text
    assert "\"sha256\"" in text and "\"outputs\"" in text  # the manifest is shown
    assert "settling → queued" in text and "delivering → done" in text  # the history
    browser.save_screenshot(str(screenshots / "video.png"))
    job = browser.find_element("css selector", "a[href^='/jobs/']")
    job.click()
    assert "Job " in browser.find_element("css selector", "h1").text
    assert "plain.mp4" in browser.find_element("css selector", "main").text
    browser.save_screenshot(str(screenshots / "job.png"))


def test_search_finds_a_non_ascii_name(live, browser, screenshots):
    base, folder, _ = live
    browser.get(base + "/videos")
    field = browser.find_element("css selector", "input[name=q]")
    field.send_keys("été")
    field.submit()
    names = browser.execute_script(
        "return [...document.querySelectorAll('#videos td.name')].map(td => td.textContent.trim())")
    assert names == [NON_ASCII]
    assert urllib.parse.unquote(browser.current_url).endswith("q=été")
    browser.save_screenshot(str(screenshots / "search.png"))
    browser.get(base + "/videos")
    browser.save_screenshot(str(screenshots / "videos.png"))


def test_a_hostile_name_shows_as_text_and_runs_nothing(live, browser, screenshots):
    base, folder, _ = live
    video_id = video_ids(folder)[HOSTILE]
    for path in (f"/videos/{video_id}", "/videos", "/"):
        browser.get(base + path)
        assert no_alert(browser), path
        assert HOSTILE in browser.find_element("css selector", "main").text, path
        assert browser.execute_script("return document.querySelectorAll('img[onerror], img[src=x]').length") == 0
    browser.get(f"{base}/videos/{video_id}")
    assert browser.find_element("css selector", "h1").text == HOSTILE
    browser.save_screenshot(str(screenshots / "hostile.png"))


def test_pages_refresh_themselves_but_not_while_someone_types(live, browser):
    base, _, _ = live
    browser.get(base + "/videos")
    browser.execute_script("window.stillHere = true")
    time.sleep(REFRESH_S + 2)
    assert browser.execute_script("return window.stillHere === undefined"), "the page did not reload"
    browser.execute_script("window.stillHere = true; document.querySelector('input[name=q]').focus()")
    time.sleep(REFRESH_S + 2)
    assert browser.execute_script("return window.stillHere === true"), "it reloaded under a person's typing"
