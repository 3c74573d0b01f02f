"""The Jetson CSI camera's GStreamer pipeline (nvarguscamerasrc -> BGR appsink) and OpenCV's GStreamer check.

Only strings here: nothing imports GStreamer. ``CsiSource`` hands the string to ``cv2.VideoCapture(pipeline,
cv2.CAP_GSTREAMER)``, which needs an OpenCV built with GStreamer (JetPack's system OpenCV is; pip wheels are not).
"""
from __future__ import annotations

import functools
import re

from ..errors import JetracerError

# nvvidconv flip-method values, for log messages and errors
FLIP_METHODS = {
    0: "none",
    1: "counterclockwise 90",
    2: "rotate 180",
    3: "clockwise 90",
    4: "horizontal flip",
    5: "upper-right diagonal flip",
    6: "vertical flip",
    7: "upper-left diagonal flip",
}


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value <= 0:
        raise JetracerError(f"csi {name} must be a positive integer, got {value!r}")
    return int(value)


def csi_pipeline(
    sensor_id: int,
    sensor_mode: int,
    capture_width: int,
    capture_height: int,
    fps: int,
    flip_method: int,
    output_width: int,
    output_height: int,
) -> str:
    """The nvarguscamerasrc pipeline string for ``cv2.VideoCapture(..., cv2.CAP_GSTREAMER)``.

    The sensor delivers ``capture_width`` x ``capture_height`` NV12 frames at ``fps`` into NVMM memory; nvvidconv
    flips and scales them on the VIC to ``output_width`` x ``output_height`` BGRx; videoconvert drops the x; the
    appsink keeps only the newest frame (``drop=true max-buffers=1 sync=false``) so a slow reader never sees stale
    frames. ``sensor_mode`` -1 lets Argus pick the mode that fits the capture size and rate.
    """
    if isinstance(sensor_id, bool) or not isinstance(sensor_id, int) or sensor_id < 0:
        raise JetracerError(f"csi sensor_id must be an integer >= 0 (0 or 1 on most boards), got {sensor_id!r}")
    if isinstance(sensor_mode, bool) or not isinstance(sensor_mode, int) or sensor_mode < -1:
        raise JetracerError(f"csi sensor_mode must be an integer >= 0, or -1 to let Argus choose, got {sensor_mode!r}")
    if isinstance(flip_method, bool) or not isinstance(flip_method, int) or flip_method not in FLIP_METHODS:
        raise JetracerError(
            "csi flip_method must be an integer 0-7 (0 none, 2 rotate 180, 4 horizontal, 6 vertical), "
            f"got {flip_method!r}"
        )
    capture_width = _positive_int("capture_width", capture_width)
    capture_height = _positive_int("capture_height", capture_height)
    output_width = _positive_int("output_width", output_width)
    output_height = _positive_int("output_height", output_height)
    fps = _positive_int("fps", fps)
    mode = f" sensor-mode={sensor_mode}" if sensor_mode >= 0 else ""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id}{mode} ! "
        f"video/x-raw(memory:NVMM), width=(int){capture_width}, height=(int){capture_height}, "
        f"framerate=(fraction){fps}/1, format=(string)NV12 ! "
        f"nvvidconv flip-method={flip_method} ! "
        f"video/x-raw, width=(int){output_width}, height=(int){output_height}, format=(string)BGRx ! "
        f"videoconvert ! video/x-raw, format=(string)BGR ! "
        f"appsink drop=true max-buffers=1 sync=false"
    )


@functools.lru_cache(maxsize=1)
def opencv_has_gstreamer() -> bool:
    """True when the imported OpenCV was built with GStreamer (``cv2.getBuildInformation()`` says so)."""
    import cv2

    match = re.search(r"^\s*GStreamer:\s*(\S+)", cv2.getBuildInformation(), re.M)
    return bool(match) and match.group(1).upper().startswith("YES")
