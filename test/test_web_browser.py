"""The car's web page in a real headless browser (Chromium + chromedriver via Selenium) on the simulator backend:
the page loads, a click at a known pixel stores that label on disk, undo removes it, holding the virtual joystick
forward moves the simulated car and letting go stops it, the latency is shown, the dataset browser pages through the
samples and deletes one. The same page on the real collection graph: test_web_collect_graph.py."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the web page needs the web extra: pip install -e '.[web]'")

from browser_page import (  # noqa: E402
    browse, click_camera, delete_listed, hold_stick, latency_figures, listed_ids, message, needs_browser,
    open_dataset, open_page, release_stick, wait)
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402

from jetracer_trt.dataset import DatasetWriter, load_image, read_dataset  # noqa: E402
from jetracer_trt.web import WebApp  # noqa: E402
from jetracer_trt.web.sim_backend import SimBackend  # noqa: E402

pytestmark = needs_browser


@pytest.fixture
def page(tmp_path):
    """(browser, backend, frames shown to the page by stamp), the page open on a simulator-backed app."""
    backend = SimBackend(tmp_path / "data", track_seed=0)
    # a long joystick timeout: the car must stop because the page let go, not because the app gave up on it; a
    # token, as from a phone: every request of the page (thumbnails included) must carry it
    app = WebApp(backend, port=0, drive_timeout_s=5.0, token="browser-test-token").start()
    shown: dict[int, np.ndarray] = {}

    def show_frame(stamp_ns, rgb, overlay):
        shown[stamp_ns] = rgb
        app.show_frame(stamp_ns, rgb, overlay)

    backend.start(show_frame)
    try:
        with open_page(app.url) as browser:
            yield browser, backend, shown
    finally:
        app.stop()
        backend.stop()


def test_click_to_label_undo_and_drive(page):
    browser, backend, shown = page
    root = backend.writer.root
    # the image's pixel position (56, 168) of 224 x 224: the label is (2*56/224 - 1, 2*168/224 - 1)
    click_camera(browser, 56, 168)
    wait(lambda: message(browser).startswith("labelled ("), 10, "the label's reply")
    (sample,), corrupt = read_dataset(root)
    assert corrupt == 0 and sample.meta["source"] == "click"
    assert abs(sample.x - (-0.5)) < 1e-6 and abs(sample.y - 0.5) < 1e-6
    clicked = shown[sample.meta["stamp_ns"]]  # the frame the page showed, as the simulator rendered it
    assert np.abs(load_image(sample.image_path).astype(int) - clicked).mean() < 3

    browser.find_element(By.ID, "undo").click()
    wait(lambda: message(browser).startswith("removed "), 10, "the undo's reply")
    assert read_dataset(root) == ([], 0) and not sample.image_path.exists()

    start = backend.car_state()
    assert start["speed"] == 0.0
    hold_stick(browser)  # forward
    moving = wait(lambda: (s := backend.car_state())["speed"] > 0.5 and s, 10, "the car to drive")
    assert moving["throttle"] > 0.5 and abs(moving["steering"]) < 0.05
    wait(lambda: np.hypot(backend.car_state()["x"] - start["x"], backend.car_state()["y"] - start["y"]) > 0.2,
          10, "the car to move")

    release_stick(browser)
    released = time.monotonic()
    wait(lambda: backend.car_state()["throttle"] == 0.0, 1.0, "the command to drop to zero on release")
    assert time.monotonic() - released < 1.0  # far sooner than the app's 5 s joystick timeout
    wait(lambda: backend.car_state()["speed"] < 0.05, 5, "the car to stop")
    assert "another client" not in browser.find_element(By.ID, "status").text

    # a finger on a phone: the same stick by touch, steering right this time. One gesture (touch, slide, hold,
    # lift) is one WebDriver call, so it runs on a thread while this one watches the car
    box = browser.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "return [r.left + r.width / 2, r.top + r.height / 2];",
                                 browser.find_element(By.ID, "joystick"))
    finger = ActionBuilder(browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"))
    finger.pointer_action.move_to_location(int(box[0]), int(box[1])).pointer_down()
    finger.pointer_action.move_to_location(int(box[0]) + 45, int(box[1]) - 45).pause(1.5).pointer_up()
    gesture = threading.Thread(target=finger.perform)
    gesture.start()
    touched = wait(lambda: (s := backend.car_state())["throttle"] > 0.3 and s, 5, "the finger to drive")
    assert touched["steering"] > 0.3
    gesture.join(timeout=10)
    wait(lambda: backend.car_state()["throttle"] == 0.0, 1.0, "the command to drop to zero when the finger lifts")


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
    figures = wait(lambda: latency_figures(browser), 5, "the latency figures")
    print(f"latency shown: {figures}")
    assert 0 < figures["capture\u2192web"] <= figures["capture\u2192command"] < 200
    assert 0 <= figures["capture\u2192screen"] < 1000


@pytest.fixture
def recorded(tmp_path):
    """A dataset of 30 samples (x = -1 + k/30, oldest first) before the page opens; their image names."""
    frame = np.full((224, 224, 3), 70, np.uint8)
    with DatasetWriter(tmp_path / "data") as writer:
        return [writer.append(frame, -1 + k / 30, 0.2, source="click", mode="manual") for k in range(30)]


def test_the_dataset_browser_pages_newest_first_and_deletes(recorded, page):
    browser, backend, _ = page
    open_dataset(browser)
    first_load_ms = browser.execute_script("return window.browseStats.lastLoadMs")
    assert listed_ids(browser) == recorded[::-1][:12]
    info = browser.find_element(By.ID, "browse-info").text
    assert info.startswith("30 samples") and "page 1 of 3" in info
    drawn = browser.execute_script("return [...document.querySelectorAll('#samples img')].map((i) => i.naturalWidth)")
    assert drawn == [160] * 12  # every thumbnail decoded (label drawn on it by the app)
    caption = browser.find_element(By.CSS_SELECTOR, "#samples .sample figcaption").text
    assert "click" in caption and "manual" in caption and f"x {-1 + 29 / 30:.2f}" in caption
    browse(browser, "browse-older")
    assert listed_ids(browser) == recorded[::-1][12:24]
    victim = recorded[::-1][15]
    delete_listed(browser, victim)
    assert message(browser) == f"deleted {victim}"
    samples, _ = read_dataset(backend.writer.root)
    assert len(samples) == 29 and victim not in [s.image_path.relative_to(backend.writer.root).as_posix()
                                                 for s in samples]
    listed = listed_ids(browser)
    assert victim not in listed and listed == [i for i in recorded[::-1] if i != victim][12:24]
    assert browser.find_element(By.ID, "browse-info").text.startswith("29 samples")
    Select(browser.find_element(By.ID, "browse-per-page")).select_by_visible_text("24")
    wait(lambda: len(listed_ids(browser)) == 24, 10, "24 samples a page")
    assert "page 1 of 2" in browser.find_element(By.ID, "browse-info").text
    browse(browser, "browse-older")
    assert listed_ids(browser) == [i for i in recorded[::-1] if i != victim][24:]
    browse(browser, "browse-newer")
    again_ms = browser.execute_script("return window.browseStats.lastLoadMs")
    print(f"\ndataset browser, a page of 12 thumbnails on screen: the first {first_load_ms:.0f} ms, "
          f"one seen before {again_ms:.0f} ms")
