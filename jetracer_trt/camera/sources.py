"""The camera sources: a Jetson CSI camera, a USB (V4L2) camera, and their replay twins, a video file and a folder
of images. ``create_source(kind, **params)`` builds one with the defaults of config/camera.yaml.

Every source returns RGB uint8 frames and follows ``FrameSource``'s life cycle. Live sources (csi, v4l2) block in
``read()`` until the next frame; recordings (video, folder) are paced to play in real time unless ``fps`` is 0.
The ``sim`` kind is not here: the simulator node publishes those frames itself.

Capture stamps (``stamp_origin``): v4l2 uses the V4L2 buffer timestamp (the driver's CLOCK_MONOTONIC time of the
frame, OpenCV's ``CAP_PROP_POS_MSEC``), guarded by ``DriverClock``; csi stamps before the read, as OpenCV's
GStreamer backend exposes no buffer time on a known clock (its ``CAP_PROP_POS_MSEC`` is a position query relative to
the stream start, which OpenCV itself calls unreliable); recordings stamp the moment a paced frame is due.
"""
from __future__ import annotations

import glob
import logging
import math
import os
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from ..config import load_config
from ..errors import JetracerError
from .base import STAMP_BEFORE_READ, STAMP_DRIVER, STAMP_RELEASE, CameraError, EndOfStream, FrameSource, RgbConverter
from .gstreamer import FLIP_METHODS, csi_pipeline, opencv_has_gstreamer
from .timing import DriverClock, Pacer

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _check_fps(kind: str, fps, allow_none: bool = False) -> float | None:
    if fps is None and allow_none:
        return None
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps):
        raise JetracerError(f"{kind} fps must be a number, got {fps!r}")
    if fps < 0:
        if allow_none:  # ROS parameters cannot be null: a negative value means "the file's own rate" too
            return None
        raise JetracerError(f"{kind} fps must be >= 0 (0 = as fast as possible), got {fps!r}")
    return float(fps)


