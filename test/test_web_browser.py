"""The car's web page in a real headless browser (Chromium + chromedriver via Selenium) on the simulator backend:
the page loads, a click at a known pixel stores that label on disk, undo removes it, holding the virtual joystick
forward moves the simulated car and letting go stops it."""
from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the web page needs the web extra: pip install -e '.[web]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (the test extra)")

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

from jetracer_trt.dataset import load_image, read_dataset  # noqa: E402
from jetracer_trt.web import WebApp  # noqa: E402
from jetracer_trt.web.sim_backend import SimBackend  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no Chromium browser and chromedriver on PATH (Debian: apt-get install chromium chromium-driver; "
           ".ci/run installs them)")


def _wait(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def page(tmp_path):
    """(browser, backend, frames shown to the page by stamp), the page open on a simulator-backed app."""
    backend = SimBackend(tmp_path / "data", track_seed=0)
    # a long joystick timeout: the car must stop because the page let go, not because the app gave up on it
    app = WebApp(backend, port=0, drive_timeout_s=5.0).start()
    shown: dict[int, np.ndarray] = {}

    def show_frame(stamp_ns, rgb, overlay):
        shown[stamp_ns] = rgb
        app.show_frame(stamp_ns, rgb, overlay)

    backend.start(show_frame)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=900,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        browser.get(app.url)
        _wait(lambda: browser.execute_script("return window.viewStats.frames") >= 3, 20, "the live view")
        yield browser, backend, shown
    finally:
        browser.quit()
        app.stop()
        backend.stop()


def _message(browser) -> str:
    return browser.find_element(By.ID, "message").text


def test_click_to_label_undo_and_drive(page):
    browser, backend, shown = page
    root = backend.writer.root
    camera = browser.find_element(By.ID, "camera")
    geometry = ("const r = arguments[0].getBoundingClientRect();"
                "return [r.left, r.top, r.width, r.height, arguments[0].naturalWidth];")
    # naturalWidth reads 0 for the moment a new frame replaces the old one (the page sizes clicks by the frame's own
    # header, so only the test needs to wait for a decoded frame)
    _wait(lambda: browser.execute_script(geometry, camera)[4] == 224, 10, "a decoded frame")
    left, top, width, height, natural = browser.execute_script(geometry, camera)
    assert natural in (0, 224) and width == height
    # click the image's pixel position (56, 168) of 224 x 224: the label is (2*56/224 - 1, 2*168/224 - 1)
    scale = width / natural
    px, py = left + 56 * scale, top + 168 * scale
    assert px == int(px) and py == int(py), "the test clicks whole CSS pixels"
    click = ActionBuilder(browser)
    click.pointer_action.move_to_location(int(px), int(py)).click()
    click.perform()
    _wait(lambda: _message(browser).startswith("labelled ("), 10, "the label's reply")
    (sample,), corrupt = read_dataset(root)
    assert corrupt == 0 and sample.meta["source"] == "click"
    assert abs(sample.x - (-0.5)) < 1e-6 and abs(sample.y - 0.5) < 1e-6
    clicked = shown[sample.meta["stamp_ns"]]  # the frame the page showed, as the simulator rendered it
    assert np.abs(load_image(sample.image_path).astype(int) - clicked).mean() < 3

    browser.find_element(By.ID, "undo").click()
    _wait(lambda: _message(browser).startswith("removed "), 10, "the undo's reply")
    assert read_dataset(root) == ([], 0) and not sample.image_path.exists()

    start = backend.car_state()
    assert start["speed"] == 0.0
    pad = browser.find_element(By.ID, "joystick")
    ActionChains(browser).move_to_element(pad).click_and_hold().move_by_offset(0, -70).perform()  # forward
    moving = _wait(lambda: (s := backend.car_state())["speed"] > 0.5 and s, 10, "the car to drive")
    assert moving["throttle"] > 0.5 and abs(moving["steering"]) < 0.05
    _wait(lambda: np.hypot(backend.car_state()["x"] - start["x"], backend.car_state()["y"] - start["y"]) > 0.2,
          10, "the car to move")

    ActionChains(browser).release().perform()
    released = time.monotonic()
    _wait(lambda: backend.car_state()["throttle"] == 0.0, 1.0, "the command to drop to zero on release")
    assert time.monotonic() - released < 1.0  # far sooner than the app's 5 s joystick timeout
    _wait(lambda: backend.car_state()["speed"] < 0.05, 5, "the car to stop")
    assert "another client" not in browser.find_element(By.ID, "status").text

    # a finger on a phone: the same stick by touch, steering right this time. One gesture (touch, slide, hold,
    # lift) is one WebDriver call, so it runs on a thread while this one watches the car
    box = browser.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "return [r.left + r.width / 2, r.top + r.height / 2];", pad)
    finger = ActionBuilder(browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
    finger.pointer_action.move_to_location(int(box[0]), int(box[1])).pointer_down()
    finger.pointer_action.move_to_location(int(box[0]) + 45, int(box[1]) - 45).pause(1.5).pointer_up()
    gesture = threading.Thread(target=finger.perform)
    gesture.start()
    touched = _wait(lambda: (s := backend.car_state())["throttle"] > 0.3 and s, 5, "the finger to drive")
    assert touched["steering"] > 0.3
    gesture.join(timeout=10)
    _wait(lambda: backend.car_state()["throttle"] == 0.0, 1.0, "the command to drop to zero when the finger lifts")


def test_live_view_keeps_up_with_the_camera(page):
    """Frames shown per second and the delay from a frame's stamp (taken when the simulator has rendered it) to its
    display in the page; printed for the README (pytest -s), bounded loosely for a shared CPU."""
    browser, backend, _ = page
    stats = "return [window.viewStats.frames, window.viewStats.delaysMs.slice()]"
    frames_before, _ = browser.execute_script(stats)
    started = time.monotonic()
    time.sleep(5)
    frames_after, delays = browser.execute_script(stats)
    fps = (frames_after - frames_before) / (time.monotonic() - started)
    delays = np.array(delays[-(frames_after - frames_before):])
    print(f"\nlive view: {fps:.1f} frames/s of the simulator's {backend.rate_hz:.0f}; capture to display "
          f"p50 {np.percentile(delays, 50):.1f} ms, p95 {np.percentile(delays, 95):.1f} ms, max {delays.max():.1f} ms")
    assert fps > 0.5 * backend.rate_hz
    assert np.percentile(delays, 50) < 100
