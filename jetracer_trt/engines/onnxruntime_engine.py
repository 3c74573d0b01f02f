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
        self.bind_outputs(self.host_outputs())
        # one IO binding per batch size, made on first use: inputs and outputs stay in our preallocated buffers
        self._bindings: dict[int, object] = {}

    def _precision(self, path: Path, meta: dict[str, str]) -> str:
        if "precision" in meta:  # written by `jetracer-trt convert`
            return meta["precision"]
        try:
            import onnx
        except ImportError:  # a runtime-only install (ROS 2, rosdep): onnx is a training/conversion dependency
            # every model `convert` writes says its precision; an exported model without the entry is FP32
            return "fp32"
        ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
        return "int8" if ops & INT8_OPS else "fp32"

    def _check_io(self, path: Path) -> None:
        """Refuses a model that does not take (N, 3, H, W) and give what its contract says: one (N, outputs)
        tensor, or one tensor (N, *shape) per output named as the output. A clear message beats a shape crash."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        want_hw = (self.height, self.width)
        shape = list(inputs[0].shape) if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or shape[1] != 3 or tuple(shape[2:]) != want_hw:
            got = [list(i.shape) for i in inputs]
            raise JetracerError(f"model {path} takes inputs {got}, expected one input of shape "
                                f"[N, 3, {want_hw[0]}, {want_hw[1]}]")
        got = {o.name: list(o.shape) for o in outputs}
        wanted = {name: self.contract.output_shape(name) for name in self.contract.output_tensors}
        if self.contract.tensor_outputs:
            fits = set(got) == set(wanted) and all(_fits(got[name], dims) for name, dims in wanted.items())
            if not fits:
                expected = ", ".join(f"{name} [N, {', '.join(map(str, dims))}]" for name, dims in wanted.items())
                raise JetracerError(f"model {path} gives outputs {got}, expected {len(wanted)} outputs: {expected}")
            self._output_names = list(wanted)
        else:
            names = self.contract.outputs
            out_shape = list(outputs[0].shape) if len(outputs) == 1 else None
            if out_shape is None or len(out_shape) != 2 or out_shape[1] != len(names):
                raise JetracerError(f"model {path} gives outputs {list(got.values())}, expected one output of shape "
                                    f"[N, {len(names)}] ({', '.join(names)})")
            self._output_names = [outputs[0].name]  # a column model's one output, whatever the file calls it
        batch = shape[0]
        if isinstance(batch, int) and batch != self.max_batch and not (batch == 1 and self.max_batch == 1):
            raise JetracerError(f"model {path} has a fixed batch of {batch}; it cannot run batches of {self.max_batch}")

    def _binding(self, n: int):
        binding = self._bindings.get(n)
        if binding is None:
            binding = self.session.io_binding()
            inp = self.preprocess.output[:n]
            binding.bind_input(self.session.get_inputs()[0].name, "cpu", 0, np.float32, list(inp.shape),
                               inp.ctypes.data)
            for file_name, out in zip(self._output_names, self.output_views(n).values(), strict=True):
                binding.bind_output(file_name, "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
            self._bindings[n] = binding
        return binding

    def _execute(self, n: int) -> dict[str, np.ndarray]:
        self.session.run_with_iobinding(self._binding(n))
        return self.output_views(n)


def _fits(shape: Sequence, dims: Sequence[int]) -> bool:
    """True when an ONNX output shape (its batch and any dimension may be symbolic) is [N, *dims]."""
    return len(shape) == len(dims) + 1 and all(not isinstance(got, int) or got == want
                                               for got, want in zip(shape[1:], dims, strict=True))
