"""Camera sources without hardware: video files and image folders for real, CSI and V4L2 up to OpenCV's seam."""
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetracer_trt.camera import (
    STAMP_BEFORE_READ,
    STAMP_DRIVER,
    STAMP_RELEASE,
    CameraError,
    DriverClock,
    EndOfStream,
    FolderSource,
    FrameSource,
    FrameTransform,
    Pacer,
    RateMeter,
    ReconnectingSource,
    V4l2Source,
    VideoFileSource,
    create_source,
    csi_pipeline,
    opencv_has_gstreamer,
)
from jetracer_trt.camera import sources as sources_module
from jetracer_trt.config import load_config, share_dir
from jetracer_trt.errors import JetracerError

# BGR colours as OpenCV writes them, and what an RGB reader must see
RED, GREEN, BLUE, WHITE, BLACK = (0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255), (0, 0, 0)
W, H = 64, 48


def rgb_of(bgr):
    return np.array(bgr[::-1])


def solid(bgr):
    frame = np.empty((H, W, 3), dtype=np.uint8)
    frame[:] = bgr
    return frame


def assert_colour(frame, bgr, tol=40):
    assert frame.dtype == np.uint8 and frame.shape == (H, W, 3)
    mean = frame.reshape(-1, 3).mean(axis=0)
    assert np.all(np.abs(mean - rgb_of(bgr)) < tol), (mean, bgr)