def _check_size(kind: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
        raise JetracerError(f"{kind} {name} must be an integer >= 0, got {value!r}")
    return int(value)


def _release(capture) -> None:
    if capture is not None:
        capture.release()


class CsiSource(FrameSource):
    """A Jetson CSI camera (IMX219 on the JetRacer) through nvarguscamerasrc; see ``csi_pipeline``.

    Needs an OpenCV with GStreamer (JetPack's system OpenCV). Opening runs in a helper thread and gives up after
    ``open_timeout_s`` seconds (0 = wait forever), because a wedged nvargus-daemon can block it indefinitely.
    Frames are stamped just before the read: the stamp leaves out the sensor-to-appsink delay (Argus ISP and
    nvvidconv, tens of ms) and, when the appsink already holds a frame, the time it waited there (up to a frame).
    """

    kind = "csi"
    stamp_origin = STAMP_BEFORE_READ

    def __init__(self, *, sensor_id: int, sensor_mode: int, capture_width: int, capture_height: int, fps: int,
                 flip_method: int, output_width: int, output_height: int, open_timeout_s: float):
        super().__init__()
        self.pipeline = csi_pipeline(sensor_id, sensor_mode, capture_width, capture_height, fps, flip_method,
                                     output_width, output_height)
        if isinstance(open_timeout_s, bool) or not isinstance(open_timeout_s, (int, float)) or open_timeout_s < 0:
            raise JetracerError(f"csi open_timeout_s must be >= 0 seconds (0 = no limit), got {open_timeout_s!r}")
        self.sensor_id = sensor_id
        self.sensor_mode = sensor_mode
        self.capture_size = (int(capture_width), int(capture_height))
        self.output_size = (int(output_width), int(output_height))
        self.fps = int(fps)
        self.flip_method = flip_method
        self.open_timeout_s = float(open_timeout_s)
        self._capture = None
        self._rgb = RgbConverter()

    def describe(self) -> str:
        (cw, ch), (ow, oh) = self.capture_size, self.output_size
        return (f"csi sensor-id={self.sensor_id} {cw}x{ch}@{self.fps} -> {ow}x{oh}"
                f" (flip: {FLIP_METHODS[self.flip_method]})")

    def _checks(self) -> str:
        return (
            f"check that the camera's ribbon cable is seated firmly (both ends, contacts the right way round), that "
            f"sensor-id={self.sensor_id} is the connector it is on (0 or 1 on two-camera boards), that no other "
            f"program holds the camera, and that nvargus-daemon runs (`sudo systemctl restart nvargus-daemon`, "
            f"errors in `journalctl -u nvargus-daemon`); try `gst-launch-1.0 nvarguscamerasrc "
            f"sensor-id={self.sensor_id} num-buffers=30 ! fakesink`"
        )

    def open(self) -> None:
        self.close()
        if not opencv_has_gstreamer():
            raise CameraError(
                f"cannot open the CSI camera: this OpenCV ({cv2.__version__}, {os.path.dirname(cv2.__file__)}) "
                "was built without GStreamer ('GStreamer: NO' in cv2.getBuildInformation()); pip's opencv-python "
                "wheels never have it. On a Jetson use JetPack's system OpenCV: `pip uninstall opencv-python "
                "opencv-python-headless` in this environment, made with `python3 -m venv --system-site-packages`, "
                "until `python3 -c \"import cv2; print(cv2.getBuildInformation())\"` shows 'GStreamer: YES'",
                retryable=False,
            )
        capture = self._open_capture()
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"cannot open the CSI camera ({self.describe()}): {self._checks()}")
        self._capture = capture
        log.info("opened %s", self.describe())

    def _open_capture(self):
        def open_pipeline():
            return cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER)

        if self.open_timeout_s == 0:
            return open_pipeline()
        result: dict = {}

        def target():
            try:
                result["capture"] = open_pipeline()
            except Exception as exc:  # noqa: BLE001 - handed to the caller below
                result["error"] = exc

        thread = threading.Thread(target=target, name="csi-camera-open", daemon=True)
        thread.start()
        thread.join(self.open_timeout_s)
        if thread.is_alive():
            # the thread cannot be stopped; if it ever finishes, release what it opened
            threading.Thread(target=lambda: (thread.join(), _release(result.get("capture"))), daemon=True).start()
            raise CameraError(
                f"opening the CSI camera ({self.describe()}) did not finish within {self.open_timeout_s:g} s: "
                f"nvargus-daemon is probably stuck; {self._checks()}"
            )
        if "error" in result:
            raise CameraError(f"cannot open the CSI camera ({self.describe()}): {result['error']}; {self._checks()}")
        return result["capture"]

    def read(self) -> np.ndarray | None:
        if self._capture is None:
            raise self._not_open()
        before_read = time.time()
        if not self._capture.grab():
            raise CameraError(f"the CSI camera ({self.describe()}) stopped delivering frames: {self._checks()}")
        self.capture_time = before_read
        frame = self._rgb.retrieve(self._capture)
        if frame is None:
            raise CameraError(f"the CSI camera ({self.describe()}) delivered an empty frame: {self._checks()}")
        return frame

    def close(self) -> None:
        _release(self._capture)
        self._capture = None


