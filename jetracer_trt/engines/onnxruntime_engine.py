"""ONNX Runtime backend: CPU everywhere (FP32, or the INT8 model `jetracer-trt convert` writes); the CUDA and
TensorRT execution providers when the installed build has them. The model contract is read from the ONNX file's
``metadata_props`` (``contract.CONTRACT_KEY``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..contract import contract_from_record
from ..errors import JetracerError
from ..preprocess import Preprocessor
from .base import InferenceEngine


# the order ONNX Runtime tries them in; those the installed build lacks are skipped
DEFAULT_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
INT8_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QuantizeLinear"}


class OnnxRuntimeEngine(InferenceEngine):
    name = "onnxruntime"

    def __init__(self, model_path: str | os.PathLike, providers: Sequence[str] | None = None, threads: int = 0,
                 max_batch: int = 1, spin: bool = True):
        """``threads``: intra-op threads (0: one per core). ``spin``: let idle worker threads spin between frames;
        faster alone, but a spinning thread steals a core from the other processes of a graph on a small CPU."""
        super().__init__(max_batch)
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise JetracerError(f"model file not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        available = ort.get_available_providers()
        wanted = list(providers or DEFAULT_PROVIDERS)
        chosen = [p for p in wanted if p in available]
        if not chosen:
            raise JetracerError(f"none of the ONNX Runtime providers {wanted} is in this build (it has {available})")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types for a bad file
            raise JetracerError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
        self.providers = self.session.get_providers()
        self.device = "cuda" if self.providers[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider") else "cpu"
        meta = self.session.get_modelmeta().custom_metadata_map
        self.contract = contract_from_record(meta, path)
        self.precision = self._precision(path, meta)
        self._check_io(path)
        self.preprocess = Preprocessor(self.contract, max_batch=max_batch)
        self._output = np.empty((max_batch, len(self.contract.outputs)), dtype=np.float32)
        # one IO binding per batch size, made on first use: inputs and outputs stay in our preallocated buffers
        self._bindings: dict[int, object] = {}

    def _precision(self, path: Path, meta: dict[str, str]) -> str:
        if "precision" in meta:  # written by `jetracer-trt convert`
            return meta["precision"]
        import onnx

        ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
        return "int8" if ops & INT8_OPS else "fp32"

    def _check_io(self, path: Path) -> None:
        """Refuses a model that does not take (N, 3, H, W) and give (N, outputs) as its contract says: a clear
        message beats a shape crash."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        want_hw = (self.height, self.width)
        shape = list(inputs[0].shape) if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or shape[1] != 3 or tuple(shape[2:]) != want_hw:
            got = [list(i.shape) for i in inputs]
            raise JetracerError(f"model {path} takes inputs {got}, expected one input of shape "
                                f"[N, 3, {want_hw[0]}, {want_hw[1]}]")
        out_shape = list(outputs[0].shape) if len(outputs) == 1 else None
        names = self.contract.outputs
        if out_shape is None or len(out_shape) != 2 or out_shape[1] != len(names):
            got = [list(o.shape) for o in outputs]
            raise JetracerError(f"model {path} gives outputs {got}, expected one output of shape [N, {len(names)}] "
                                f"({', '.join(names)})")
        batch = shape[0]
        if isinstance(batch, int) and batch != self.max_batch and not (batch == 1 and self.max_batch == 1):
            raise JetracerError(f"model {path} has a fixed batch of {batch}; it cannot run batches of {self.max_batch}")

    def _binding(self, n: int):
        binding = self._bindings.get(n)
        if binding is None:
            binding = self.session.io_binding()
            inp, out = self.preprocess.output[:n], self._output[:n]
            binding.bind_input(self.session.get_inputs()[0].name, "cpu", 0, np.float32, list(inp.shape),
                               inp.ctypes.data)
            binding.bind_output(self.session.get_outputs()[0].name, "cpu", 0, np.float32, list(out.shape),
                                out.ctypes.data)
            self._bindings[n] = binding
        return binding

    def _execute(self, n: int) -> np.ndarray:
        self.session.run_with_iobinding(self._binding(n))
        return self._output[:n]
