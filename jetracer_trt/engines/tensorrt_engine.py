"""TensorRT backend: a serialized plan (``.engine``) run through the TensorRT 10/11 Python API on its own CUDA stream.

Loading, in this order:

1. the sidecar (``<engine>.json``) is read and checked against this machine (GPU, TensorRT version), the engine
   file and, when given, the source model; any problem refuses the engine with the command that rebuilds it,
   before TensorRT is imported. The model contract is the sidecar's ``model_contract``;
2. the plan is deserialized and its named I/O tensors checked against the contract: one input ``[N, 3, H, W]``, and
   the outputs it names: one ``[N, outputs]`` (road following), or one ``[N, *shape]`` per output tensor, by name
   (a pose model's ``cmap`` and ``paf``);
3. buffers are preallocated once: the input (a ``CudaFrameStager`` of the engine's input dtype: the uint8 frames go
   to a pinned buffer, are uploaded and normalized on the GPU), and per output tensor a device buffer and a pinned
   host copy, each of that tensor's dtype (float32 or float16; float16 results are widened into float32 host
   buffers after the synchronisation).

Per batch size ``n`` (made on first use, which ``warmup`` does for 1 and ``max_batch``) there is one execution
context with its input shape and tensor addresses set once, and, with ``cuda_graphs``, a CUDA graph of
``execute_async_v3`` plus the device-to-host copy, captured after one regular run with the same shapes (as the
TensorRT docs ask, so that shape-dependent setup happens outside the capture). A call is then: stage (H2D copy and
normalisation enqueued on the stream), replay (or enqueue), one ``synchronize``. Each context owns its activation
memory: an engine used at many batch sizes holds one such block per size.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import contract_from_record
from ..errors import JetracerError
from . import sidecar as sidecars
from .base import InferenceEngine

log = logging.getLogger(__name__)


def import_tensorrt():
    """The ``tensorrt`` module; JetracerError saying how to install it when it is not importable."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise JetracerError(f"TensorRT's Python package is not importable ({exc}); "
                            f"{sidecars.TENSORRT_INSTALL_HINT}") from None
    return trt


