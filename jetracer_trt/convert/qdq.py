"""Explicit-quantization INT8 ONNX for TensorRT: QuantizeLinear/DequantizeLinear pairs on every Conv's input and
weights, with scales calibrated on real frames, made by NVIDIA ModelOpt's ONNX post-training quantization.

TensorRT 10 deprecated and TensorRT 11 removed the implicit INT8 calibrators, so an INT8 engine is built from a
Q/DQ ONNX: the scales live in the graph and the builder only has to honour them. ModelOpt places the Q/DQ nodes by
TensorRT's own fusion rules, which a hand-written pass would have to track release by release.

What ModelOpt is given: the FP32 graph with plain FP32 weights (``calibration.plain_fp32_graph``: the shipped
model's FP16+Cast weights folded, BatchNormalization folded into the Convs, as TensorRT would fuse them anyway) and
the calibration frames normalized by the runtime's ``Preprocessor`` for the model's contract as one (N, 3, H, W)
float32 array. Calibration
``max``: mean |dx| 5.1e-3 against FP32 on 600 held-out simulator frames (512 calibration frames, run by ONNX Runtime
on CPU); ModelOpt's default ``entropy`` gave 1.5e-2 where ``max`` gave 4.0e-3 (64 calibration frames, 64 held-out).
Layers left unquantized are stored in FP16 (ModelOpt's default ``high_precision_dtype``), what a Jetson runs them
in; the model's input and output stay float32.

ModelOpt is imported only inside ``make_qdq_onnx``: the project's ``quantize`` extra installs it with the ONNX
packages its ONNX path needs (``MODELOPT_HINT``); ModelOpt's own ``[onnx]`` extra pins onnx~=1.21 and
onnxruntime-gpu~=1.24, which conflict with this project's onnx and onnxruntime pins.
"""
from __future__ import annotations

import contextlib

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..contract import ModelContract
from ..errors import JetracerError
from ..fileio import atomic_path
from ..preprocess import Preprocessor
from .calibration import plain_fp32_graph, record_quantization

log = logging.getLogger(__name__)

CALIBRATION_METHOD = "max"
MODELOPT_HINT = ("pip install -c constraints.txt -e '.[quantize]' in the project's checkout (NVIDIA ModelOpt 0.47 with "
                 "onnx-graphsurgeon, onnxslim, onnxscript and lief)")


def make_qdq_onnx(source_onnx: Path, frames: np.ndarray, contract: ModelContract, out: Path) -> Path:
    """Writes (atomically) the explicit Q/DQ INT8 version of ``source_onnx`` to ``out``, calibrated on ``frames``
    (RGB uint8, (N, H, W, 3)) normalized for ``contract``; returns ``out``. JetracerError when ModelOpt is missing,
    fails, or leaves a Conv without Q/DQ on its input and weights."""
    source_onnx, out = Path(source_onnx), Path(out)
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as exc:
        raise JetracerError(f"INT8 for TensorRT needs NVIDIA ModelOpt's ONNX quantization, which cannot be imported "
                            f"here ({exc}); install it with: {MODELOPT_HINT}") from None
    import onnx

    if not source_onnx.is_file():
        raise JetracerError(f"model file not found: {source_onnx}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise JetracerError(f"calibration frames must be RGB uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    with tempfile.TemporaryDirectory(prefix="jetracer-qdq-") as work:
        prepared = plain_fp32_graph(source_onnx, Path(work) / "fp32.onnx")
        quantized = Path(work) / "qdq.onnx"
        log.info("calibrating Q/DQ INT8 (ModelOpt, %s) on %d frames", CALIBRATION_METHOD, len(frames))
        try:
            with ort_quantization_left_as_found():
                quantize(str(prepared), quantize_mode="int8", calibration_data=Preprocessor(contract).batch(frames),
                         calibration_method=CALIBRATION_METHOD, calibration_eps=["cpu"], output_path=str(quantized),
                         log_level="WARNING")
        except Exception as exc:  # noqa: BLE001 - ModelOpt raises many types; name the first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise JetracerError(f"ModelOpt INT8 quantization of {source_onnx} failed: {first[:300]}") from None
        proto = onnx.load(str(quantized))
        unquantized = convs_without_qdq(proto)
        if unquantized:
            raise JetracerError(f"ModelOpt left {len(unquantized)} convolutions without Q/DQ (e.g. {unquantized[0]}); "
                                f"{out} was not written")
        record_quantization(proto, source_onnx, contract, {
            "precision": "int8",
            "quantization": f"modelopt {_modelopt_version()} int8 Q/DQ for TensorRT",
            "calibration_method": CALIBRATION_METHOD,
            "calibration_frames": str(len(frames)),
        })
        onnx.save_model(proto, str(quantized))
        with atomic_path(out) as tmp:
            shutil.copyfile(quantized, tmp)
    return out


_ORT_QUANTIZATION_MODULES = ("calibrate", "base_quantizer", "qdq_quantizer", "onnx_quantizer", "quantize")


@contextlib.contextmanager
def ort_quantization_left_as_found():
    """ModelOpt's quantize() replaces methods of ONNX Runtime's calibrators and quantizers for the whole process and
    leaves them so; afterwards ONNX Runtime's own INT8 route (``onnxruntime_int8``) breaks in the same process
    ('NoneType' object has no attribute 'extend'). This puts back every module attribute and class attribute of
    ONNX Runtime's quantization modules as they were before."""
    import importlib

    saved = []
    for name in _ORT_QUANTIZATION_MODULES:
        try:
            module = importlib.import_module(f"onnxruntime.quantization.{name}")
        except ImportError:
            continue
        saved.append((module, dict(vars(module))))
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == module.__name__:
                saved.append((value, dict(vars(value))))
    try:
        yield
    finally:
        for owner, attributes in saved:
            current = vars(owner)
            for key, value in attributes.items():
                if current.get(key) is not value:
                    setattr(owner, key, value)


def convs_without_qdq(proto) -> list[str]:
    """Names of the Conv nodes whose input or weight does not come through QuantizeLinear -> DequantizeLinear (an
    initializer straight into DequantizeLinear counts as a quantized weight)."""
    producer = {output: node for node in proto.graph.node for output in node.output}
    initializers = {init.name for init in proto.graph.initializer}

    def quantized(tensor: str) -> bool:
        dq = producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            return False
        q = producer.get(dq.input[0])
        return dq.input[0] in initializers or (q is not None and q.op_type == "QuantizeLinear")

    return [node.name for node in proto.graph.node
            if node.op_type == "Conv" and not (quantized(node.input[0]) and quantized(node.input[1]))]


def _modelopt_version() -> str:
    import modelopt

    return getattr(modelopt, "__version__", "unknown")
