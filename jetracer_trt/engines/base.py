"""The one interface every inference backend implements; nodes, the simulator and the benchmark never know which
one runs.

An engine is built once: model loaded with its contract (``contract.py``: read from the model file), input and
output buffers preallocated for up to ``max_batch`` frames, and a warm-up run so that the first real frame is not
slow. Then every call goes through the same two steps:

1. staging: uint8 RGB frames -> the model's input, ready on the model's device, by the engine's ``preprocess``,
   built from the model's contract: ``preprocess.Preprocessor`` for CPU backends; for CUDA backends
   ``cuda_stage.CudaFrameStager``, which copies the uint8 frames into a pinned buffer, uploads them and normalizes
   them on the GPU with the same arithmetic. Every backend stages the same way, through ``preprocess.stage``.
2. ``_execute(n)``: the model on the first ``n`` staged inputs; returns its output tensors as host float32 arrays
   by name (``contract.output_tensors``), each ``(n, *shape)``: views of buffers the engine made once
   (``host_outputs``) and overwrites on the next call. On a GPU this is where the one host synchronisation happens.

A model's contract gives its outputs in one of two shapes (``contract.py``), and the public calls follow it:

* columns (road following): ``infer(frame)`` -> ``(outputs,)``, ``infer_batch(frames)`` -> ``(N, outputs)``;
* tensors (pose): ``infer_tensors(frame)`` -> ``{name: per-frame array}`` (``cmap`` (18, 56, 56), ``paf``
  (42, 56, 56)), ``infer_batch_tensors(frames)`` -> ``{name: (N, ...)}``. These two take column models too (their
  one tensor by its ``output_name``); ``infer`` and ``infer_batch`` refuse a tensor model, naming the call to use.

``run_model(n)`` is the model-only path (step 2 alone) on whatever was staged last, for benchmarks: the same work on
every backend. None of them allocates per call: every result is a view of the engine's buffers (copy to keep it).
"""
from __future__ import annotations

import abc
import time
from typing import Mapping, Sequence

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
        self._views: dict[int, dict[str, np.ndarray]] = {}  # batch size -> {name: buffer[:n]}, made once per size
        self._frame_views: dict[str, np.ndarray] | None = None  # {name: buffer[0]}: infer_tensors' result

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
    def _execute(self, n: int) -> Mapping[str, np.ndarray]:
        """Runs the model on the first ``n`` staged frames; returns ``output_views(n)`` of the buffers it filled."""

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per output tensor name (``contract.output_tensors``), its shape for ``max_batch`` frames."""
        return {name: (self.max_batch, *self.contract.output_shape(name)) for name in self.contract.output_tensors}

    def host_outputs(self) -> dict[str, np.ndarray]:
        """New float32 host buffers, one per output tensor (``output_shapes``): what a CPU backend's model writes
        into and ``output_views`` slices. Made once, when the engine is built."""
        return {name: np.empty(shape, dtype=np.float32) for name, shape in self.output_shapes().items()}

    def bind_outputs(self, buffers: Mapping[str, np.ndarray]) -> None:
        """Sets the host buffers ``_execute`` results are views of (one per output tensor, ``output_shapes``)."""
        wanted = self.output_shapes()
        got = {name: tuple(buffer.shape) for name, buffer in buffers.items()}
        if got != wanted or any(buffer.dtype != np.float32 for buffer in buffers.values()):
            raise JetracerError(f"{self.name} engine: output buffers {got} are not float32 {wanted}")
        self._outputs = dict(buffers)
        self._views.clear()
        self._frame_views = {name: buffer[0] for name, buffer in self._outputs.items()}

    def output_views(self, n: int) -> dict[str, np.ndarray]:
        """``{name: buffer[:n]}`` of the bound host buffers; the same dict for the same ``n`` (no per-call
        allocation)."""
        views = self._views.get(n)
        if views is None:
            views = self._views[n] = {name: buffer[:n] for name, buffer in self._outputs.items()}
        return views

    # -- what everybody calls -----------------------------------------------------------------------------------
    def infer(self, frame: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) frame -> model outputs, here the road target (x, y) in [-1, 1].

        The result is a view of the engine's output buffer, overwritten by the next call: copy it to keep it.
        """
        column = self._column_tensor("infer", "infer_tensors")
        self.preprocess.stage((frame,), 1)
        return self._timed_execute(1)[column][0]

    def infer_batch(self, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Up to ``max_batch`` frames (a list, or a uint8 (N, H, W, 3) array) -> (N, outputs), a reused buffer."""
        column = self._column_tensor("infer_batch", "infer_batch_tensors")
        return self._stage_and_run(frames)[column]

    def infer_tensors(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        """RGB uint8 (H, W, 3) frame -> ``{output tensor name: its array for this frame}`` (a pose model's
        ``cmap`` (C, H', W') and ``paf``): views of the engine's buffers, overwritten by the next call."""
        self.preprocess.stage((frame,), 1)
        self._timed_execute(1)
        return self._frame_views

    def infer_batch_tensors(self, frames: Sequence[np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Up to ``max_batch`` frames -> ``{output tensor name: (N, ...) array}``, views of reused buffers."""
        return self._stage_and_run(frames)

    def run_model(self, n: int = 1) -> np.ndarray | dict[str, np.ndarray]:
        """The model alone on the frames staged by the last call (benchmarks time this against ``infer``): what
        ``infer_batch`` gives for a column model, ``infer_batch_tensors`` for a tensor one."""
        self._check_batch(n)
        outputs = self._timed_execute(n)
        return outputs if self.contract.tensor_outputs else outputs[self.contract.output_name]

    def staged_input(self, n: int = 1) -> np.ndarray:
        """A float32 host copy of the first ``n`` model inputs the last call staged (for checks; it allocates)."""
        return self.preprocess.staged(n)

    def _stage_and_run(self, frames: Sequence[np.ndarray] | np.ndarray) -> Mapping[str, np.ndarray]:
        n = len(frames)
        self._check_batch(n)
        self.preprocess.stage(frames, n)
        return self._timed_execute(n)

    def _check_batch(self, n: int) -> None:
        if not 1 <= n <= self.max_batch:
            raise JetracerError(f"{self.name} engine was built for batches of 1 to {self.max_batch} frames, got {n}")

    def _column_tensor(self, call: str, tensor_call: str) -> str:
        """The one output tensor of a column model; JetracerError naming ``tensor_call`` for a tensor model."""
        contract = self.contract
        if contract.tensor_outputs:
            raise JetracerError(f"{call} gives the columns of a model's one output, and this {contract.task} model "
                                f"has {len(contract.outputs)} output tensors ({', '.join(contract.outputs)}): use "
                                f"{tensor_call}")
        return contract.output_name

    def _timed_execute(self, n: int) -> Mapping[str, np.ndarray]:
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
                self._stage_and_run(frames[:n])

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