@pytest.fixture(scope="module")
def video_path(tmp_path_factory):
    """Five solid frames: red, green, blue, white, black at 25 fps."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (W, H))
    assert writer.isOpened()
    for colour in (RED, GREEN, BLUE, WHITE, BLACK):
        writer.write(solid(colour))
    writer.release()
    return path


# --- video ---------------------------------------------------------------------------------------------------------

def test_video_plays_every_frame_in_rgb_then_ends(video_path):
    with VideoFileSource(video_path, loop=False, fps=0) as source:
        frames = [source.read().copy() for _ in range(5)]
        with pytest.raises(EndOfStream):
            source.read()
        with pytest.raises(EndOfStream):
            source.read()
    red = frames[0]
    assert red[..., 0].mean() > 200 and red[..., 1].mean() < 50 and red[..., 2].mean() < 50  # RGB, not BGR
    for frame, colour in zip(frames, (RED, GREEN, BLUE, WHITE, BLACK), strict=True):
        assert_colour(frame, colour)
    assert source.frame_count == 5
    assert isinstance(source.capture_time, float) and abs(source.capture_time - time.time()) < 5


def test_video_loops(video_path):
    with VideoFileSource(video_path, loop=True, fps=0) as source:
        frames = [source.read().copy() for _ in range(12)]
    assert source.loops == 2
    for i, frame in enumerate(frames):
        assert_colour(frame, (RED, GREEN, BLUE, WHITE, BLACK)[i % 5])


def test_video_reuses_its_frame_buffer(video_path):
    with VideoFileSource(video_path, loop=False, fps=0) as source:
        assert source.read() is source.read()


def test_video_pacing(video_path):
    with VideoFileSource(video_path, loop=True, fps=50) as source:
        start = time.monotonic()
        for _ in range(10):
            source.read()
        paced = time.monotonic() - start
    with VideoFileSource(video_path, loop=True, fps=0) as source:
        start = time.monotonic()
        for _ in range(10):
            source.read()
        fast = time.monotonic() - start
    assert paced >= 0.17  # 10 frames at 50 fps: the tenth is due 9 * 20 ms after the first
    assert fast < 0.15


def test_video_plays_at_the_files_rate_by_default(video_path):
    source = create_source("video", path=str(video_path))
    assert source.requested_fps is None and source.loop is True
    with source:
        assert source.fps == pytest.approx(25.0)
    with VideoFileSource(video_path, loop=False, fps=-1) as source:  # ROS parameters cannot be null
        assert source.fps == pytest.approx(25.0)


def test_video_errors(tmp_path):
    with pytest.raises(CameraError, match="video file not found") as info:
        VideoFileSource(tmp_path / "missing.mp4", loop=False, fps=0).open()
    assert not info.value.retryable
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(CameraError, match="ffprobe"):
        VideoFileSource(junk, loop=False, fps=0).open()
    with pytest.raises(JetracerError, match="needs a path"):
        create_source("video")
    with pytest.raises(JetracerError, match="before open"):
        VideoFileSource(junk, loop=False, fps=0).read()


# --- folder --------------------------------------------------------------------------------------------------------

def write_folder(folder, names_colours):
    folder.mkdir(exist_ok=True)
    for name, colour in names_colours:
        assert cv2.imwrite(str(folder / name), solid(colour))
    return folder


def test_folder_plays_in_natural_order_and_skips_corrupt_files(tmp_path, caplog):
    folder = write_folder(tmp_path / "imgs", [("10.png", BLUE), ("2.jpg", GREEN), ("1.PNG", RED)])
    (folder / "5.jpeg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING), FolderSource(folder, loop=False, fps=0) as source:
        assert [p.name for p in source.files] == ["1.PNG", "2.jpg", "5.jpeg", "10.png"]
        frames = [source.read().copy() for _ in range(3)]
        with pytest.raises(EndOfStream):
            source.read()
    for frame, colour in zip(frames, (RED, GREEN, BLUE), strict=True):
        assert_colour(frame, colour, tol=10)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("5.jpeg" in w and "skipping" in w for w in warnings)


def test_folder_loops_and_warns_once_per_bad_file(tmp_path, caplog):
    folder = write_folder(tmp_path / "imgs", [("a.png", RED), ("b.png", GREEN)])
    (folder / "c.jpg").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING), FolderSource(folder, loop=True, fps=0) as source:
        frames = [source.read().copy() for _ in range(7)]
    for i, frame in enumerate(frames):
        assert_colour(frame, (RED, GREEN)[i % 2], tol=10)
    assert source.loops == 3
    assert sum("c.jpg" in r.getMessage() for r in caplog.records) == 1


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(CameraError, match=r"no images in .*empty.*\*\.jpg"):
        FolderSource(tmp_path / "empty", loop=True, fps=30).open()
    with pytest.raises(CameraError, match="image folder not found"):
        FolderSource(tmp_path / "missing", loop=True, fps=30).open()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"nope")
    with FolderSource(bad, loop=True, fps=0) as source, pytest.raises(CameraError, match="none of the 1 images"):
        source.read()
    with pytest.raises(JetracerError, match="fps"):
        FolderSource(bad, loop=True, fps=-1)


def test_folder_pacing(tmp_path):
    folder = write_folder(tmp_path / "imgs", [("a.png", RED)])
    with FolderSource(folder, loop=True, fps=100) as source:
        start = time.monotonic()
        for _ in range(6):
            source.read()
        assert time.monotonic() - start >= 0.045


# --- CSI (GStreamer) -----------------------------------------------------------------------------------------------

def test_csi_pipeline_string():
    pipeline = csi_pipeline(sensor_id=1, sensor_mode=4, capture_width=1280, capture_height=720, fps=60,
                            flip_method=2, output_width=224, output_height=224)
    parts = [p.strip() for p in pipeline.split("!")]
    assert parts[0] == "nvarguscamerasrc sensor-id=1 sensor-mode=4"
    assert parts[1].startswith("video/x-raw(memory:NVMM)")
    assert "width=(int)1280" in parts[1] and "height=(int)720" in parts[1]
    assert "framerate=(fraction)60/1" in parts[1] and "format=(string)NV12" in parts[1]
    assert parts[2] == "nvvidconv flip-method=2"
    assert "width=(int)224" in parts[3] and "height=(int)224" in parts[3] and "format=(string)BGRx" in parts[3]
    assert parts[4] == "videoconvert"
    assert "format=(string)BGR" in parts[5]
    assert parts[6] == "appsink drop=true max-buffers=1 sync=false"
    auto = csi_pipeline(0, -1, 1640, 1232, 30, 0, 224, 224)
    assert "sensor-mode" not in auto and auto.startswith("nvarguscamerasrc sensor-id=0 !")


@pytest.mark.parametrize("change, message", [
    ({"flip_method": 8}, "flip_method must be an integer 0-7"),
    ({"flip_method": -1}, "flip_method"),
    ({"capture_width": 0}, "capture_width must be a positive integer"),
    ({"output_height": -224}, "output_height"),
    ({"fps": 0}, "fps must be a positive integer"),
    ({"fps": 29.97}, "fps"),
    ({"sensor_id": -1}, "sensor_id"),
    ({"sensor_mode": -2}, "sensor_mode"),
])
def test_csi_pipeline_validation(change, message):
    args = dict(sensor_id=0, sensor_mode=-1, capture_width=1640, capture_height=1232, fps=30, flip_method=0,
                output_width=224, output_height=224)
    args.update(change)
    with pytest.raises(JetracerError, match=message):
        csi_pipeline(**args)
    with pytest.raises(JetracerError, match=message):
        create_source("csi", **change)


def run_with_timeout(fn, timeout_s=30.0):
    """Runs fn in a thread; fails the test instead of hanging. Returns the exception fn raised (or None)."""
    outcome = {}

    def target():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"did not return within {timeout_s} s"
    return outcome.get("error")


def test_csi_on_this_machine_fails_with_a_helpful_error():
    source = create_source("csi")
    error = run_with_timeout(source.open)
    source.close()
    assert isinstance(error, CameraError), error
    if not opencv_has_gstreamer():
        assert "without GStreamer" in str(error) and "getBuildInformation" in str(error)
        assert not error.retryable
    else:  # a machine with GStreamer but no Argus camera
        assert "nvargus-daemon" in str(error)


class FakeCapture:
    """Stands in for cv2.VideoCapture: ``frames`` BGR red frames, then grab() fails (camera gone)."""

    opened = True
    frames = 2
    open_delay_s = 0.0
    instances: list = []

    def __init__(self, target, api=None):
        time.sleep(self.open_delay_s)
        self.target, self.api = target, api
        self.left = self.frames
        self.props = {}
        self.released = False
        type(self).instances.append(self)

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.opened

    def grab(self):
        self.left -= 1
        return self.left >= 0

    def retrieve(self, image=None):
        if image is None:
            image = np.empty((6, 8, 3), dtype=np.uint8)
        image[:] = RED
        return True, image

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        return self.props.get(prop, 0.0)

    def release(self):
        self.released = True


@pytest.fixture
def fake_capture(monkeypatch):
    fake = type("Fake", (FakeCapture,), {"instances": []})
    monkeypatch.setattr(sources_module.cv2, "VideoCapture", fake)
    return fake


def test_csi_open_failure_says_what_to_check(monkeypatch, fake_capture):
    monkeypatch.setattr(sources_module, "opencv_has_gstreamer", lambda: True)
    fake_capture.opened = False
    source = create_source("csi", sensor_id=1)
    with pytest.raises(CameraError) as info:
        source.open()
    message = str(info.value)
    for hint in ("ribbon cable", "sensor-id=1", "nvargus-daemon", "gst-launch-1.0"):
        assert hint in message
    assert info.value.retryable
    capture = fake_capture.instances[0]
    assert capture.target == source.pipeline and capture.api == cv2.CAP_GSTREAMER and capture.released


def test_csi_open_that_hangs_times_out(monkeypatch, fake_capture):
    monkeypatch.setattr(sources_module, "opencv_has_gstreamer", lambda: True)
    fake_capture.open_delay_s = 0.5
    source = create_source("csi", open_timeout_s=0.05)
    start = time.monotonic()
    with pytest.raises(CameraError, match="did not finish within 0.05 s.*nvargus-daemon"):
        source.open()
    assert time.monotonic() - start < 0.4


def test_csi_reads_rgb_then_reports_a_lost_camera(monkeypatch, fake_capture):
    monkeypatch.setattr(sources_module, "opencv_has_gstreamer", lambda: True)
    with create_source("csi") as source:
        frame = source.read()
        assert frame.shape == (6, 8, 3) and tuple(frame[0, 0]) == (255, 0, 0)
        source.read()
        with pytest.raises(CameraError, match="stopped delivering frames.*nvargus-daemon"):
            source.read()


# --- V4L2 ----------------------------------------------------------------------------------------------------------

def test_v4l2_missing_device_gives_a_helpful_error():
    missing = "/dev/video97"
    assert not os.path.exists(missing)
    with pytest.raises(CameraError) as info:
        create_source("v4l2", device=missing).open()
    message = str(info.value)
    assert f"cannot open {missing}: no such device" in message
    assert "plugged in" in message and "ls /dev/video*" in message
    assert info.value.retryable  # a camera plugged in later is picked up by ReconnectingSource


def test_v4l2_device_that_does_not_capture(tmp_path, fake_capture):
    device = tmp_path / "video5"
    device.write_bytes(b"")
    fake_capture.opened = False
    with pytest.raises(CameraError, match="exists but does not capture.*another program"):
        V4l2Source(device=str(device), width=640, height=480, fps=30, fourcc="").open()
    assert fake_capture.instances[0].api == cv2.CAP_V4L2 and fake_capture.instances[0].released


def test_v4l2_requests_the_mode_and_reads_rgb(tmp_path, fake_capture):
    device = tmp_path / "cam"
    device.write_bytes(b"")
    with V4l2Source(device=str(device), width=320, height=240, fps=15, fourcc="mjpg") as source:
        capture = fake_capture.instances[0]
        assert capture.props[cv2.CAP_PROP_FRAME_WIDTH] == 320 and capture.props[cv2.CAP_PROP_FRAME_HEIGHT] == 240
        assert capture.props[cv2.CAP_PROP_FPS] == 15
        assert capture.props[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
        assert tuple(source.read()[0, 0]) == (255, 0, 0)
        source.read()
        with pytest.raises(CameraError, match="unplugged"):
            source.read()


def test_v4l2_by_id_links_open_by_index(tmp_path):
    link = tmp_path / "usb-Some_Camera-video-index0"
    link.symlink_to("/dev/video3")
    assert V4l2Source(device=str(link), width=0, height=0, fps=0, fourcc="")._target() == 3
    assert V4l2Source(device=2, width=0, height=0, fps=0, fourcc="").device == "/dev/video2"
    with pytest.raises(JetracerError, match="fourcc"):
        V4l2Source(device="/dev/video0", width=0, height=0, fps=0, fourcc="MJPEG")


# --- reconnecting --------------------------------------------------------------------------------------------------

class FlakySource(FrameSource):
    """Fails to open while ``world['down']`` > 0 (counting down), reads frames until ``world['lose_after']``."""

    kind = "flaky"

    def __init__(self, world):
        super().__init__()
        self.world = world
        self.frame = np.zeros((2, 2, 3), dtype=np.uint8)

    def open(self):
        self.world["opens"] += 1
        if self.world["down"] > 0:
            self.world["down"] -= 1
            raise CameraError("no such device")

    def read(self):
        if self.world.get("end"):
            raise EndOfStream("done")
        if self.world["lose_after"] == 0:
            raise CameraError("unplugged")
        self.world["lose_after"] -= 1
        self._stamp()
        return self.frame

    def close(self):
        self.world["closes"] += 1


def test_reconnecting_source_backs_off_and_comes_back(caplog):
    world = {"down": 7, "lose_after": 2, "opens": 0, "closes": 0}
    sleeps = []
    source = ReconnectingSource(lambda: FlakySource(world), sleep=sleeps.append)
    with caplog.at_level(logging.DEBUG, logger="jetracer_trt.camera.reconnect"):
        source.open()  # first attempt fails at once, without raising
        assert not source.connected and sleeps == []
        results = [source.read() for _ in range(6)]
        assert results == [None] * 6
        assert sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
        assert source.reconnects == 0 and source.failed_attempts == 7
        frame = source.read()  # the 8th attempt works
        assert frame is not None and source.connected and source.reconnects == 1
        assert source.capture_time is not None
        assert sleeps[-1] == 5.0
        assert source.read() is not None
        assert source.read() is None  # unplugged while running: None, no exception
        assert not source.connected
        world["lose_after"] = 5
        assert source.read() is not None
        assert sleeps[-1] == 0.5  # the backoff started over after frames came
        assert source.reconnects == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("retrying in" in w for w in warnings) == 6  # one per backoff step: 0.5, 1, 2, 4, 5 then quiet
    assert any("retrying every 5.0 s" in w for w in warnings)
    assert any("camera lost: unplugged" in w for w in warnings)
    source.close()
    assert world["closes"] == world["opens"]


def test_reconnecting_source_passes_end_of_stream_and_permanent_errors():
    world = {"down": 0, "lose_after": 5, "opens": 0, "closes": 0, "end": True}
    with ReconnectingSource(lambda: FlakySource(world), sleep=lambda s: None) as source:
        with pytest.raises(EndOfStream):
            source.read()

    def broken():
        raise CameraError("OpenCV lacks GStreamer", retryable=False)

    with pytest.raises(CameraError, match="lacks GStreamer"):
        ReconnectingSource(broken).open()
    with pytest.raises(JetracerError, match="backoff"):
        ReconnectingSource(broken, initial_backoff_s=2.0, max_backoff_s=1.0)


def test_reconnecting_a_missing_usb_camera_returns_none():
    sleeps = []
    source = ReconnectingSource(lambda: create_source("v4l2", device="/dev/video98"), sleep=sleeps.append)
    with source:
        assert source.read() is None and source.read() is None
    assert sleeps == [0.5, 1.0] and source.failed_attempts == 3


# --- transform, rate, pacing ---------------------------------------------------------------------------------------

def test_frame_transform_crop_and_resize():
    frame = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    crop = FrameTransform(crop=(10, 5, 40, 30))
    out = crop(frame)
    assert out.shape == (30, 40, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, frame[5:35, 10:50])
    assert crop(frame) is out  # the same buffer every frame
    both = FrameTransform(crop=[10, 5, 40, 30], resize=[20, 10])
    assert both(frame).shape == (10, 20, 3)
    assert FrameTransform(resize=(128, 96))(frame).shape == (96, 128, 3)
    identity = FrameTransform(crop=[], resize=None)
    assert not identity.enabled and identity(frame) is frame


def test_frame_transform_errors():
    frame = np.zeros((H, W, 3), dtype=np.uint8)
    with pytest.raises(JetracerError, match=r"does not fit in the 64x48 frame"):
        FrameTransform(crop=(40, 0, 30, 10))(frame)
    with pytest.raises(JetracerError, match="crop must be 4 integers"):
        FrameTransform(crop=(1, 2, 3))
    with pytest.raises(JetracerError, match="width, height > 0"):
        FrameTransform(crop=(0, 0, 0, 10))
    with pytest.raises(JetracerError, match="resize"):
        FrameTransform(resize=(0, 10))
    with pytest.raises(JetracerError, match="RGB uint8"):
        FrameTransform(resize=(8, 8))(np.zeros((H, W), dtype=np.uint8))


def test_rate_meter_with_an_injected_clock():
    now = [0.0]
    meter = RateMeter(window_s=2.0, clock=lambda: now[0])
    assert meter.fps == 0.0
    for i in range(31):  # 30 fps for one second
        now[0] = i / 30
        meter.tick()
    assert meter.fps == pytest.approx(30.0)
    for i in range(1, 41):  # then 10 fps for four seconds: the 2 s window forgets the 30 fps part
        now[0] = 1.0 + i / 10
        meter.tick()
    assert meter.fps == pytest.approx(10.0)
    assert meter.count == 71
    now[0] = 5.0 + 2.5  # frames stopped
    assert meter.fps == 0.0
    meter.tick(now=10.0)
    meter.tick(now=10.5)
    assert meter.rate(now=10.5) == pytest.approx(2.0)


def test_pacer_keeps_a_fixed_schedule():
    now = [0.0]
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        now[0] += s

    pacer = Pacer(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        pacer.wait()
        now[0] += 0.03  # work between frames
    assert sleeps == pytest.approx([0.07, 0.07])
    now[0] += 1.0  # a long stall: no burst of catch-up frames afterwards
    pacer.wait()
    pacer.wait()
    assert sleeps[-1] == pytest.approx(0.1)


# --- factory and config --------------------------------------------------------------------------------------------

def test_create_source_rejects_unknown_kinds_and_parameters():
    with pytest.raises(JetracerError, match="unknown camera source 'usb'.*csi, v4l2, video, folder"):
        create_source("usb")
    with pytest.raises(JetracerError, match="simulator"):
        create_source("sim")
    with pytest.raises(JetracerError, match="unknown parameter.*devcie.*device"):
        create_source("v4l2", devcie="/dev/video1")


def test_defaults_come_from_config_yaml():
    cfg = load_config("camera")
    v4l2 = create_source("v4l2")
    assert (v4l2.device, v4l2.width, v4l2.height, v4l2.fps, v4l2.fourcc) == (
        cfg["v4l2"]["device"], cfg["v4l2"]["width"], cfg["v4l2"]["height"], cfg["v4l2"]["fps"], cfg["v4l2"]["fourcc"])
    csi = create_source("csi")
    pipeline_args = {k: v for k, v in cfg["csi"].items() if k != "open_timeout_s"}
    assert csi.pipeline == csi_pipeline(**pipeline_args)
    assert csi.open_timeout_s == cfg["csi"]["open_timeout_s"]
    folder = create_source("folder", path="somewhere")
    assert (folder.loop, folder.fps) == (cfg["folder"]["loop"], cfg["folder"]["fps"])
    reconnecting = ReconnectingSource(lambda: v4l2)
    assert reconnecting.initial_backoff_s == cfg["reconnect"]["initial_backoff_s"]
    assert reconnecting.max_backoff_s == cfg["reconnect"]["max_backoff_s"]
    assert RateMeter().window_s == cfg["rate_window_s"]
    assert FrameTransform(**cfg["transform"]).enabled == bool(cfg["transform"]["crop"] or cfg["transform"]["resize"])
    assert cfg["source"] in ("csi", "v4l2", "video", "folder")
    assert isinstance(cfg["frame_id"], str) and cfg["frame_id"]


def test_every_camera_config_key_is_commented():
    lines = (share_dir() / "config" / "camera.yaml").read_text().splitlines()
    keys = [line for line in lines if re.match(r"\s*[a-z_0-9]+:", line)]
    assert keys
    uncommented = [line for line in keys if "#" not in line]
    assert not uncommented


# --- capture stamps ------------------------------------------------------------------------------------------------

class SlowDriverCapture(FakeCapture):
    """A grab() that blocks ``grab_s`` (waiting for the frame) and sets the buffer time as ``driver_ms()`` says."""

    grab_s = 0.05
    frames = 100

    @staticmethod
    def driver_ms():
        return (time.monotonic() - 0.04) * 1000  # the frame's buffer was filled 40 ms before grab() returned

    def grab(self):
        time.sleep(self.grab_s)
        self.props[cv2.CAP_PROP_POS_MSEC] = self.driver_ms()
        return super().grab()


@pytest.fixture
def slow_capture(monkeypatch):
    fake = type("Slow", (SlowDriverCapture,), {"instances": []})
    monkeypatch.setattr(sources_module.cv2, "VideoCapture", fake)
    return fake


def _timed_read(source):
    before = time.time()
    source.read()
    return before, time.time()


def test_v4l2_stamps_frames_with_the_driver_buffer_time(tmp_path, slow_capture):
    device = tmp_path / "cam"
    device.write_bytes(b"")
    with V4l2Source(device=str(device), width=0, height=0, fps=0, fourcc="") as source:
        assert source.stamp_origin == STAMP_DRIVER
        for _ in range(3):
            _, after = _timed_read(source)
            assert source.capture_time == pytest.approx(after - 0.04, abs=0.015)
        assert source.stamp_fallbacks == 0


@pytest.mark.parametrize("driver_ms", [
    lambda: 0.0,  # before the first frame
    lambda: (time.monotonic() + 5.0) * 1000,  # in the future: another clock
    lambda: (time.monotonic() - 30.0) * 1000,  # far too old for a frame just read
    lambda: float("nan"),
], ids=["zero", "future", "stale", "nan"])
def test_v4l2_falls_back_to_the_time_before_the_read_when_the_driver_time_is_implausible(
        tmp_path, slow_capture, caplog, driver_ms):
    slow_capture.driver_ms = staticmethod(driver_ms)
    device = tmp_path / "cam"
    device.write_bytes(b"")
    with caplog.at_level(logging.WARNING), V4l2Source(device=str(device), width=0, height=0, fps=0,
                                                      fourcc="") as source:
        for _ in range(2):
            before, _ = _timed_read(source)
            assert before <= source.capture_time <= before + 0.01  # not after the 50 ms the read blocked
    assert source.stamp_fallbacks == 2
    assert sum("driver's buffer time" in r.getMessage() for r in caplog.records) == 1


def test_driver_clock_on_monotonic_and_realtime_drivers():
    wall, mono = [1_700_000_000.0], [5000.0]
    clock = DriverClock("test", wall=lambda: wall[0], monotonic=lambda: mono[0])
    assert clock.stamp(4999.95, fallback=-1.0) == pytest.approx(wall[0] - 0.05)  # CLOCK_MONOTONIC
    assert clock.stamp(wall[0] - 0.02, fallback=-1.0) == pytest.approx(wall[0] - 0.02)  # uvcvideo clock=realtime
    assert clock.stamp(5000.0005, fallback=-1.0) == pytest.approx(wall[0])  # millisecond rounding
    assert clock.stamp(4998.9, fallback=-1.0) == -1.0  # 1.1 s old
    assert clock.stamp(5000.01, fallback=-1.0) == -1.0  # 10 ms in the future
    assert clock.fallbacks == 2


def test_csi_stamps_frames_before_the_read(monkeypatch, slow_capture):
    monkeypatch.setattr(sources_module, "opencv_has_gstreamer", lambda: True)
    with create_source("csi") as source:
        assert source.stamp_origin == STAMP_BEFORE_READ
        before, _ = _timed_read(source)
        assert before <= source.capture_time <= before + 0.01


def test_recordings_stamp_the_release_time_and_the_reconnecting_source_reports_its_sources(video_path):
    assert VideoFileSource.stamp_origin == FolderSource.stamp_origin == STAMP_RELEASE
    source = ReconnectingSource(lambda: VideoFileSource(video_path, loop=True, fps=0), sleep=lambda s: None)
    assert source.stamp_origin is None
    with source:
        source.read()
        assert source.stamp_origin == STAMP_RELEASE and source.stamp_fallbacks == 0


def test_the_reconnecting_source_counts_stamp_fallbacks_across_reconnections():
    world = {"down": 0, "lose_after": 2, "opens": 0, "closes": 0}

    class Counting(FlakySource):
        stamp_origin = STAMP_DRIVER

        def read(self):
            frame = super().read()
            self.stamp_fallbacks += 1
            return frame

    with ReconnectingSource(lambda: Counting(world), sleep=lambda s: None) as source:
        source.read(), source.read()
        assert source.read() is None  # lost: its 2 fallbacks must not be forgotten
        world["lose_after"] = 1
        source.read()
        assert source.stamp_fallbacks == 3 and source.stamp_origin == STAMP_DRIVER


# --- fatal errors: what retrying cannot fix ends the camera node ------------------------------------------------

def _fatal_factories(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    return {
        "missing video": (lambda: create_source("video", path=str(tmp_path / "missing.mp4")), "video file not found"),
        "empty folder": (lambda: create_source("folder", path=str(empty)), "no images in"),
        "unknown source": (lambda: create_source("usb"), "unknown camera source"),
    }


@pytest.mark.parametrize("case", ["missing video", "empty folder", "unknown source"])
def test_errors_retrying_cannot_fix_leave_the_reconnecting_source_at_once(tmp_path, case):
    factory, message = _fatal_factories(tmp_path)[case]
    sleeps = []
    with pytest.raises(JetracerError, match=message):
        ReconnectingSource(factory, sleep=sleeps.append).open()
    assert sleeps == []


def test_csi_without_gstreamer_is_fatal_and_a_missing_usb_camera_is_not(monkeypatch):
    monkeypatch.setattr(sources_module, "opencv_has_gstreamer", lambda: False)
    with pytest.raises(CameraError, match="without GStreamer") as info:
        ReconnectingSource(lambda: create_source("csi")).open()
    assert not info.value.retryable
    with ReconnectingSource(lambda: create_source("v4l2", device="/dev/video96"), sleep=lambda s: None) as source:
        assert source.read() is None and not source.connected  # still retrying, no exception


REPO = Path(__file__).resolve().parent.parent


def _run_camera_node(*params: str, timeout_s: float = 20.0):  # ~0.7 s when the machine is idle
    pytest.importorskip("rclpy")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               ROS_DOMAIN_ID=str(100 + os.getpid() % 100), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1")
    args = [sys.executable, "-m", "jetracer_trt.nodes.camera_node", "--ros-args"]
    for param in params:
        args += ["-p", param]
    try:
        done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the camera node was still running after {timeout_s:g} s: {exc.stdout!r} {exc.stderr!r}")
    return done.returncode, (done.stdout + done.stderr).splitlines()


@pytest.mark.parametrize("params, message, status", [
    (("source:=video", "source_path:=/missing.mp4"), "video file not found: /missing.mp4", 1),
    (("source:=folder", "source_path:={empty}"), "no images in", 1),
    (("source:=csi",), "without GStreamer", 1),
    (("source:=usb",), "unknown camera source 'usb'", 2),
], ids=["missing_video", "empty_folder", "csi_without_gstreamer", "unknown_source"])
def test_the_camera_node_exits_with_one_line_on_a_fatal_error(tmp_path, params, message, status):
    if "csi" in params[0] and opencv_has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    (tmp_path / "empty").mkdir()
    rc, lines = _run_camera_node(*(p.format(empty=tmp_path / "empty") for p in params))  # it used to idle forever
    assert rc == status, lines
    assert not any("Traceback" in line for line in lines), lines
    assert sum(message in line for line in lines) == 1, lines
