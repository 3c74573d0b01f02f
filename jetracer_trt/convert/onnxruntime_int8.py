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

Steps: fold the FP16+Cast weights and BatchNormalization into plain FP32 Convs (``calibration.plain_fp32_graph``),
``quantize_static`` with frames normalized by ``preprocess.Preprocessor``, check that every Conv became a
QLinearConv, record ``precision=int8`` and the calibration in ``metadata_props`` (the ONNX Runtime engine reads
``precision`` from there), then run the candidate through ``create_engine("onnxruntime", ...)`` on frames the
calibration did not see and write OUT atomically only if ``verify.compare`` passes the INT8 tolerance.
"""
from __future__ import annotations

import collections
import logging
import tempfile
import time
from pathlib import Path

from ..errors import JetracerError
from ..fileio import atomic_path
from ..verify import compare, engine_outputs, reference_outputs, require_match
from .calibration import FrameBatches, plain_fp32_graph, record_quantization, split_frames
from .common import ConvertRequest, ConvertResult, check_output

log = logging.getLogger(__name__)

CALIBRATION_METHOD = "MinMax"   # see the module docstring for the measurements behind each choice
KEEP_FP32_OPS = ("Gemm",)       # the 512 -> 2 head
QUANTIZED_FORMAT = "QOperator U8S8 per-tensor"
INT8_OP_PREFIXES = ("QLinear", "QGemm", "ConvInteger", "MatMulInteger")


def convert(request: ConvertRequest) -> ConvertResult:
    """Quantizes ``request.source`` to ``request.out``; JetracerError (and OUT untouched) for bad input or a result
    that disagrees with the source beyond the INT8 tolerance."""
    import onnx

    start = time.perf_counter()
    source, out = Path(request.source), Path(request.out)
    check_request(request)
    frames = split_frames(request.calib_dir, request.calib_frames, request.verify_frames)
    for note in frames.notes:
        log.warning("%s", note)

    with tempfile.TemporaryDirectory(prefix="jetracer-int8-") as work:
        prepared = plain_fp32_graph(source, Path(work) / "fp32.onnx")
        log.info("calibrating INT8 (%s) on %d frames from %s", CALIBRATION_METHOD, len(frames.calibration),
                 frames.source)
        proto = quantize_qoperator(prepared, frames.calibration, Path(work) / "int8.onnx")
        record_quantization(proto, source, {
            "precision": "int8",
            "quantization": f"onnxruntime {_ort_version()} {QUANTIZED_FORMAT}, FP32 {', '.join(KEEP_FP32_OPS)}",
            "calibration_method": CALIBRATION_METHOD,
            "calibration_frames": str(len(frames.calibration)),
            "calibration_source": frames.source,
        })
        with atomic_path(out) as tmp:  # OUT appears only once verified
            try:
                onnx.save_model(proto, str(tmp))
            except OSError as exc:
                raise JetracerError(f"cannot write {tmp}: {exc.strerror or exc}") from None
            comparison = _verify(source, tmp, frames.verification, request.max_batch)
            require_match(comparison, "the ONNX Runtime INT8 model", out)

    notes = list(frames.notes) + (layer_precisions(proto) if request.verbose else [])
    return ConvertResult(path=out, backend="onnxruntime", precision="int8", comparison=comparison,
                         seconds=time.perf_counter() - start, files=[out], notes=notes)


def quantize_qoperator(prepared: Path, calibration_frames, out: Path):
    """``quantize_static`` of the prepared FP32 graph (``plain_fp32_graph``) in this route's format, calibrated on
    RGB uint8 ``calibration_frames``; returns the INT8 ModelProto (also written to ``out``). JetracerError if the
    quantizer fails or leaves any Conv unquantized."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(prepared), load_external_data=False).graph
    convs = sum(node.op_type == "Conv" for node in graph.node)
    keep_fp32 = [node.name for node in graph.node if node.op_type in KEEP_FP32_OPS]
    try:
        quantize_static(
            str(prepared), str(out), FrameBatches(calibration_frames, graph.input[0].name),
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
        raise JetracerError(f"only {ops['QLinearConv']} of {convs} convolutions were quantized; is the source the "
                            "FP32 road-following model exported by `jetracer-trt export`?")
    return proto


def check_request(request: ConvertRequest) -> None:
    """JetracerError, before any work, for what this route cannot do or must not overwrite."""
    source, out = Path(request.source), Path(request.out)
    if request.precision in ("fp32", "fp16"):
        raise JetracerError(
            f"--backend onnxruntime converts to int8 only. For fp32 there is nothing to convert: the FP32 .onnx "
            f"({source.name}) already is the ONNX Runtime model. fp16 is for GPUs: use --backend tensorrt (Jetson) "
            f"or --backend torch (a CUDA GPU without TensorRT).")
    if request.precision != "int8":
        raise JetracerError(f"unknown precision {request.precision!r}; --backend onnxruntime takes int8")
    if source.suffix != ".onnx":
        raise JetracerError(f"--backend onnxruntime quantizes an FP32 .onnx model, got {source}; make one with "
                            "`jetracer-trt export`")
    if not source.is_file():
        raise JetracerError(f"model file not found: {source}")
    if out.resolve() == source.resolve():
        raise JetracerError(f"--out {out} is the source model; write the INT8 model beside it, e.g. "
                            f"{source.with_name(source.name.split('.')[0] + '.int8.onnx')}")
    check_output(out, request.force)
    if out.suffix != ".onnx":
        raise JetracerError(f"--out {out} must be an .onnx file (ONNX Runtime loads it by that name)")


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


def _verify(source: Path, candidate: Path, frames, max_batch: int):
    """The candidate through the ONNX Runtime engine (the runtime's own loading and checks) vs the FP32 source."""
    from ..engines import create_engine

    with create_engine("onnxruntime", candidate, providers=["CPUExecutionProvider"], max_batch=max_batch) as engine:
        if engine.precision != "int8":
            raise JetracerError(f"the ONNX Runtime engine reads precision {engine.precision!r} from the INT8 model")
        candidate_outputs = engine_outputs(engine, frames)
    return compare(reference_outputs(source, frames), candidate_outputs, "int8")


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
