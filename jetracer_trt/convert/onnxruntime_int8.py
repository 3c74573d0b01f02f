"""``jetracer-trt convert --backend onnxruntime --precision int8``: the FP32 ONNX model -> an INT8 ONNX model that
ONNX Runtime runs faster on a CPU (laptops, CI), calibrated on real frames and verified before it is written.

The format is the one that is actually faster on a small x86 CPU: QOperator (QLinearConv, QLinearAdd, ...) with
uint8 activations and int8 weights, one scale per tensor (U8S8 per-tensor). With ONNX Runtime 1.32 on a 2-core AMD
EPYC (AVX2, no VNNI) it ran 1.7x to 1.9x faster than FP32 at batch 1 (QLinearConv 0.8 ms where the FP32 Conv takes
1.3 ms); QDQ U8S8 per-tensor ran at the same speed (ORT fuses it into the same kernels), QDQ S8S8 per-channel ran
slower than FP32 (0.8x), U8U8 1.4x.

Accuracy choices, each measured as mean |dx| against the FP32 model on 600 held-out simulator frames (track seeds
200-399, plain and randomized), calibrated on 512 frames of seeds 0-99:

* calibration MinMax: 2.5e-3 (max 1.0e-2). Percentile 99.999: 4.0e-3, Percentile 99.99: 7.3e-3, both 3x slower to
  calibrate; Entropy with 2048 bins (128 calibration frames): 1.9e-2, 5x slower, and ORT's histogram calibrators
  keep every activation of every frame (512 frames ran out of 23 GB). ``quantize_static``'s own Entropy keeps a
  128-bin histogram, which leaves a single candidate threshold: it gives exactly MinMax.
* the head (``Gemm``, 512 -> 2, a negligible share of the work) stays FP32: quantizing its output to 256 levels
  was a third of the error (3.5e-3 with it quantized).
* no ``reduce_range`` (7-bit weights against int16 saturation on CPUs without VNNI): less accurate here.

A pose model (``cmap`` and ``paf`` outputs) converts the same way: its convolutions become QLinearConv; its six
ConvTranspose upsampling layers stay FP32 (ONNX Runtime's QOperator format has no quantized ConvTranspose), so the
INT8 file is larger than the FP16-stored FP32 one (its FP32 ConvTranspose weights) and those layers run at FP32
speed (measurements in models/POSE_MODEL_CARD.md).

The build (the pipeline, ``pipeline.py``, does the rest): fold the FP16+Cast weights and BatchNormalization into
plain FP32 Convs (``calibration.plain_fp32_graph``), ``quantize_static`` with frames normalized by
``preprocess.Preprocessor`` for the model's contract, check that every Conv became a QLinearConv, and record
``precision=int8``, the contract and the calibration in ``metadata_props`` (the ONNX Runtime engine reads them).
"""
from __future__ import annotations

import collections
import logging
from pathlib import Path

from ..contract import ModelContract
from ..errors import JetracerError
from .calibration import FrameBatches, FrameSplit, plain_fp32_graph, record_quantization
from .pipeline import Build, ConvertRequest, Route

log = logging.getLogger(__name__)

CALIBRATION_METHOD = "MinMax"   # see the module docstring for the measurements behind each choice
KEEP_FP32_OPS = ("Gemm",)       # the 512 -> 2 head
QUANTIZED_FORMAT = "QOperator U8S8 per-tensor"
INT8_OP_PREFIXES = ("QLinear", "QGemm", "ConvInteger", "MatMulInteger")


