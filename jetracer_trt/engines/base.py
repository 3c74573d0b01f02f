"""The one interface every inference backend implements; nodes, the simulator and the benchmark never know which
one runs.

An engine is built once: model loaded with its contract (``contract.py``: read from the model file), input and
output buffers preallocated for up to ``max_batch`` frames, and a warm-up run so that the first real frame is not
slow. Then every call goes through the same two steps:

1. staging: uint8 RGB frames -> the model's input, ready on the model's device, by the engine's ``preprocess``,
   built from the model's contract: ``preprocess.Preprocessor`` for CPU backends; for CUDA backends
   ``cuda_stage.CudaFrameStager``, which copies the uint8 frames into a pinned buffer, uploads them and normalizes
   them on the GPU with the same arithmetic. Every backend stages the same way, through ``preprocess.stage``.
2. ``_execute(n)``: the model on the first ``n`` staged inputs; returns the outputs as a host array
   (n, outputs) that the engine owns and overwrites on the next call. On a GPU this is where the one host
   synchronisation happens.

``infer(frame)`` is the per-frame (full) path, ``infer_batch(frames)`` the same for several frames, and
``run_model(n)`` the model-only path (step 2 alone) on whatever was staged last, for benchmarks: the same work on
every backend. None of them allocates per call.
"""
from __future__ import annotations

import abc
import time
from typing import Sequence

import numpy as np

from ..contract import ModelContract
from ..errors import JetracerError

PRECISIONS = ("fp32", "fp16", "int8")


class InferenceEngine(abc.ABC):
    """Load once, preallocate, then ``infer(frame)`` per frame (see the module docstring for the two steps)."""

    name = "base"  # the backend's name, as ``create_engine`` knows it

    def __init__(self, max_batch: int = 1) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise JetracerError(f"max_batch must be a positive integer, got {max_batch!r}")
        self.max_batch = max_batch
        self.contract: ModelContract | None = None  # the loaded model's (set by the backend when it loads it)
        self.preprocess = None   # a Preprocessor or CudaFrameStager of that contract (set by the backend)
        self.precision = "fp32"  # what the model computes in; backends set their own
        self.device = "cpu"      # where it runs, in words ("cpu", "cuda:0 NVIDIA H200", ...)
        self.last_model_ms = 0.0  # model-only time of the last call, for latency reports
        self.selection = ""      # with backend auto: what was picked and why (set by create_engine)
        self.model_path = None   # the file loaded (set by create_engine)

    @property
    def height(self) -> int:
        """The model's input height (its contract's)."""
        return self.contract.input_height

    @property
    def width(self) -> int:
        """The model's input width (its contract's)."""
        return self.contract.input_width

    # -- what a backend implements ------------------------------------------------------------------------------
    @abc.abstractmethod
    def _execute(self, n: int) -> np.ndarray:
        """Runs the model on the first ``n`` staged frames; returns the engine's (n, outputs) float32 host array."""

    # -- what everybody calls -----------------------------------------------------------------------------------
    def infer(self, frame: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) frame -> model outputs, here the road target (x, y) in [-1, 1].

        The result is a view of the engine's output buffer, overwritten by the next call: copy it to keep it.
        """
        self.preprocess.stage((frame,), 1)
        return self._timed_execute(1)[0]

    def infer_batch(self, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Up to ``max_batch`` frames (a list, or a uint8 (N, H, W, 3) array) -> (N, outputs), a reused buffer."""
        n = len(frames)
        if not 1 <= n <= self.max_batch:
            raise JetracerError(f"{self.name} engine was built for batches of 1 to {self.max_batch} frames, got {n}")
        self.preprocess.stage(frames, n)
        return self._timed_execute(n)

    def run_model(self, n: int = 1) -> np.ndarray:
        """The model alone on the frames staged by the last call (benchmarks time this against ``infer``)."""
        if not 1 <= n <= self.max_batch:
            raise JetracerError(f"{self.name} engine was built for batches of 1 to {self.max_batch} frames, got {n}")
        return self._timed_execute(n)

    def staged_input(self, n: int = 1) -> np.ndarray:
        """A float32 host copy of the first ``n`` model inputs the last call staged (for checks; it allocates)."""
        return self.preprocess.staged(n)

    def _timed_execute(self, n: int) -> np.ndarray:
        start = time.perf_counter()
        out = self._execute(n)
        self.last_model_ms = (time.perf_counter() - start) * 1e3
        return out

    def warmup(self, iterations: int = 3) -> None:
        """Runs dummy frames at every batch size the engine was built for, so no real frame pays for lazy
        allocations, kernel selection or CUDA graph capture."""
        frames = np.zeros((self.max_batch, self.height, self.width, 3), dtype=np.uint8)
        for n in sorted({1, self.max_batch}):
            for _ in range(iterations):
                self.infer_batch(frames[:n])

    def describe(self) -> str:
        """One line for logs: backend, precision, device and model file."""
        where = f" ({self.model_path.name})" if self.model_path else ""
        return f"{self.name} {self.precision} on {self.device}{where}"

    def close(self) -> None:  # noqa: B027 - optional hook, most backends free everything on garbage collection
        """Releases the backend's resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
