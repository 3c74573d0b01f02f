"""ONNX Runtime backend: CPU everywhere, the CUDA execution provider when the installed build has it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import JetracerError
from .base import InferenceEngine


class OnnxRuntimeEngine(InferenceEngine):
    name = "onnxruntime"

    def __init__(self, model_path: str | os.PathLike, providers: list[str] | None = None, threads: int = 0):
        super().__init__()
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise JetracerError(f"model file not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        providers = [p for p in (providers or ["CUDAExecutionProvider", "CPUExecutionProvider"]) if p in available]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types for a bad file
            raise JetracerError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
        self.providers = self.session.get_providers()
        self._check_io(path)
        self._input_name = self.session.get_inputs()[0].name
        self._output_name = self.session.get_outputs()[0].name
        self._feed = {self._input_name: self.preprocess.output}

    def _check_io(self, path: Path) -> None:
        """Refuses a model that does not take (N, 3, H, W) and give (N, 2): a clear message beats a shape crash."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        want_hw = (self.preprocess.height, self.preprocess.width)
        shape = list(inputs[0].shape) if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or shape[1] != 3 or tuple(shape[2:]) != want_hw:
            got = [list(i.shape) for i in inputs]
            raise JetracerError(f"model {path} takes inputs {got}, expected one input of shape [N, 3, {want_hw[0]}, {want_hw[1]}]")
        out_shape = list(outputs[0].shape) if len(outputs) == 1 else None
        if out_shape is None or len(out_shape) != 2 or out_shape[1] != 2:
            got = [list(o.shape) for o in outputs]
            raise JetracerError(f"model {path} gives outputs {got}, expected one output of shape [N, 2] (x, y)")

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        # the feed dict holds the preprocessor's buffer itself: no per-frame dict or copy
        return self.session.run([self._output_name], self._feed)[0][0]
