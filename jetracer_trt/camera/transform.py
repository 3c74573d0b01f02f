"""Optional crop and resize of camera frames on their way out, into a buffer allocated once."""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import JetracerError
from ..preprocess import check_frame


def _int_tuple(name: str, value, length: int, what: str) -> tuple[int, ...] | None:
    """None or an empty sequence (ROS parameters cannot be null) mean "off"."""
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        return None
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) != length or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
        raise JetracerError(f"{name} must be {length} integers {what}, got {value!r}")
    return tuple(int(v) for v in items)


class FrameTransform:
    """Crops ``(x, y, w, h)`` (pixels, origin top left) and then resizes to ``(w, h)``; either may be None.

    ``transform(frame)`` returns its own output buffer, overwritten by the next call (copy it to keep it); with
    neither crop nor resize it returns the frame itself. Resizing uses INTER_AREA when shrinking, INTER_LINEAR when
    enlarging. The crop is checked against each new frame size, with a clear error when it does not fit.
    """

    def __init__(self, crop=None, resize=None):
        self.crop = _int_tuple("crop", crop, 4, "(x, y, width, height)")
        self.resize = _int_tuple("resize", resize, 2, "(width, height)")
        if self.crop is not None and (min(self.crop[:2]) < 0 or min(self.crop[2:]) <= 0):
            raise JetracerError(f"crop (x, y, width, height) needs x, y >= 0 and width, height > 0, got {self.crop}")
        if self.resize is not None and min(self.resize) <= 0:
            raise JetracerError(f"resize (width, height) must be positive, got {self.resize}")
        self._checked_shape: tuple[int, int] | None = None
        self._out: np.ndarray | None = None
        self._interpolation = cv2.INTER_AREA

    @property
    def enabled(self) -> bool:
        return self.crop is not None or self.resize is not None

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the output for an input of ``width`` x ``height``."""
        if self.resize is not None:
            return self.resize
        if self.crop is not None:
            return self.crop[2], self.crop[3]
        return width, height

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return frame
        if frame.shape[:2] != self._checked_shape:
            self._prepare(frame)
        view = frame
        if self.crop is not None:
            x, y, w, h = self.crop
            view = frame[y:y + h, x:x + w]
        if self.resize is not None:
            cv2.resize(view, self.resize, dst=self._out, interpolation=self._interpolation)
        else:
            np.copyto(self._out, view)
        return self._out

    def _prepare(self, frame: np.ndarray) -> None:
        check_frame(frame)
        height, width = frame.shape[:2]
        in_w, in_h = width, height
        if self.crop is not None:
            x, y, w, h = self.crop
            if x + w > width or y + h > height:
                raise JetracerError(
                    f"crop (x={x}, y={y}, width={w}, height={h}) does not fit in the {width}x{height} frame: "
                    f"it needs x + width <= {width} and y + height <= {height}"
                )
            in_w, in_h = w, h
        out_w, out_h = self.output_size(width, height)
        self._interpolation = cv2.INTER_AREA if out_w * out_h <= in_w * in_h else cv2.INTER_LINEAR
        if self._out is None or self._out.shape[:2] != (out_h, out_w):
            self._out = np.empty((out_h, out_w, 3), dtype=np.uint8)
        self._checked_shape = (height, width)