class V4l2Source(FrameSource):
    """A USB camera through V4L2, by device path (``/dev/video0``, or a stable ``/dev/v4l/by-id/...`` link).

    ``width``, ``height`` and ``fps`` are requested from the driver (0 = the driver's default); the driver may pick
    the nearest mode it supports, which is logged. ``fourcc`` (e.g. ``MJPG``) selects the pixel format; many USB
    cameras reach 30 fps at 640x480 and above only in MJPG. An empty ``fourcc`` keeps the driver's default.
    Frames are stamped with the driver's buffer time (uvcvideo: when the frame's first USB packet arrived), on the
    monotonic clock, moved to the wall clock; when that time is implausible (``DriverClock``) with the time before
    the read.
    """

    kind = "v4l2"
    stamp_origin = STAMP_DRIVER

    def __init__(self, *, device: str | int, width: int, height: int, fps: float, fourcc: str):
        super().__init__()
        if isinstance(device, int) and not isinstance(device, bool):
            device = f"/dev/video{device}"
        if not isinstance(device, str) or not device:
            raise JetracerError(f"v4l2 device must be a device path such as /dev/video0, got {device!r}")
        if not isinstance(fourcc, str) or len(fourcc) not in (0, 4):
            raise JetracerError(f"v4l2 fourcc must be 4 characters (e.g. MJPG, YUYV) or empty, got {fourcc!r}")
        self.device = device
        self.width = _check_size("v4l2", "width", width)
        self.height = _check_size("v4l2", "height", height)
        self.fps = _check_fps("v4l2", fps)
        self.fourcc = fourcc.upper()
        self._capture = None
        self._rgb = RgbConverter()
        self._driver_clock = DriverClock(f"v4l2 {device}")

    def describe(self) -> str:
        size = f"{self.width}x{self.height}" if self.width and self.height else "default size"
        rate = f"{self.fps:g} fps" if self.fps else "default rate"
        return f"v4l2 {self.device} ({size}, {rate})"

    def _target(self):
        """What cv2.VideoCapture gets: the device's index when the path resolves to /dev/videoN (every OpenCV
        version opens V4L2 devices by index; some do not by name), else the path itself."""
        match = re.fullmatch(r"/dev/video(\d+)", os.path.realpath(self.device))
        return int(match.group(1)) if match else self.device

    def open(self) -> None:
        self.close()
        device = self.device
        if not os.path.exists(device):
            present = sorted(glob.glob("/dev/video*"))
            seen = f"this machine has {', '.join(present)}" if present else "this machine has no /dev/video* at all"
            raise CameraError(
                f"cannot open {device}: no such device — is the USB camera plugged in? `ls /dev/video*` lists the "
                f"cameras ({seen}; `v4l2-ctl --list-devices` tells them apart)"
            )
        if not os.access(device, os.R_OK | os.W_OK):
            raise CameraError(
                f"cannot open {device}: permission denied — add your user to the video group "
                "(`sudo usermod -aG video $USER`, then log in again)",
                retryable=False,
            )
        capture = cv2.VideoCapture(self._target(), cv2.CAP_V4L2)
        if not capture.isOpened():
            capture.release()
            raise CameraError(
                f"cannot open {device} with V4L2: the device exists but does not capture — is another program using "
                f"it (`fuser {device}`)? Is it a video capture node (`v4l2-ctl -d {device} --all`; a USB camera "
                "often shows up as two nodes, only the first captures)? Unplugging and replugging it may help"
            )
        if self.fourcc:
            capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        if self.width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            capture.set(cv2.CAP_PROP_FPS, self.fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver's queue short: the newest frame wins
        self._capture = capture
        got = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
               capture.get(cv2.CAP_PROP_FPS))
        log.info("opened %s: the driver delivers %dx%d at %g fps", self.describe(), *got)
        if (self.width and got[0] != self.width) or (self.height and got[1] != self.height) or (
                self.fps and got[2] and abs(got[2] - self.fps) > 0.5):
            log.warning("%s: asked for %dx%d at %g fps, the camera chose %dx%d at %g fps (`v4l2-ctl -d %s "
                        "--list-formats-ext` lists its modes)", device, self.width, self.height, self.fps or 0,
                        *got, device)

    def read(self) -> np.ndarray | None:
        if self._capture is None:
            raise self._not_open()
        before_read = time.time()
        if not self._capture.grab():
            raise CameraError(
                f"{self.device} stopped delivering frames — was the USB camera unplugged? (`ls /dev/video*`, "
                "`dmesg | tail`)"
            )
        # OpenCV's V4L2 backend: the dequeued buffer's timestamp in ms (CLOCK_MONOTONIC for uvcvideo and most
        # drivers), 0 before the first frame
        driver_s = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        self.capture_time = self._driver_clock.stamp(driver_s, fallback=before_read)
        self.stamp_fallbacks = self._driver_clock.fallbacks
        frame = self._rgb.retrieve(self._capture)
        if frame is None:
            raise CameraError(f"{self.device} delivered a frame OpenCV could not decode (try another fourcc)")
        return frame

    def close(self) -> None:
        _release(self._capture)
        self._capture = None


