"""The car's web page in headless Chromium (Selenium + chromedriver), for the browser tests of every backend: open
it, click the image at a frame pixel, hold and release the joystick, read the latency, page and delete in the
dataset browser."""
from __future__ import annotations

import contextlib
import re
import shutil
import time

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (the test extra)")

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no Chromium browser and chromedriver on PATH (Debian: apt-get install chromium chromium-driver; "
           ".ci/run installs them)")


def wait(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@contextlib.contextmanager
def open_page(url: str, frames: int = 3):
    """A headless Chromium on ``url`` once the live view has shown ``frames`` frames."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=900,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        browser.get(url)
        wait(lambda: browser.execute_script("return window.viewStats.frames") >= frames, 20, "the live view")
        yield browser
    finally:
        browser.quit()


def message(browser) -> str:
    return browser.find_element(By.ID, "message").text


def click_camera(browser, u: int, v: int, frame_px: int = 224) -> None:
    """Clicks the live image at the position (u, v) of its ``frame_px`` x ``frame_px`` frame (whole CSS pixels)."""
    camera = browser.find_element(By.ID, "camera")
    geometry = ("const r = arguments[0].getBoundingClientRect();"
                "return [r.left, r.top, r.width, r.height, arguments[0].naturalWidth];")
    # naturalWidth reads 0 for the moment a new frame replaces the old one (the page sizes clicks by the frame's own
    # header, so only the test needs to wait for a decoded frame)
    wait(lambda: browser.execute_script(geometry, camera)[4] == frame_px, 10, "a decoded frame")
    left, top, width, height, natural = browser.execute_script(geometry, camera)
    assert natural in (0, frame_px) and width == height
    scale = width / frame_px
    px, py = left + u * scale, top + v * scale
    assert px == int(px) and py == int(py), "the test clicks whole CSS pixels"
    click = ActionBuilder(browser)
    click.pointer_action.move_to_location(int(px), int(py)).click()
    click.perform()


def hold_stick(browser, dx: int = 0, dy: int = -70) -> None:
    """Presses the virtual joystick and moves by (dx, dy) CSS pixels from its centre (up: forward); held until
    ``release_stick``."""
    pad = browser.find_element(By.ID, "joystick")
    ActionChains(browser).move_to_element(pad).click_and_hold().move_by_offset(dx, dy).perform()


def release_stick(browser) -> None:
    ActionChains(browser).release().perform()


def latency_figures(browser) -> dict[str, float]:
    """The latencies the page shows (name -> ms), e.g. {"capture→command": 12.3, ...}."""
    text = browser.find_element(By.ID, "latency").text
    return {name: float(ms) for name, ms in re.findall(r"(capture\S+) (-?[0-9.]+) ms", text)}


def open_dataset(browser) -> None:
    """Opens the dataset browser and waits for its first page."""
    loads = browser.execute_script("return window.browseStats.loads")
    browser.find_element(By.CSS_SELECTOR, "#dataset summary").click()
    wait(lambda: browser.execute_script("return window.browseStats.loads") > loads, 10, "the dataset's first page")


def browse(browser, button_id: str) -> None:
    """Clicks a dataset browser button (browse-older, browse-newer, browse-refresh) and waits for its page."""
    loads = browser.execute_script("return window.browseStats.loads")
    browser.find_element(By.ID, button_id).click()
    wait(lambda: browser.execute_script("return window.browseStats.loads") > loads, 10, f"the page after {button_id}")


def listed_ids(browser) -> list[str]:
    return browser.execute_script("return [...document.querySelectorAll('#samples .sample')]"
                                  ".map((f) => f.dataset.id)")


def delete_listed(browser, image_id: str) -> None:
    """Deletes a listed sample the way a person does (two taps) and waits for the list to reload."""
    button = browser.find_element(By.CSS_SELECTOR, f'#samples .sample[data-id="{image_id}"] button.delete')
    button.click()
    loads = browser.execute_script("return window.browseStats.loads")
    button.click()
    wait(lambda: browser.execute_script("return window.browseStats.loads") > loads, 10, "the list after a delete")
