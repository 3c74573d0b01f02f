"""Where a frame becomes a tensor: RGB uint8 (H, W, 3) -> normalized float32 NCHW, by the model's contract.

Everything here takes the ``ModelContract`` of the model at hand (``contract.py``): its input size, mean/std and
resize policy. ``resize`` is the one resize of a frame to a model's input size, used by every path below and by
training. ``Preprocessor`` is the per-frame path of every CPU inference backend: it owns its output buffer, so a
frame costs no allocation. ``normalization`` gives the arithmetic as a scale and a bias, one multiply-add per
element, shared by the GPU twin (``engines/cuda_stage.py``) and by ``normalize_batch_torch``, the training side.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .contract import ModelContract
from .errors import JetracerError

_INTERPOLATION = {"area": cv2.INTER_AREA}  # contract.RESIZE_POLICIES -> OpenCV


def resize(frame: np.ndarray, size: tuple[int, int], policy: str = "area", out: np.ndarray | None = None
           ) -> np.ndarray:
    """``frame`` at ``size`` (width, height): the frame itself when it has that size already, else resized by the
    resize ``policy`` of a model contract (into ``out`` when given, a uint8 (H, W, 3) array)."""
    check_frame(frame)
    if frame.shape[1] == size[0] and frame.shape[0] == size[1]:
        return frame
    return cv2.resize(frame, size, dst=out, interpolation=_INTERPOLATION[policy])


def normalization(contract: ModelContract) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias), each float32 of shape (3,): ``(x / 255 - mean) / std == x * scale + bias``."""
    mean = np.asarray(contract.mean, dtype=np.float32)
    std = np.asarray(contract.std, dtype=np.float32)
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


class Preprocessor:
    """Turns RGB uint8 frames into a (N, 3, H, W) float32 batch for a model of ``contract``, reusing the same
    buffers every call."""

    def __init__(self, contract: ModelContract, max_batch: int = 1):
        self.contract = contract
        self.width, self.height = contract.input_width, contract.input_height
        scale, bias = normalization(contract)
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
        contract = self.contract
        chw = resize(frame, contract.input_size, contract.resize, self._resized).transpose(2, 0, 1)
        out = self.output[index]
        np.multiply(chw, self._scale, out=out, casting="unsafe")
        np.add(out, self._bias, out=out)

    def stage(self, frames: Sequence[np.ndarray] | np.ndarray, n: int) -> None:
        """The first ``n`` frames into ``self.output[:n]``: an engine's staging step."""
        for i in range(n):
            self.write(frames[i], i)

    def staged(self, n: int) -> np.ndarray:
        """A copy of the first ``n`` staged inputs."""
        return self.output[:n].copy()

    def batch(self, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """A new (N, 3, H, W) float32 array of ``frames`` (calibration and checks; the per-frame path is
        ``write``)."""
        out = np.empty((len(frames), 3, self.height, self.width), dtype=np.float32)
        for i, frame in enumerate(frames):
            out[i] = self(frame)[0]
        return out


def check_frame(frame: np.ndarray) -> None:
    """Raises JetracerError unless ``frame`` is a non-empty RGB uint8 (H, W, 3) array."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise JetracerError(f"expected an RGB uint8 frame of shape (H, W, 3), got {desc}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise JetracerError("expected a non-empty frame")


def normalize_batch_torch(batch_uint8_nhwc, contract: ModelContract):
    """Training-side twin of ``Preprocessor``: a uint8 (N, H, W, 3) torch tensor of frames already at the input
    size -> normalized float32 NCHW, with the same ``x * scale + bias`` arithmetic, on the batch's device."""
    import torch

    scale, bias = (torch.from_numpy(v).to(batch_uint8_nhwc.device).view(1, 3, 1, 1) for v in normalization(contract))
    return batch_uint8_nhwc.permute(0, 3, 1, 2).float().mul_(scale).add_(bias)
