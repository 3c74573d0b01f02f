"""``jetracer-trt convert --backend tensorrt``: ONNX -> TensorRT engine for this GPU, verified before it is saved.

Steps of ``convert``:

1. Refuse early: a bad request, an output that is a valid engine already (or not an engine at all) without
   ``--force``, TensorRT not installed.
2. The network's source ONNX, by precision and TensorRT version:

   * fp32: the source as it is; TF32 is switched off, or convolutions would round their inputs to 10 bits and miss
     the FP32 tolerance;
   * fp16: TensorRT 10 keeps the FP16 builder flag (weak typing: TensorRT picks FP16 kernels where it can);
     TensorRT 11 removed it and builds strongly typed networks only, so the source is first turned into an FP16
     ONNX with ModelOpt AutoCast (FP32 inputs and outputs kept);
   * int8: a Q/DQ ONNX from ``convert/qdq.py`` (ModelOpt ONNX PTQ on calibration frames; TensorRT 11 has no
     implicit INT8 calibration), built as a strongly typed network on both versions, so every layer runs in the
     type the Q/DQ graph gives it.

3. Build: an explicit-batch network (always so since TensorRT 10, whose EXPLICIT_BATCH flag is deprecated and gone
   in 11, so none is passed), the ONNX parser (its errors reported per node), the workspace limit, one optimization
   profile (batch 1 / 1 / ``max_batch``), a timing cache shared by the builds in the output's folder (loaded, then
   written back), and with ``--verbose`` detailed profiling verbosity so that every layer and its precision can be
   listed.
4. Verify: the new engine, loaded through ``TensorRTEngine`` from a temporary file, against the source model
   (ONNX Runtime FP32) on the same frames, with the tolerance of its precision. Only then are the engine and its
   sidecar renamed into place.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from ..config import load_config
from ..engines import sidecar as sidecars
from ..engines.base import PRECISIONS
from ..engines.tensorrt_engine import TensorRTEngine, import_tensorrt
from ..errors import JetracerError
from ..fileio import atomic_write_bytes
from ..verify import compare, engine_outputs, reference_outputs, require_match, verification_frames
from .common import ConvertRequest, ConvertResult

log = logging.getLogger(__name__)

TIMING_CACHE_NAME = "tensorrt.timing.cache"  # beside the output, shared by every build in that folder


def convert(request: ConvertRequest) -> ConvertResult:
    """Builds, verifies and writes ``request.out`` (a TensorRT plan) and its sidecar; see the module docstring."""
    started = time.perf_counter()
    source, out = Path(request.source), Path(request.out)
    check_request(request)
    platform = sidecars.current_platform()
    sidecars.refuse_overwrite(out, source, platform, request.force)
    trt = import_tensorrt()
    config = load_config("model")
    input_shape = [-1, 3, int(config["input_height"]), int(config["input_width"])]
    frames = verification_frames(request.calib_dir, request.verify_frames)
    reference = reference_outputs(source, frames)
    cache_path = out.with_name(TIMING_CACHE_NAME)
    notes: list[str] = []

    with tempfile.TemporaryDirectory(prefix="jetracer-trt-") as work:
        network_onnx, strongly_typed, note = network_source(trt, request, Path(work))
        notes.append(note)
        plan, builder_record = build_plan(trt, network_onnx, request, strongly_typed, input_shape, cache_path)

    fields: dict[str, Any] = {
        "backend": "tensorrt", **platform, "precision": request.precision,
        "input_name": str(config["onnx_input_name"]), "output_name": str(config["onnx_output_name"]),
        "input_shape": input_shape, "max_batch": request.max_batch,
        "source": str(source), "source_sha256": sidecars.source_hash(source),
        "artifact_sha256": hashlib.sha256(plan).hexdigest(), "builder": builder_record,
    }
    if request.precision == "int8":
        fields["calibration"] = {"calib_dir": str(request.calib_dir) if request.calib_dir else None,
                                 "calib_frames": request.calib_frames}
    with sidecars.staged_artifact(out) as tmp:
        tmp.write_bytes(plan)
        sidecars.write_sidecar(tmp, fields)
        with TensorRTEngine(tmp, max_batch=request.max_batch, source=source) as engine:
            comparison = compare(reference, engine_outputs(engine, frames), request.precision)
            if request.verbose:
                notes.extend(engine.layer_report())
        require_match(comparison, f"the TensorRT {request.precision} engine", out)
        sidecars.write_sidecar(tmp, {**fields, "verification": comparison.as_dict()})
    notes.append(f"verified against {source}: {comparison.report()}")
    return ConvertResult(path=out, backend="tensorrt", precision=request.precision, comparison=comparison,
                         seconds=time.perf_counter() - started,
                         files=[out, sidecars.sidecar_path(out), cache_path], notes=notes)


def check_request(request: ConvertRequest) -> None:
    """JetracerError for a request this route cannot do, before anything heavy is imported."""
    if request.precision not in PRECISIONS:
        raise JetracerError(f"unknown precision {request.precision!r}; choose one of {', '.join(PRECISIONS)}")
    source = Path(request.source)
    if source.suffix != ".onnx":
        raise JetracerError(f"the TensorRT route builds from an ONNX model, got {source}; export a checkpoint "
                            "with `jetracer-trt export` first (or use --via torch2trt for a checkpoint)")
    if not source.is_file():
        raise JetracerError(f"source model not found: {source}")
    if isinstance(request.max_batch, bool) or not isinstance(request.max_batch, int) or request.max_batch < 1:
        raise JetracerError(f"max batch must be a positive integer, got {request.max_batch!r}")
    if request.workspace_mb < 1:
        raise JetracerError(f"the builder workspace must be at least 1 MB, got {request.workspace_mb}")
    if not Path(request.out).parent.is_dir():
        raise JetracerError(f"output folder {Path(request.out).parent} does not exist")


def network_source(trt, request: ConvertRequest, work: Path) -> tuple[Path, bool, str]:
    """(ONNX to parse, whether to build it strongly typed, a note for the user) for ``request.precision``."""
    source = Path(request.source)
    if request.precision == "int8":
        from .qdq import make_qdq_onnx

        calibration = verification_frames(request.calib_dir, request.calib_frames)
        qdq = make_qdq_onnx(source, calibration, work / "qdq.onnx")
        return qdq, True, f"INT8: explicit Q/DQ ONNX calibrated on {len(calibration)} frames, built strongly typed"
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


def build_plan(trt, onnx_path: Path, request: ConvertRequest, strongly_typed: bool, input_shape: list[int],
               cache_path: Path) -> tuple[bytes, dict[str, Any]]:
    """(serialized plan, what the builder was told, for the sidecar)."""
    logger = trt.Logger(trt.Logger.INFO if request.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser_error_text(parser.get_error(i)) for i in range(parser.num_errors)]
        reasons = "; ".join(errors) or "no reason given"
        raise JetracerError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {reasons}")
    input_name = _check_network(network, input_shape, request.max_batch)

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


def _check_network(network, input_shape: list[int], max_batch: int) -> str:
    """The input's name, after checking the parsed network is one [N, 3, H, W] input and one [N, 2] output."""
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise JetracerError(f"the model has {network.num_inputs} inputs and {network.num_outputs} outputs; the road "
                            "model has one input (image) and one output (target)")
    tensor = network.get_input(0)
    shape = list(tensor.shape)
    if len(shape) != 4 or shape[1:] != input_shape[1:]:
        raise JetracerError(f"the model's input {tensor.name} has shape {shape}, expected {input_shape}")
    if shape[0] != -1 and not shape[0] == 1 == max_batch:
        raise JetracerError(f"the model's input has a fixed batch of {shape[0]}, so it cannot run batches of 1 to "
                            f"{max_batch}; export it with a dynamic batch dimension")
    return tensor.name
