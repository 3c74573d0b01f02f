"""The GPU twin of ``preprocess.Preprocessor``: uint8 RGB frames -> a normalized (N, 3, H, W) tensor on the device,
by the model's contract.

Shared by the CUDA engines (torch, tensorrt, torch2trt) as their staging step (``stage``), in two parts:

* ``load(frames, n)`` -- host only: checks each frame and copies it (resized by ``preprocess.resize`` if it is not
  H x W) into a pinned uint8 (max_batch, H, W, 3) buffer. A quarter of the bytes of a float32 tensor cross the bus,
  and pinned memory lets the copy run asynchronously.
* ``upload(n)`` -- enqueued on the engine's stream: the uint8 frames are copied to the device, then normalized
  into ``input[:n]`` with the ``(scale, bias)`` of ``preprocess.normalization``: ``x * scale`` then ``+ bias``, both
  in float32 as the CPU path does, rounded once to ``dtype`` at the end. Every buffer is made here, once; ``upload``
  allocates nothing on a GPU.

``device="cpu"`` works too (no pinning, no stream), so that the arithmetic can be checked on a machine without a GPU.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..contract import ModelContract
from ..errors import JetracerError
from ..preprocess import normalization, resize


class CudaFrameStager:
    """Pinned uint8 host frames -> normalized ``input`` on ``device`` (see the module docstring for the two parts)."""

    def __init__(self, contract: ModelContract, max_batch: int, dtype: torch.dtype = torch.float16,
                 device: str | torch.device = "cuda", channels_last: bool = False, stream=None) -> None:
        """``stream``: the CUDA stream ``upload`` enqueues on (None: the current one)."""
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise JetracerError(f"max_batch must be a positive integer, got {max_batch!r}")
        self.contract = contract
        self.max_batch = max_batch
        self.height, self.width = contract.input_height, contract.input_width
        self.device = torch.device(device)
        self.dtype = dtype
        self.stream = stream
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        pinned = self.device.type == "cuda"  # page-locked memory lets the H2D copy run asynchronously
        self.host = torch.empty((max_batch, self.height, self.width, 3), dtype=torch.uint8, pin_memory=pinned)
        self._host_frames = self.host.numpy()  # a view of the same memory: frames are written with numpy/cv2
        self._frames = torch.empty((max_batch, self.height, self.width, 3), dtype=torch.uint8, device=self.device)
        self.input = torch.empty((max_batch, 3, self.height, self.width), dtype=dtype, device=self.device,
                                 memory_format=memory_format)
        # x * scale is computed in float32 like the CPU path; a float32 input takes it in place, another dtype
        # through this float32 scratch, so that the value is rounded to ``dtype`` once, after the bias is added
        self._scaled = self.input if dtype == torch.float32 else torch.empty_like(self.input, dtype=torch.float32)
        scale, bias = normalization(contract)
        self._scale = torch.from_numpy(scale).to(self.device).view(1, 3, 1, 1)
        self._bias = torch.from_numpy(bias).to(self.device).view(1, 3, 1, 1)

    def stage(self, frames: Sequence[np.ndarray] | np.ndarray, n: int) -> None:
        """An engine's staging step: ``load`` then ``upload`` (enqueued on the stream; nothing waits for it)."""
        self.load(frames, n)
        if self.stream is None:
            self.upload(n)
        else:
            with torch.cuda.stream(self.stream):
                self.upload(n)

    def load(self, frames: Sequence[np.ndarray] | np.ndarray, n: int) -> None:
        """Host side only: the first ``n`` RGB uint8 (H, W, 3) frames into the pinned buffer (others are resized)."""
        self._check_count(n)
        if len(frames) < n:
            raise JetracerError(f"asked to stage {n} frames, got {len(frames)}")
        for i in range(n):
            slot = self._host_frames[i]
            frame = resize(frames[i], self.contract.input_size, self.contract.resize, slot)  # straight into the slot
            if frame is not slot:
                np.copyto(slot, frame)

    def upload(self, n: int) -> torch.Tensor:
        """Enqueues on the current stream: the first ``n`` loaded frames to the device, normalized into
        ``input[:n]``, which it returns. Allocates nothing (on a GPU)."""
        self._check_count(n)
        frames = self._frames[:n]
        frames.copy_(self.host[:n], non_blocking=self.host.is_pinned())
        nchw = frames.permute(0, 3, 1, 2)  # a view: HWC -> CHW happens in the strided read of the multiply
        scaled, out = self._scaled[:n], self.input[:n]
        torch.mul(nchw, self._scale, out=scaled)
        torch.add(scaled, self._bias, out=out)
        return out

    def staged(self, n: int) -> np.ndarray:
        """A float32 host copy of the first ``n`` staged inputs, once the stream has finished them."""
        if self.stream is not None:
            self.stream.synchronize()
        return self.input[:n].float().cpu().numpy()

    def _check_count(self, n: int) -> None:
        if not 1 <= n <= self.max_batch:
            raise JetracerError(f"this stager holds 1 to {self.max_batch} frames, got {n}")
