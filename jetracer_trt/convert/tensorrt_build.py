"""``jetracer-trt convert --backend tensorrt``: ONNX -> TensorRT engine for this GPU, verified before it is saved.

The route's part of the pipeline (``pipeline.py`` checks, verifies the engine through ``TensorRTEngine`` loaded
from its temporary file against the source on ONNX Runtime FP32, and writes it with its sidecar):

1. Refuse early: a bad workspace, TensorRT not installed.
2. The network's source ONNX, by precision and TensorRT version:

   * fp32: the source as it is; TF32 is switched off, or convolutions would round their inputs to 10 bits and miss
     the FP32 tolerance;
   * fp16: TensorRT 10 keeps the FP16 builder flag (weak typing: TensorRT picks FP16 kernels where it can);
     TensorRT 11 removed it and builds strongly typed networks only, so the source is first turned into an FP16
     ONNX with ModelOpt AutoCast (FP32 inputs and outputs kept);
   * int8: a Q/DQ ONNX from ``convert/qdq.py`` (ModelOpt ONNX PTQ on the calibration frames; TensorRT 11 has no
     implicit INT8 calibration), built as a strongly typed network on both versions, so every layer runs in the
     type the Q/DQ graph gives it.

3. Build: an explicit-batch network (always so since TensorRT 10, whose EXPLICIT_BATCH flag is deprecated and gone
   in 11, so none is passed), the ONNX parser (its errors reported per node), the workspace limit, one optimization
   profile (batch 1 / 1 / ``max_batch``), a timing cache shared by the builds in the output's folder (loaded, then
   written back), and with ``--verbose`` detailed profiling verbosity so that every layer and its precision can be
   listed.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..contract import ModelContract
from ..engines.base import PRECISIONS
from ..engines.tensorrt_engine import import_tensorrt
from ..errors import JetracerError
from ..fileio import atomic_write_bytes
from .calibration import FrameSplit
from .pipeline import Build, ConvertRequest, Route

log = logging.getLogger(__name__)

TIMING_CACHE_NAME = "tensorrt.timing.cache"  # beside the output, shared by every build in that folder


class TensorRTBuild(Route):
    command = "--backend tensorrt"
    backend = "tensorrt"
    what = "the TensorRT engine"
    precisions = PRECISIONS
    sources = (".onnx",)
    source_kind = ("an ONNX model (export a checkpoint with `jetracer-trt export` first, or use --via torch2trt for "
                   "a checkpoint)")
    engine = True

    def check(self, request: ConvertRequest) -> None:
        if request.workspace_mb < 1:
            raise JetracerError(f"the builder workspace must be at least 1 MB, got {request.workspace_mb}")
        import_tensorrt()

    def build(self, request: ConvertRequest, contract: ModelContract, frames: FrameSplit, out: Path,
              work: Path) -> Build:
        trt = import_tensorrt()
        cache_path = request.out.with_name(TIMING_CACHE_NAME)  # beside OUT, kept for the next build
        network_onnx, strongly_typed, note = network_source(trt, request, contract, frames, work)
        plan, builder_record = build_plan(trt, network_onnx, request, contract, strongly_typed, cache_path)
        out.write_bytes(plan)
        sidecar: dict[str, Any] = {"builder": builder_record}
        if request.precision == "int8":
            sidecar["calibration"] = {"calib_dir": str(request.calib_dir) if request.calib_dir else None,
                                      "calib_frames": len(frames.calibration)}
        return Build(notes=[note], sidecar=sidecar, files=[cache_path])

    def load_options(self, request: ConvertRequest) -> dict:
        return {"source": request.source}

    def report(self, engine, request: ConvertRequest) -> list[str]:
        return engine.layer_report() if request.verbose else []


ROUTE = TensorRTBuild()
convert = ROUTE.convert


def network_source(trt, request: ConvertRequest, contract: ModelContract, frames: FrameSplit,
                   work: Path) -> tuple[Path, bool, str]:
    """(ONNX to parse, whether to build it strongly typed, a note for the user) for ``request.precision``."""
    source = Path(request.source)
    if request.precision == "int8":
        from .qdq import make_qdq_onnx

        qdq = make_qdq_onnx(source, frames.calibration, contract, work / "qdq.onnx")
        return qdq, True, (f"INT8: explicit Q/DQ ONNX calibrated on {len(frames.calibration)} frames, built "
                           "strongly typed")
    if request.precision == "fp16" and not hasattr(trt.BuilderFlag, "FP16"):
        return autocast_fp16(source, work / "fp16.onnx"), True, (
            f"FP16: TensorRT {trt.__version__} has no FP16 builder flag; built strongly typed from a ModelOpt "
            "AutoCast FP16 ONNX")
    return source, False, f"{request.precision.upper()}: built from {source.name}"


def autocast_fp16(source: Path, out: Path) -> Path:
    """``source`` converted to mixed FP16 (FP32 where AutoCast finds FP16 unsafe; FP32 inputs and outputs)."""
    from .qdq import MODELOPT_HINT

    try:
        import onnx
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError as exc:
        raise JetracerError(f"TensorRT 11 builds FP16 engines only from an FP16 ONNX, made here with NVIDIA ModelOpt "
                            f"AutoCast, which is not importable ({exc}); {MODELOPT_HINT}") from None
    onnx.save(convert_to_mixed_precision(onnx_path=str(source), low_precision_type="fp16", keep_io_types=True), out)
    return out


def build_plan(trt, onnx_path: Path, request: ConvertRequest, contract: ModelContract, strongly_typed: bool,
               cache_path: Path) -> tuple[bytes, dict[str, Any]]:
    """(serialized plan, what the builder was told, for the sidecar)."""
    input_shape = [-1, 3, contract.input_height, contract.input_width]
    logger = trt.Logger(trt.Logger.INFO if request.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser_error_text(parser.get_error(i)) for i in range(parser.num_errors)]
        reasons = "; ".join(errors) or "no reason given"
        raise JetracerError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {reasons}")
    input_name = _check_network(network, input_shape, contract, request.max_batch)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_mb << 20)
    builder_flags = []
    if request.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    elif request.precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
        builder_flags.append("FP16")
    profile = builder.create_optimization_profile()
    one, most = (1, *input_shape[1:]), (request.max_batch, *input_shape[1:])
    profile.set_shape(input_name, one, one, most)
    config.add_optimization_profile(profile)
    if request.verbose:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if not config.set_timing_cache(load_timing_cache(config, cache_path), False):
        log.warning("timing cache %s was made for another GPU or TensorRT; starting a new one", cache_path)
        config.set_timing_cache(config.create_timing_cache(b""), False)

    log.info("building the TensorRT %s engine (this takes minutes on a Jetson)", request.precision)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise JetracerError("TensorRT could not build the engine (its log above says why); a larger --workspace "
                            "may help")
    atomic_write_bytes(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    record = {"workspace_mb": request.workspace_mb, "strongly_typed": strongly_typed, "flags": builder_flags,
              "tf32": request.precision != "fp32", "timing_cache": cache_path.name,
              "profile": {"min": list(one), "opt": list(one), "max": list(most)}}
    return bytes(memoryview(plan)), record


def load_timing_cache(config, cache_path: Path):
    """The timing cache in ``cache_path`` if it is readable and made by this TensorRT on this GPU, else a new one
    (a stale cache is not an error: the build just measures every tactic again)."""
    data = b""
    if cache_path.is_file():
        try:
            data = cache_path.read_bytes()
        except OSError as exc:
            log.warning("cannot read timing cache %s (%s); starting a new one", cache_path, exc)
    try:
        cache = config.create_timing_cache(data)
    except Exception as exc:  # noqa: BLE001 - the bindings raise their own types for a foreign file
        log.warning("timing cache %s is unusable (%s); starting a new one", cache_path, exc)
        cache = None
    if cache is None:
        cache = config.create_timing_cache(b"")
    elif data:
        log.info("reusing TensorRT timing cache %s", cache_path)
    return cache


def parser_error_text(error) -> str:
    """One line per ONNX parser error: the node (name and operator) and TensorRT's description."""
    node = error.node_name() or (f"node {error.node()}" if error.node() >= 0 else "the model")
    operator = f" ({error.node_operator()})" if error.node_operator() else ""
    return f"{node}{operator}: {error.desc()}"


def _check_network(network, input_shape: list[int], contract: ModelContract, max_batch: int) -> str:
    """The input's name, after checking the parsed network is one [N, 3, H, W] input and the outputs of its
    contract: one (road following), or one per output tensor (a pose model's cmap and paf)."""
    outputs = len(contract.output_tensors)
    if network.num_inputs != 1 or network.num_outputs != outputs:
        what = (f"{outputs} outputs ({', '.join(contract.output_tensors)})" if contract.tensor_outputs
                else f"one output ({len(contract.outputs)} values per frame)")
        raise JetracerError(f"the model has {network.num_inputs} inputs and {network.num_outputs} outputs; expected "
                            f"one input (the image) and {what}")
    tensor = network.get_input(0)
    shape = list(tensor.shape)
    if len(shape) != 4 or shape[1:] != input_shape[1:]:
        raise JetracerError(f"the model's input {tensor.name} has shape {shape}, expected {input_shape}")
    if shape[0] != -1 and not shape[0] == 1 == max_batch:
        raise JetracerError(f"the model's input has a fixed batch of {shape[0]}, so it cannot run batches of 1 to "
                            f"{max_batch}; export it with a dynamic batch dimension")
    return tensor.name
