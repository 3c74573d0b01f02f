"""What every camera source is: ``open()``, ``read()``, ``close()``, and the two ways a read can end.

A source hands out RGB uint8 (H, W, 3) frames, like everything else in jetracer_trt. Sources own their frame
buffers: the array ``read()`` returns is overwritten by the next ``read()``, so copy it to keep it.
"""
from __future__ import annotations

import abc
import time

import cv2
import numpy as np

from ..errors import JetracerError


class CameraError(JetracerError):
    """The camera cannot be opened or stopped delivering frames; the message says what to check.

    ``retryable`` is False when waiting cannot help (OpenCV lacks GStreamer, a video file is missing, a folder holds
    no images): ``ReconnectingSource`` retries the others and raises these at once. So the classification of camera
    failures lives here, with the sources that know them: a JetracerError that leaves ``ReconnectingSource`` (one of
    these, or a bad setting) is fatal, and a camera node ends on it.
    """

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


class EndOfStream(Exception):
    """A non-looping video or image folder has no more frames."""


# How a source's ``capture_time`` is taken (its ``stamp_origin``), from the most exact to the least:
STAMP_DRIVER = "driver buffer time"  # the time the driver put on the frame's buffer, moved to the wall clock
STAMP_BEFORE_READ = "before read"  # time.time() just before the blocking read: later than the real capture
STAMP_RELEASE = "release time"  # a recording: the moment its paced frame is due (no real capture happened)


class FrameSource(abc.ABC):
    """One camera, file or folder with a small life cycle: ``open()``, ``read()`` per frame, ``close()``.

    ``read()`` returns an RGB uint8 (H, W, 3) frame (reused by the next call), or None when no frame is available
    right now; it raises ``EndOfStream`` when a non-looping recording is exhausted and ``CameraError`` when the
    device fails. ``capture_time`` is the wall-clock time (``time.time()``, seconds) at which the last returned frame
    was captured: what a ROS node stamps the image with. ``stamp_origin`` says how that time is taken (one of the
    ``STAMP_*`` strings above) and ``stamp_fallbacks`` counts frames whose driver time was unusable and that were
    stamped before the read instead. Use a source as a context manager to close it on errors.
    """

    kind = "base"
    stamp_origin = STAMP_BEFORE_READ
    stamp_fallbacks = 0

    def __init__(self) -> None:
        self.capture_time: float | None = None

    @abc.abstractmethod
    def open(self) -> None:
        """Acquires the device or file; raises CameraError with what to check when it cannot."""

    @abc.abstractmethod
    def read(self) -> np.ndarray | None:
        """The next RGB uint8 frame, None when none is available right now."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the device or file; safe to call twice or without open()."""

    def describe(self) -> str:
        """A short human-readable name for logs, e.g. ``v4l2 /dev/video0 640x480@30``."""
        return self.kind

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _not_open(self) -> JetracerError:
        return JetracerError(f"{self.describe()}: read() called before open() (or after close())")

    def _stamp(self) -> None:
        self.capture_time = time.time()


class RgbConverter:
    """OpenCV's BGR (or grey, BGRA) images -> the package's RGB uint8, into buffers reused from frame to frame."""

    _CODES = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}

    def __init__(self) -> None:
        self.bgr: np.ndarray | None = None  # where VideoCapture.retrieve writes; reallocated only on a size change
        self.rgb: np.ndarray | None = None

    def retrieve(self, capture) -> np.ndarray | None:
        """``capture.retrieve()`` of the frame grabbed last, converted; None when it has none."""
        ok, bgr = capture.retrieve(self.bgr)
        if not ok or bgr is None or bgr.size == 0:
            return None
        self.bgr = bgr
        return self.convert(bgr)

    def convert(self, image: np.ndarray) -> np.ndarray:
        channels = 1 if image.ndim == 2 else image.shape[2]
        if image.dtype != np.uint8 or channels not in self._CODES:
            raise CameraError(f"unexpected frame format from OpenCV: {image.dtype} {image.shape}", retryable=False)
        height, width = image.shape[:2]
        if self.rgb is None or self.rgb.shape[:2] != (height, width):
            self.rgb = np.empty((height, width, 3), dtype=np.uint8)
        cv2.cvtColor(image, self._CODES[channels], dst=self.rgb)
        return self.rgb