class OnnxRuntimeInt8(Route):
    command = "--backend onnxruntime"
    backend = "onnxruntime"
    what = "the ONNX Runtime INT8 model"
    precisions = ("int8",)
    sources = (".onnx",)
    source_kind = "an FP32 .onnx model (make one with `jetracer-trt export`)"

    def precision_hint(self, precision: str) -> str:
        if precision == "fp32":
            return ("for fp32 there is nothing to convert: the FP32 .onnx already is the ONNX Runtime model")
        if precision == "fp16":
            return "fp16 is for GPUs: use --backend tensorrt (Jetson) or --backend torch (a CUDA GPU without TensorRT)"
        return super().precision_hint(precision)

    def check(self, request: ConvertRequest) -> None:
        if request.out.suffix != ".onnx":
            raise JetracerError(f"--out {request.out} must be an .onnx file (ONNX Runtime loads it by that name)")

    def build(self, request: ConvertRequest, contract: ModelContract, frames: FrameSplit, out: Path,
              work: Path) -> Build:
        import onnx

        prepared = plain_fp32_graph(request.source, work / "fp32.onnx")
        log.info("calibrating INT8 (%s) on %d frames from %s", CALIBRATION_METHOD, len(frames.calibration),
                 frames.source)
        proto = quantize_qoperator(prepared, frames.calibration, contract, work / "int8.onnx")
        record_quantization(proto, request.source, contract, {
            "precision": "int8",
            "quantization": f"onnxruntime {_ort_version()} {QUANTIZED_FORMAT}, FP32 {', '.join(KEEP_FP32_OPS)}",
            "calibration_method": CALIBRATION_METHOD,
            "calibration_frames": str(len(frames.calibration)),
            "calibration_source": frames.source,
        })
        try:
            onnx.save_model(proto, str(out))
        except OSError as exc:
            raise JetracerError(f"cannot write {out}: {exc.strerror or exc}") from None
        return Build(notes=layer_precisions(proto) if request.verbose else [])

    def load_options(self, request: ConvertRequest) -> dict:
        return {"providers": ["CPUExecutionProvider"]}  # the CPU kernels the INT8 format was chosen for


ROUTE = OnnxRuntimeInt8()
convert = ROUTE.convert


def quantize_qoperator(prepared: Path, calibration_frames, contract: ModelContract, out: Path):
    """``quantize_static`` of the prepared FP32 graph (``plain_fp32_graph``) in this route's format, calibrated on
    RGB uint8 ``calibration_frames`` normalized for ``contract``; returns the INT8 ModelProto (also written to
    ``out``). JetracerError if the quantizer fails or leaves any Conv unquantized."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(prepared), load_external_data=False).graph
    convs = sum(node.op_type == "Conv" for node in graph.node)
    keep_fp32 = [node.name for node in graph.node if node.op_type in KEEP_FP32_OPS]
    try:
        quantize_static(
            str(prepared), str(out), FrameBatches(calibration_frames, graph.input[0].name, contract),
            quant_format=QuantFormat.QOperator, per_channel=False, reduce_range=False,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod[CALIBRATION_METHOD], nodes_to_exclude=keep_fp32,
        )
    except Exception as exc:  # noqa: BLE001 - the quantizer raises many types; name the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JetracerError(f"ONNX Runtime quantization of {prepared.name} failed: {first[:300]}") from None
    proto = onnx.load(str(out))
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    if ops["QLinearConv"] != convs or ops["Conv"]:
        raise JetracerError(f"only {ops['QLinearConv']} of {convs} convolutions were quantized; is the source an "
                            "FP32 model exported by `jetracer-trt export`?")
    return proto


def layer_precisions(proto) -> list[str]:
    """One line per node of the INT8 graph: its op and whether it computes in int8 or fp32 (``--verbose``).

    From the file's graph: QLinear*/QGemm nodes are int8, so are ops (MaxPool, Flatten) whose input is already int8;
    ONNX Runtime may fuse further when it loads the model.
    """
    int8_tensors: set[str] = set()
    lines = []
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear":
            kind = "fp32 -> int8"
        elif node.op_type == "DequantizeLinear":
            kind = "int8 -> fp32"
        elif node.op_type.startswith(INT8_OP_PREFIXES) or (node.input and node.input[0] in int8_tensors):
            kind = "int8"
        else:
            kind = "fp32"
        if kind.endswith("int8"):
            int8_tensors.update(node.output)
        lines.append(f"{node.op_type:<24} {node.name:<48} {kind}")
    return lines


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
