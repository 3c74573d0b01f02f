"""``jetracer-trt convert --backend tensorrt --via torch2trt``: checkpoint -> ``TRTModule``, with NVIDIA's torch2trt.

``torch2trt(model, [x], fp16_mode=..., int8_mode=..., int8_calib_dataset=..., max_batch_size=...)`` converts the
PyTorch model layer by layer while it runs on an example frame; the result is saved as the ``TRTModule``'s state dict
(the serialized engine plus its I/O names) with a sidecar. The pipeline (``pipeline.py``) verifies it like every
conversion: the module, loaded back through ``Torch2TRTEngine`` from its temporary file, against PyTorch eager FP32
on real frames.

INT8 uses torch2trt's implicit calibrator (``int8_calib_dataset``), which TensorRT 11 removed, as it removed the FP16
builder flag behind ``fp16_mode``: this route needs TensorRT 10 or older (JetPack 6 ships 10.3); the plain tensorrt
route works with both. INT8 also sets ``fp16_mode`` so that layers without an INT8 kernel run in FP16, not FP32.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import ModelContract
from ..engines.base import PRECISIONS
from ..engines.torch2trt_engine import import_torch2trt
from ..errors import JetracerError
from .calibration import FrameSplit
from .pipeline import Build, ConvertRequest, Route

log = logging.getLogger(__name__)


class CalibrationDataset:
    """torch2trt's INT8 calibration dataset (the shape its README gives): ``len(dataset)`` frames, ``dataset[i]``
    a list with one ``1 x 3 x H x W`` float32 CUDA tensor normalized for the model's contract, NCHW-contiguous
    because the calibrator hands TensorRT its raw pointer. The last item is kept alive until the next is asked for,
    so that pointer stays valid while TensorRT reads it."""

    def __init__(self, frames: np.ndarray, contract: ModelContract) -> None:
        from ..preprocess import Preprocessor

        self._frames = frames
        self._preprocess = Preprocessor(contract)
        self._current: list[Any] = []

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> list[Any]:
        import torch

        if not 0 <= index < len(self._frames):
            raise IndexError(index)
        self._current = [torch.from_numpy(self._preprocess(self._frames[index])).cuda().contiguous()]
        return self._current


class Torch2TRTBuild(Route):
    command = "--backend tensorrt --via torch2trt"
    backend = "torch2trt"
    what = "the torch2trt module"
    precisions = PRECISIONS
    sources = (".pt", ".pth")
    source_kind = "a PyTorch checkpoint (.pt, .pth)"
    engine = True

    def check(self, request: ConvertRequest) -> None:
        import_torch2trt()
        _check_tensorrt_supports(request.precision)

    def build(self, request: ConvertRequest, contract: ModelContract, frames: FrameSplit, out: Path,
              work: Path) -> Build:
        import torch

        from ..engines.torch_engine import load_network

        torch2trt = import_torch2trt()
        model = load_network(request.source)[0].cuda().eval()
        example = CalibrationDataset(frames.verification, contract)[0][0]
        calibration = CalibrationDataset(frames.calibration, contract) if request.precision == "int8" else None
        log.info("converting %s with torch2trt (%s)", request.source, request.precision)
        with torch.no_grad():
            module = torch2trt.torch2trt(
                model, [example], fp16_mode=request.precision in ("fp16", "int8"),
                int8_mode=request.precision == "int8", int8_calib_dataset=calibration,
                max_batch_size=request.max_batch, max_workspace_size=request.workspace_mb << 20,
                input_names=[contract.input_name], output_names=list(contract.output_tensors))
        torch.save(module.state_dict(), out)
        sidecar: dict[str, Any] = {"builder": {"workspace_mb": request.workspace_mb,
                                               "torch2trt": getattr(torch2trt, "__version__", "unknown")}}
        if calibration is not None:
            sidecar["calibration"] = {"calib_dir": str(request.calib_dir) if request.calib_dir else None,
                                      "calib_frames": len(calibration)}
        return Build(sidecar=sidecar)

    def load_options(self, request: ConvertRequest) -> dict:
        return {"source": request.source}


ROUTE = Torch2TRTBuild()
convert = ROUTE.convert


def _check_tensorrt_supports(precision: str) -> None:
    """torch2trt's fp16_mode and int8_mode set builder flags TensorRT 11 removed: say so before converting."""
    import tensorrt as trt

    if precision != "fp32" and not hasattr(trt.BuilderFlag, precision.upper()):
        raise JetracerError(f"torch2trt's {precision} mode needs the {precision.upper()} builder flag, which TensorRT "
                            f"{trt.__version__} no longer has; use --backend tensorrt without --via torch2trt")