class VideoFileSource(FrameSource):
    """A video file played back as a camera (the replay twin of the live sources).

    ``fps`` None (or negative) plays at the file's own frame rate, 0 as fast as possible, any other value at that
    rate. ``loop`` restarts at the end; without it ``read()`` raises ``EndOfStream`` after the last frame.
    Frames are stamped when they are due (after decoding and pacing), as a camera would have delivered them.
    """

    kind = "video"
    stamp_origin = STAMP_RELEASE

    def __init__(self, path: str | os.PathLike, *, loop: bool, fps: float | None):
        super().__init__()
        if not path:
            raise JetracerError("the video source needs a path: the video file to play")
        self.path = Path(path)
        self.loop = bool(loop)
        self.requested_fps = _check_fps("video", fps, allow_none=True)
        self.fps: float | None = None  # the pacing rate, known after open()
        self.frame_count = 0  # as the file's header says (may be approximate)
        self.loops = 0  # completed passes through the file
        self._capture = None
        self._pacer: Pacer | None = None
        self._frames_this_pass = 0
        self._rgb = RgbConverter()

    def describe(self) -> str:
        rate = {None: "file rate", 0.0: "full speed"}.get(self.requested_fps, f"{self.requested_fps} fps")
        return f"video {self.path} ({rate}{', looping' if self.loop else ''})"

    def _open_capture(self):
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise CameraError(
                f"cannot read video {self.path}: not a format this OpenCV can decode (check it with `ffprobe "
                f"{self.path}`; mp4 (H.264 or mp4v), avi (MJPG) and mkv usually work)",
                retryable=False,
            )
        return capture

    def open(self) -> None:
        self.close()
        if not self.path.is_file():
            raise CameraError(f"video file not found: {self.path}", retryable=False)
        self._capture = self._open_capture()
        self.frame_count = max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        fps = self.requested_fps
        if fps is None:
            fps = self._capture.get(cv2.CAP_PROP_FPS)
            if not math.isfinite(fps) or not 0 < fps <= 1000:
                log.warning("%s does not say its frame rate; playing it at 30 fps (set fps to choose)", self.path)
                fps = 30.0
        self.fps = float(fps)
        self._pacer = Pacer(self.fps)
        self._frames_this_pass = 0
        log.info("opened %s: %d frames, playing at %s", self.describe(), self.frame_count,
                 f"{self.fps:g} fps" if self.fps else "full speed")

    def read(self) -> np.ndarray | None:
        if self._capture is None:
            raise self._not_open()
        if not self._capture.grab():
            if self._frames_this_pass == 0:
                raise CameraError(f"video {self.path} has no frames this OpenCV can decode", retryable=False)
            if not self.loop:
                raise EndOfStream(f"end of video {self.path}")
            self._rewind()
        self._frames_this_pass += 1
        frame = self._rgb.retrieve(self._capture)
        if frame is None:
            raise CameraError(f"cannot decode frame {self._frames_this_pass} of {self.path}", retryable=False)
        self._pacer.wait()
        self._stamp()
        return frame

    def _rewind(self) -> None:
        self.loops += 1
        self._frames_this_pass = 0
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        if self._capture.grab():
            return
        self._capture.release()  # some containers cannot seek: start again from scratch
        self._capture = self._open_capture()
        if not self._capture.grab():
            raise CameraError(f"cannot restart video {self.path} from its first frame", retryable=False)

    def close(self) -> None:
        _release(self._capture)
        self._capture = None


