"""sensor_msgs/Image <-> numpy with at most one copy each way, and no allocation per frame on the way out.

Only ``rgb8`` and ``bgr8`` are accepted (what cameras and the simulator publish); anything else, a wrong step, or a
short data buffer is a ``MalformedImage`` with the reason, which the inference node logs (throttled) and skips.
"""
from __future__ import annotations

import array

import cv2
import numpy as np

from ..errors import JetracerError

SUPPORTED_ENCODINGS = ("rgb8", "bgr8")


class MalformedImage(JetracerError):
    """An Image message that cannot be read as a colour frame."""


def image_to_rgb(msg, out: np.ndarray | None = None) -> np.ndarray:
    """An RGB uint8 (H, W, 3) view of ``msg`` (rgb8: no copy; bgr8: one conversion, into ``out`` when given)."""
    h, w, step, enc = int(msg.height), int(msg.width), int(msg.step), str(msg.encoding)
    if enc not in SUPPORTED_ENCODINGS:
        raise MalformedImage(f"unsupported encoding {enc!r} (expected one of {', '.join(SUPPORTED_ENCODINGS)})")
    if h <= 0 or w <= 0:
        raise MalformedImage(f"empty image ({w}x{h})")
    if step < w * 3:
        raise MalformedImage(f"step {step} is less than width*3 = {w * 3}")
    data = np.frombuffer(msg.data, dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    if data.size < step * h:
        raise MalformedImage(f"data holds {data.size} bytes, expected step*height = {step * h}")
    frame = data[: step * h].reshape(h, step)[:, : w * 3].reshape(h, w, 3)
    if enc == "rgb8":
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=out)


def rgb_to_image(frame: np.ndarray, msg) -> None:
    """Fills ``msg`` (a sensor_msgs/Image, reused by the publisher) with an RGB frame: one copy, into the
    message's own ``array('B')`` buffer, kept from frame to frame (the message takes an ``array`` as it is; bytes
    would be copied into a new one on every frame). Publishing serializes the message at once, so the buffer can
    be refilled for the next frame."""
    h, w = frame.shape[:2]
    msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = h, w, "rgb8", 0, w * 3
    data = msg.data
    if not isinstance(data, array.array) or len(data) != h * w * 3:
        data = array.array("B", bytes(h * w * 3))
    np.copyto(np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3), frame)
    msg.data = data
