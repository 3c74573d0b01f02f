"""The one interface every inference backend implements; nodes and the simulator never know which one runs."""
from __future__ import annotations

import abc
import time

import numpy as np

from ..preprocess import Preprocessor


class InferenceEngine(abc.ABC):
    """Load once, preallocate, then ``infer(frame)`` per frame.

    Subclasses implement ``_run(tensor)`` on the preprocessed (1, 3, H, W) float32 input and return the model's
    output row. ``infer`` adds the shared preprocessing, so every backend sees exactly the same tensor.
    """

    name = "base"

    def __init__(self) -> None:
        self.preprocess = Preprocessor()
        self.last_model_ms = 0.0  # model-only time of the last infer(), for latency reports

    @abc.abstractmethod
    def _run(self, tensor: np.ndarray) -> np.ndarray:
        """Runs the model on a preprocessed batch; returns a float32 array of shape (outputs,)."""

    def infer(self, frame: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) frame -> model outputs, here the road target (x, y) in [-1, 1]."""
        tensor = self.preprocess(frame)
        start = time.perf_counter()
        out = self._run(tensor)
        self.last_model_ms = (time.perf_counter() - start) * 1e3
        return out

    def warmup(self, iterations: int = 3) -> None:
        """Runs a few dummy frames so the first real frame is not slow (lazy allocations, kernel selection)."""
        frame = np.zeros((self.preprocess.height, self.preprocess.width, 3), dtype=np.uint8)
        for _ in range(iterations):
            self.infer(frame)

    def close(self) -> None:  # noqa: B027 - optional hook, most backends free everything on garbage collection
        """Releases the backend's resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
