"""Where a frame becomes a tensor: RGB uint8 (H, W, 3) -> normalized float32 NCHW, the only place this happens.

Mean, std and input size come from ``config/model.yaml``. ``Preprocessor`` is the per-frame path of every CPU
inference backend: it owns its output buffer, so a frame costs no allocation. ``normalization`` gives the same
arithmetic as a scale and a bias, for the GPU twin (``engines/cuda_stage.py``); ``normalize_batch_torch`` is the
same arithmetic for training batches already on a torch device.
"""
from __future__ import annotations

import cv2
import numpy as np

from .config import load_config
from .errors import JetracerError


def normalization(mean=None, std=None) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias), each float32 of shape (3,): ``(x / 255 - mean) / std == x * scale + bias``, one multiply-add
    per element (the per-channel constants of ``config/model.yaml`` unless given)."""
    cfg = load_config("model")
    mean = np.asarray(mean if mean is not None else cfg["mean"], dtype=np.float32)
    std = np.asarray(std if std is not None else cfg["std"], dtype=np.float32)
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


class Preprocessor:
    """Turns RGB uint8 frames into a (N, 3, H, W) float32 batch, reusing the same buffers every call."""

    def __init__(self, width: int | None = None, height: int | None = None, mean=None, std=None, max_batch: int = 1):
        cfg = load_config("model")
        self.width = int(width or cfg["input_width"])
        self.height = int(height or cfg["input_height"])
        scale, bias = normalization(mean, std)
        self._scale = scale.reshape(3, 1, 1)
        self._bias = bias.reshape(3, 1, 1)
        self._resized = np.empty((self.height, self.width, 3), dtype=np.uint8)
        self.output = np.empty((max_batch, 3, self.height, self.width), dtype=np.float32)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """One frame -> ``self.output[:1]`` (overwritten by the next call): copy it if you keep it."""
        self.write(frame, 0)
        return self.output[:1]

    def write(self, frame: np.ndarray, index: int) -> None:
        """Normalizes ``frame`` into slot ``index`` of ``self.output`` (resized first if it is not H x W)."""
        check_frame(frame)
        if frame.shape[0] != self.height or frame.shape[1] != self.width:
            cv2.resize(frame, (self.width, self.height), dst=self._resized, interpolation=cv2.INTER_AREA)
            frame = self._resized
        chw = frame.transpose(2, 0, 1)
        out = self.output[index]
        np.multiply(chw, self._scale, out=out, casting="unsafe")
        np.add(out, self._bias, out=out)


def check_frame(frame: np.ndarray) -> None:
    """Raises JetracerError unless ``frame`` is a non-empty RGB uint8 (H, W, 3) array."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise JetracerError(f"expected an RGB uint8 frame of shape (H, W, 3), got {desc}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise JetracerError("expected a non-empty frame")


def normalize_batch_torch(batch_uint8_nhwc, mean=None, std=None):
    """Training-side twin of ``Preprocessor``: a uint8 (N, H, W, 3) torch tensor -> normalized float32 NCHW.

    Runs on whatever device the batch is on; the result is channels_last in memory, which convolutions prefer.
    """
    import torch

    cfg = load_config("model")
    mean_t = torch.tensor(mean if mean is not None else cfg["mean"], device=batch_uint8_nhwc.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std if std is not None else cfg["std"], device=batch_uint8_nhwc.device).view(1, 3, 1, 1)
    x = batch_uint8_nhwc.permute(0, 3, 1, 2).float().div_(255.0)
    return x.sub_(mean_t).div_(std_t)