class TensorRTEngine(InferenceEngine):
    name = "tensorrt"

    def __init__(self, model_path: str | os.PathLike, max_batch: int = 1, cuda_graphs: bool = True,
                 source: str | os.PathLike | None = None):
        """``model_path``: the ``.engine`` plan (its sidecar beside it). ``source``: the model the engine must have
        been built from (checked by hash; None: not checked). ``cuda_graphs``: replay one CUDA graph per batch
        size instead of enqueueing every layer from Python."""
        super().__init__(max_batch)
        path = Path(model_path)
        self.sidecar = sidecars.checked_sidecar(path, backend=self.name, max_batch=max_batch, source=source)
        self.contract = contract_from_record(self.sidecar, path)

        trt = import_tensorrt()
        import torch

        from .cuda_stage import CudaFrameStager

        self._trt, self._torch = trt, torch
        self.precision = str(self.sidecar["precision"])
        self.cuda_graphs = cuda_graphs
        device = torch.cuda.current_device()
        self.device = f"cuda:{device} {torch.cuda.get_device_name(device)}"
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise JetracerError(f"TensorRT could not deserialize {path} (see its log above); rebuild it with: "
                                f"{sidecars.rebuild_command(path, self.sidecar)}")
        self._input_name, self._output_names = self._check_io(path)

        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        in_dtype = dtypes[self._engine.get_tensor_dtype(self._input_name)]
        self._stream = torch.cuda.Stream()
        self.preprocess = CudaFrameStager(self.contract, max_batch, dtype=in_dtype, device="cuda", stream=self._stream)
        # per output tensor, by its engine name: (device buffer, pinned host copy), of the engine's dtype
        self._device_out, self._host_out = {}, {}
        results, self._widen = {}, []  # the float32 results the caller gets; (float16 host, float32 result) pairs
        for name, (engine_name, shape) in zip(self.output_shapes(), self._output_names.items(), strict=True):
            dtype = dtypes[self._engine.get_tensor_dtype(engine_name)]
            self._device_out[engine_name] = torch.empty(shape, dtype=dtype, device="cuda")
            host = self._host_out[engine_name] = torch.empty(shape, dtype=dtype, pin_memory=True)
            results[name] = host.numpy() if dtype == torch.float32 else np.empty(shape, dtype=np.float32)
            if dtype != torch.float32:
                self._widen.append((host.numpy(), results[name]))
        self.bind_outputs(results)
        self._runs: dict[int, tuple[Any, Any]] = {}  # batch size -> (execution context, CUDA graph or None)

    # -- loading ----------------------------------------------------------------------------------------------
    def _check_io(self, path: Path) -> tuple[str, dict[str, tuple[int, ...]]]:
        """(input name, {output name: shape for max_batch frames}, in the contract's order) after checking the
        engine takes [N, 3, H, W] and gives what the contract says: one [N, outputs] tensor (whatever it is named),
        or one [N, *shape] tensor per output, named as the output."""
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        shapes = {n: tuple(engine.get_tensor_shape(n)) for n in names}
        dtypes = {n: engine.get_tensor_dtype(n) for n in names}
        want_hw = (self.height, self.width)
        in_shape = shapes[inputs[0]] if len(inputs) == 1 else ()
        if len(in_shape) != 4 or in_shape[1] != 3 or in_shape[2:] != want_hw:
            got = {n: list(shapes[n]) for n in inputs}
            raise JetracerError(f"engine {path} takes inputs {got}, expected one input of shape "
                                f"[N, 3, {want_hw[0]}, {want_hw[1]}]")
        wanted = self.output_shapes()  # contract name -> (max_batch, *shape)
        if self.contract.tensor_outputs:
            engine_names = list(wanted)
            fits = set(outputs) == set(wanted) and all(shapes[n][1:] == wanted[n][1:] for n in wanted)
        else:
            engine_names = outputs[:1]
            fits = len(outputs) == 1 and shapes[outputs[0]][1:] == next(iter(wanted.values()))[1:]
        if not fits:
            got = {n: list(shapes[n]) for n in outputs}
            expected = ", ".join(f"{name} [N, {', '.join(map(str, shape[1:]))}]" for name, shape in wanted.items())
            raise JetracerError(f"engine {path} gives outputs {got}, expected {expected} "
                                f"({', '.join(self.contract.outputs)})")
        supported = (trt.DataType.FLOAT, trt.DataType.HALF)
        for name in (inputs[0], *engine_names):
            if dtypes[name] not in supported:
                raise JetracerError(f"engine {path} has {name} of type {dtypes[name]}; only float32 and float16 "
                                    "inputs and outputs are supported")
        max_shape = tuple(engine.get_tensor_profile_shape(inputs[0], 0)[2])
        if max_shape[0] < self.max_batch:
            raise JetracerError(f"engine {path} runs batches of up to {max_shape[0]}, {self.max_batch} were asked "
                                f"for; rebuild it with: {sidecars.rebuild_command(path, self.sidecar)}")
        return inputs[0], dict(zip(engine_names, wanted.values(), strict=True))

    def _run_for(self, n: int) -> tuple[Any, Any]:
        """The execution context (and CUDA graph) of batch size ``n``, made on first use."""
        run = self._runs.get(n)
        if run is None:
            run = self._runs[n] = self._make_run(n)
        return run

    def _make_run(self, n: int) -> tuple[Any, Any]:
        torch = self._torch
        context = self._engine.create_execution_context()
        if context is None:
            raise JetracerError("TensorRT could not create an execution context (out of GPU memory?)")
        ok = context.set_input_shape(self._input_name, (n, 3, self.height, self.width))
        ok = ok and context.set_tensor_address(self._input_name, self.preprocess.input.data_ptr())
        for name, buffer in self._device_out.items():
            ok = ok and context.set_tensor_address(name, buffer.data_ptr())
        if not ok:
            raise JetracerError(f"TensorRT refused the buffers of a batch of {n} (see its log above)")
        stream = self._stream
        with torch.cuda.stream(stream):
            self._enqueue(context, n)  # the regular run TensorRT wants before a capture with these shapes
        stream.synchronize()
        if not self.cuda_graphs:
            return context, None
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: only this thread's CUDA calls must be capture-safe, not those of other threads
            with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                self._enqueue(context, n)
        except (RuntimeError, JetracerError) as exc:  # an engine that cannot be captured still runs, graph-less
            log.warning("CUDA graph capture of the TensorRT engine failed (%s); enqueueing each call instead", exc)
            stream.synchronize()
            return context, None
        return context, graph

    def _enqueue(self, context, n: int) -> None:
        if not context.execute_async_v3(self._stream.cuda_stream):
            raise JetracerError("TensorRT could not enqueue the engine (see its log above)")
        for name, device_out in self._device_out.items():
            self._host_out[name][:n].copy_(device_out[:n], non_blocking=True)

    # -- per frame ----------------------------------------------------------------------------------------------
    def _execute(self, n: int) -> dict[str, np.ndarray]:
        context, graph = self._run_for(n)
        with self._torch.cuda.stream(self._stream):
            if graph is not None:
                graph.replay()
            else:
                self._enqueue(context, n)
        self._stream.synchronize()
        for half, result in self._widen:
            np.copyto(result[:n], half[:n])
        return self.output_views(n)

    # -- reports ------------------------------------------------------------------------------------------------
    def layer_report(self) -> list[str]:
        """One line per layer with the precision it runs in (needs an engine built with detailed profiling
        verbosity, as ``convert --verbose`` does), and a count per precision first."""
        inspector = self._engine.create_engine_inspector()
        return describe_layers(inspector.get_engine_information(self._trt.LayerInformationFormat.JSON))

    def close(self) -> None:
        self._runs.clear()


