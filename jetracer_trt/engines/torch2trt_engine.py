"""torch2trt backend: a saved ``TRTModule`` state dict (``.trt.pth``) called like a PyTorch module, the way the
torch2trt project itself runs converted models.

The sidecar is checked exactly as for ``tensorrt`` (GPU, TensorRT version, file, source checkpoint) before anything
is imported, and gives the model contract. Frames are staged by ``CudaFrameStager`` into a float32 input (torch2trt
keeps the dtype of the example input it was converted with), the module runs on this engine's own CUDA stream,
its outputs (one tensor for road following; for a pose model one per output name, ``cmap`` and ``paf``, matched by
the module's ``output_names``) are copied into pinned host buffers, and the host waits once. ``TRTModule.forward``
sets the input shape and allocates its output tensors on every call (from PyTorch's caching allocator, so no
cudaMalloc after the first call); the ``tensorrt`` backend, which preallocates everything and can replay CUDA graphs,
is the one to use when that matters.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..contract import contract_from_record
from ..errors import JetracerError
from . import sidecar as sidecars
from .base import InferenceEngine

TORCH2TRT_INSTALL_HINT = (
    "it is not on PyPI and installs from source: git clone https://github.com/NVIDIA-AI-IOT/torch2trt && "
    "cd torch2trt && python3 setup.py install (on a Jetson, with JetPack's TensorRT and PyTorch); or use the "
    "tensorrt backend, which needs only TensorRT"
)


def import_torch2trt():
    """The ``torch2trt`` module; JetracerError saying how to install it when it is not importable."""
    try:
        import torch2trt
    except ImportError as exc:
        raise JetracerError(f"torch2trt is not importable ({exc}); {TORCH2TRT_INSTALL_HINT}") from None
    except AttributeError as exc:  # it subclasses trt.IInt8Calibrator, which TensorRT 11 removed
        raise JetracerError(f"torch2trt does not work with the TensorRT installed here ({exc}): it needs TensorRT "
                            "10 or older; use the tensorrt backend") from None
    return torch2trt


class Torch2TRTEngine(InferenceEngine):
    name = "torch2trt"

    def __init__(self, model_path: str | os.PathLike, max_batch: int = 1, source: str | os.PathLike | None = None):
        """``model_path``: a ``TRTModule`` state dict saved by ``jetracer-trt convert --via torch2trt`` (its sidecar
        beside it). ``source``: the checkpoint it must have been converted from (checked by hash; None: not
        checked)."""
        super().__init__(max_batch)
        path = Path(model_path)
        self.sidecar = sidecars.checked_sidecar(path, backend=self.name, max_batch=max_batch, source=source)
        self.contract = contract_from_record(self.sidecar, path)
        torch2trt = import_torch2trt()
        import torch

        from .cuda_stage import CudaFrameStager

        self._torch = torch
        self.precision = str(self.sidecar["precision"])
        device = torch.cuda.current_device()
        self.device = f"cuda:{device} {torch.cuda.get_device_name(device)}"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickle/zip errors of a damaged file come in many types
            raise JetracerError(f"{path} is not a readable torch2trt state dict ({str(exc).splitlines()[0]})") from None
        self._module = torch2trt.TRTModule()
        self._module.load_state_dict(state)
        if getattr(self._module, "engine", None) is None:
            raise JetracerError(f"TensorRT could not deserialize the engine in {path} (see its log above); rebuild "
                                f"it with: {sidecars.rebuild_command(path, self.sidecar)}")
        self._output_order = self._check_io(path)
        self._stream = torch.cuda.Stream()
        self.preprocess = CudaFrameStager(self.contract, max_batch, dtype=torch.float32, device="cuda",
                                          stream=self._stream)
        self._host_out = [torch.empty(shape, dtype=torch.float32, pin_memory=True)
                          for shape in self.output_shapes().values()]
        self.bind_outputs({name: host.numpy() for name, host in zip(self.output_shapes(), self._host_out,
                                                                      strict=True)})

    def _check_io(self, path: Path) -> list[int]:
        """Per output tensor of the contract, the index of the module's output that holds it: a column model's one
        output whatever its name, a tensor model's outputs by name."""
        inputs, outputs = list(self._module.input_names), list(self._module.output_names)
        wanted = list(self.contract.output_tensors)
        fits = len(inputs) == 1 and (sorted(outputs) == sorted(wanted) if self.contract.tensor_outputs
                                     else len(outputs) == 1)
        if not fits:
            raise JetracerError(f"{path} has inputs {inputs} and outputs {outputs}; expected one input "
                                f"({self.contract.input_name}) and the outputs {', '.join(wanted)}")
        return [outputs.index(name) for name in wanted] if self.contract.tensor_outputs else [0]

    def _execute(self, n: int) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.cuda.stream(self._stream):  # TRTModule enqueues on the current stream
            out = self._module(self.preprocess.input[:n])
            out = (out,) if isinstance(out, torch.Tensor) else tuple(out)
            for index, host, shape in zip(self._output_order, self._host_out, self.output_shapes().values(),
                                          strict=True):
                result = out[index]
                if tuple(result.shape) != (n, *shape[1:]):
                    raise JetracerError(f"the torch2trt module gave an output of shape {tuple(result.shape)} for a "
                                        f"batch of {n}, expected {(n, *shape[1:])}")
                host[:n].copy_(result, non_blocking=True)
        self._stream.synchronize()
        return self.output_views(n)
