"""``jetracer-trt convert --backend tensorrt --via torch2trt``: the talk's path, checkpoint -> ``TRTModule``.

``torch2trt(model, [x], fp16_mode=..., int8_mode=..., int8_calib_dataset=..., max_batch_size=...)`` converts the
PyTorch model layer by layer while it runs on an example frame; the result is saved as the ``TRTModule``'s state dict
(the serialized engine plus its I/O names) with a sidecar, after the same verification as every conversion: the
module, loaded back through ``Torch2TRTEngine`` from a temporary file, against PyTorch eager FP32 on real frames.

INT8 uses torch2trt's implicit calibrator (``int8_calib_dataset``), which TensorRT 11 removed, as it removed the FP16
builder flag behind ``fp16_mode``: this route needs TensorRT 10 or older (JetPack 6 ships 10.3); the plain tensorrt
route works with both. INT8 also sets ``fp16_mode`` so that layers without an INT8 kernel run in FP16, not FP32.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import load_config
from ..engines import sidecar as sidecars
from ..engines.base import PRECISIONS
from ..engines.torch2trt_engine import Torch2TRTEngine, import_torch2trt
from ..errors import JetracerError
from ..verify import compare, engine_outputs, reference_outputs, require_match, verification_frames
from .common import ConvertRequest, ConvertResult

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth")


class CalibrationFrames:
    """torch2trt's INT8 calibration dataset (the shape its README gives): ``len(dataset)`` frames, ``dataset[i]``
    a list with one normalized ``1 x 3 x H x W`` float32 CUDA tensor, NCHW-contiguous because the calibrator hands
    TensorRT its raw pointer. The last item is kept alive until the next is asked for, so that pointer stays valid
    while TensorRT reads it."""

    def __init__(self, frames: np.ndarray) -> None:
        self._frames = frames
        self._current: list[Any] = []

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> list[Any]:
        import torch

        from ..preprocess import normalize_batch_torch

        if not 0 <= index < len(self._frames):
            raise IndexError(index)
        batch = torch.from_numpy(self._frames[index:index + 1]).cuda()
        self._current = [normalize_batch_torch(batch).contiguous()]
        return self._current


def convert(request: ConvertRequest) -> ConvertResult:
    """Converts ``request.source`` (a checkpoint) with torch2trt, verifies it and writes ``request.out`` (a
    ``TRTModule`` state dict, ``.trt.pth``) and its sidecar."""
    started = time.perf_counter()
    source, out = Path(request.source), Path(request.out)
    check_request(request)
    torch2trt = import_torch2trt()
    platform = sidecars.current_platform()
    sidecars.refuse_overwrite(out, source, platform, request.force)
    _check_tensorrt_supports(request.precision)
    import torch

    from ..model import load_checkpoint

    config = load_config("model")
    frames = verification_frames(request.calib_dir, request.verify_frames)
    reference = reference_outputs(source, frames)
    model = load_checkpoint(source)[0].cuda().eval()
    example = CalibrationFrames(frames)[0][0]
    calibration = None
    if request.precision == "int8":
        calibration = CalibrationFrames(verification_frames(request.calib_dir, request.calib_frames))
    log.info("converting %s with torch2trt (%s)", source, request.precision)
    with torch.no_grad():
        module = torch2trt.torch2trt(
            model, [example], fp16_mode=request.precision in ("fp16", "int8"), int8_mode=request.precision == "int8",
            int8_calib_dataset=calibration, max_batch_size=request.max_batch,
            max_workspace_size=request.workspace_mb << 20,
            input_names=[str(config["onnx_input_name"])], output_names=[str(config["onnx_output_name"])])

    fields: dict[str, Any] = {
        "backend": "torch2trt", **platform, "precision": request.precision,
        "input_name": str(config["onnx_input_name"]), "output_name": str(config["onnx_output_name"]),
        "input_shape": [-1, *example.shape[1:]], "max_batch": request.max_batch,
        "source": str(source), "source_sha256": sidecars.source_hash(source),
        "builder": {"workspace_mb": request.workspace_mb, "torch2trt": getattr(torch2trt, "__version__", "unknown")},
    }
    if calibration is not None:
        fields["calibration"] = {"calib_dir": str(request.calib_dir) if request.calib_dir else None,
                                 "calib_frames": len(calibration)}
    with sidecars.staged_artifact(out) as tmp:
        torch.save(module.state_dict(), tmp)
        fields["artifact_sha256"] = sidecars.source_hash(tmp)
        sidecars.write_sidecar(tmp, fields)
        with Torch2TRTEngine(tmp, max_batch=request.max_batch, source=source) as engine:
            comparison = compare(reference, engine_outputs(engine, frames), request.precision)
        require_match(comparison, f"the torch2trt {request.precision} module", out)
        sidecars.write_sidecar(tmp, {**fields, "verification": comparison.as_dict()})
    return ConvertResult(path=out, backend="torch2trt", precision=request.precision, comparison=comparison,
                         seconds=time.perf_counter() - started, files=[out, sidecars.sidecar_path(out)],
                         notes=[f"verified against {source}: {comparison.report()}"])


def check_request(request: ConvertRequest) -> None:
    """JetracerError for a request this route cannot do, before anything heavy is imported."""
    if request.precision not in PRECISIONS:
        raise JetracerError(f"unknown precision {request.precision!r}; choose one of {', '.join(PRECISIONS)}")
    source = Path(request.source)
    if source.suffix not in CHECKPOINT_SUFFIXES:
        raise JetracerError(f"--via torch2trt converts a PyTorch checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}), got "
                            f"{source}")
    if not source.is_file():
        raise JetracerError(f"checkpoint not found: {source}")
    if isinstance(request.max_batch, bool) or not isinstance(request.max_batch, int) or request.max_batch < 1:
        raise JetracerError(f"max batch must be a positive integer, got {request.max_batch!r}")
    if not Path(request.out).parent.is_dir():
        raise JetracerError(f"output folder {Path(request.out).parent} does not exist")


def _check_tensorrt_supports(precision: str) -> None:
    """torch2trt's fp16_mode and int8_mode set builder flags TensorRT 11 removed: say so before converting."""
    import tensorrt as trt

    if precision != "fp32" and not hasattr(trt.BuilderFlag, precision.upper()):
        raise JetracerError(f"torch2trt's {precision} mode needs the {precision.upper()} builder flag, which TensorRT "
                            f"{trt.__version__} no longer has; use --backend tensorrt without --via torch2trt")