def describe_layers(engine_information: str) -> list[str]:
    """Lines for the user from the engine inspector's JSON: a count of layers per output precision, then
    ``name [type]: precision`` per layer. TensorRT 10 names an output's type in ``Format/Datatype`` (e.g.
    "Row major linear FP16 format"), TensorRT 11 in ``DataType`` (e.g. "Half"); both are read."""
    try:
        layers = json.loads(engine_information).get("Layers", [])
    except (json.JSONDecodeError, AttributeError):
        return ["the engine inspector gave no readable layer information"]
    lines, counts = [], Counter()
    for layer in layers:
        if not isinstance(layer, dict):  # built without detailed profiling verbosity: names only
            lines.append(f"{layer}: precision not recorded (build with --verbose)")
            continue
        precision = _layer_precision(layer)
        counts[precision] += 1
        lines.append(f"{layer.get('Name', '?')} [{layer.get('LayerType', '?')}]: {precision}")
    summary = ", ".join(f"{p} {c}" for p, c in counts.most_common())
    return [f"{len(layers)} layers; by output precision: {summary or 'not recorded'}"] + lines


# (precision, words that name it in the inspector's type strings), most specific first: "Float" is FP32 in TensorRT
# 11's DataType, "Row major linear FP16 format" is FP16 in TensorRT 10's Format/Datatype
_PRECISION_WORDS = (("INT8", ("INT8",)), ("FP8", ("FP8",)), ("BF16", ("BF16",)), ("FP16", ("FP16", "HALF")),
                    ("FP32", ("FP32", "FLOAT")), ("INT32", ("INT32",)), ("INT64", ("INT64",)), ("BOOL", ("BOOL",)))


def _layer_precision(layer: dict[str, Any]) -> str:
    """The precision(s) of a layer's outputs (its inputs when it lists no outputs), e.g. "FP16" or "INT8 + FP32"."""
    found = []
    for tensor in layer.get("Outputs") or layer.get("Inputs") or []:
        if not isinstance(tensor, dict):
            continue
        text = str(tensor.get("DataType") or tensor.get("Format/Datatype") or "").upper()
        precision = next((p for p, words in _PRECISION_WORDS if any(w in text for w in words)), None)
        if precision and precision not in found:
            found.append(precision)
    return " + ".join(found) if found else "unknown"