def _natural_key(path: Path):
    """frame_2.jpg before frame_10.jpg."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class FolderSource(FrameSource):
    """The images of a folder (*.jpg, *.jpeg, *.png, in natural name order) played as a camera at ``fps``.

    ``fps`` 0 plays as fast as possible. Files that do not decode are skipped with a warning (once each);
    ``loop`` starts over after the last image, otherwise ``read()`` raises ``EndOfStream``. Frames are stamped
    when they are due.
    """

    kind = "folder"
    stamp_origin = STAMP_RELEASE

    def __init__(self, path: str | os.PathLike, *, loop: bool, fps: float):
        super().__init__()
        if not path:
            raise JetracerError("the folder source needs a path: the folder of images to play")
        self.path = Path(path)
        self.loop = bool(loop)
        self.fps = _check_fps("folder", fps)
        self.files: list[Path] = []
        self.loops = 0
        self._index = 0
        self._bad: set[Path] = set()
        self._pacer: Pacer | None = None
        self._rgb = RgbConverter()

    def describe(self) -> str:
        return f"folder {self.path} ({self.fps:g} fps{', looping' if self.loop else ''})"

    def open(self) -> None:
        if not self.path.is_dir():
            raise CameraError(f"image folder not found: {self.path}", retryable=False)
        self.files = sorted((p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                            key=_natural_key)
        if not self.files:
            raise CameraError(
                f"no images in {self.path}: the folder source plays *.jpg, *.jpeg and *.png files", retryable=False
            )
        self._index = 0
        self._bad = set()
        self._pacer = Pacer(self.fps)
        log.info("opened %s: %d images", self.describe(), len(self.files))

    def read(self) -> np.ndarray | None:
        if self._pacer is None:
            raise self._not_open()
        while True:
            if self._index >= len(self.files):
                if not self.loop:
                    raise EndOfStream(f"end of the images in {self.path}")
                self._index = 0
                self.loops += 1
            path = self.files[self._index]
            self._index += 1
            if path in self._bad:
                continue
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                self._bad.add(path)
                log.warning("skipping %s: not an image OpenCV can decode", path)
                if len(self._bad) == len(self.files):
                    raise CameraError(f"none of the {len(self.files)} images in {self.path} can be decoded",
                                      retryable=False)
                continue
            frame = self._rgb.convert(bgr)
            self._pacer.wait()
            self._stamp()
            return frame

    def close(self) -> None:
        self._pacer = None


SOURCES: dict[str, type[FrameSource]] = {
    "csi": CsiSource,
    "v4l2": V4l2Source,
    "video": VideoFileSource,
    "folder": FolderSource,
}


def create_source(kind: str, **params) -> FrameSource:
    """A source of ``kind`` (csi, v4l2, video, folder) with config/camera.yaml's ``<kind>`` section as defaults.

    ``params`` override single defaults, e.g. ``create_source("v4l2", device="/dev/video1")``; the source is not
    opened yet.
    """
    if kind == "sim":
        raise JetracerError(
            "camera source 'sim' has no frame source here: the simulator node renders and publishes those frames; "
            "launch the simulator instead of the camera node"
        )
    if kind not in SOURCES:
        raise JetracerError(
            f"unknown camera source {kind!r}: choose one of {', '.join(SOURCES)} (or sim, from the simulator node)"
        )
    settings = load_config("camera")[kind]
    unknown = sorted(set(params) - set(settings))
    if unknown:
        raise JetracerError(
            f"unknown parameter(s) {', '.join(unknown)} for camera source {kind!r}; it takes {', '.join(settings)}"
        )
    settings.update(params)
    return SOURCES[kind](**settings)
