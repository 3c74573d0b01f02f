"""``jetracer-trt convert``: the FP32 model -> a faster one for this machine, verified before it is written.

Every route runs the one pipeline of ``pipeline.py`` (check, frames, reference, build, load, compare, write); a
route module supplies only its checks and its build, and is imported only when chosen. ``jetracer-trt export``
(``export.py``) is one more route of the same pipeline.

| backend / via          | module               | source       | precisions        | output (default name)          |
|------------------------|----------------------|--------------|-------------------|--------------------------------|
| onnxruntime            | ``onnxruntime_int8`` | ``.onnx``    | int8              | ``<stem>.int8.onnx``           |
| tensorrt               | ``tensorrt_build``   | ``.onnx``    | fp32, fp16, int8  | ``<stem>.<p>.engine`` + sidecar|
| torch                  | ``torch_aot``        | checkpoint   | fp32, fp16        | ``<stem>.<p>.<device>.pt2``    |
| tensorrt via torch2trt | ``torch2trt_build``  | checkpoint   | fp32, fp16, int8  | ``<stem>.<p>.trt.pth`` + sidecar|

``ensure_engine`` builds the TensorRT engine of a model when it is missing or stale, for the inference node's
``build_engine`` parameter.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import JetracerError
from .pipeline import ConvertRequest, ConvertResult

log = logging.getLogger(__name__)

ROUTES = {
    ("onnxruntime", None): "onnxruntime_int8",
    ("tensorrt", None): "tensorrt_build",
    ("torch", None): "torch_aot",
    ("tensorrt", "torch2trt"): "torch2trt_build",
}
BACKENDS = ("tensorrt", "torch", "onnxruntime")


def convert(backend: str, request: ConvertRequest, via: str | None = None) -> ConvertResult:
    """Runs the conversion route for ``backend`` (and ``via``); JetracerError for a route that does not exist."""
    module = ROUTES.get((backend, via))
    if module is None:
        if backend not in BACKENDS:
            raise JetracerError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        raise JetracerError(f"--via {via} works only with --backend tensorrt")
    return importlib.import_module(f".{module}", __name__).ROUTE.convert(request)


@dataclass
class EnsuredEngine:
    """What ``ensure_engine`` found or did: the engine to run (None: there is none, run another backend) and why."""

    path: Path | None
    built: bool
    reason: str


def ensure_engine(model, precision: str = "fp16", *, calib_dir=None, max_batch: int = 1,
                  workspace_mb: int = 1024) -> EnsuredEngine:
    """The TensorRT engine of ``model`` (the FP32 ``.onnx``) at ``precision``, built first when it is missing or
    stale (its sidecar names another GPU, TensorRT version or model), verified like every conversion, under the
    conventional name beside the model (the one ``backend auto`` picks). Never raises for what the machine lacks
    or for a failed build: ``path`` is None and ``reason`` says why, and the caller falls back as ``auto`` does.
    A file at that name without a sidecar is not an engine this tool wrote, and is left alone."""
    from ..engines import sidecar as sidecars
    from ..engines.artifacts import converted_path
    from ..engines.select import has_nvidia_gpu, tensorrt_engine_problems

    model = Path(model)
    engine = converted_path(model, "tensorrt", precision)
    if not has_nvidia_gpu():
        return EnsuredEngine(None, False, "no NVIDIA GPU here, so no TensorRT engine to build")
    try:
        sidecars.current_platform()
    except JetracerError as exc:
        return EnsuredEngine(None, False, f"cannot build a TensorRT engine here: {exc}")
    if engine.exists() and not sidecars.sidecar_path(engine).is_file():
        return EnsuredEngine(None, False, f"{engine} exists without a sidecar, so it is not an engine jetracer_trt "
                                          "wrote; it was left alone and not used")
    problems = tensorrt_engine_problems(engine, model, max_batch) if engine.exists() else ["it is missing"]
    if not problems:
        return EnsuredEngine(engine, False, f"{engine.name} is up to date for this GPU, TensorRT and {model.name}")
    why = "; ".join(problems)
    log.info("building %s (%s); this takes minutes on a Jetson", engine, why)
    request = ConvertRequest(source=model, precision=precision, out=engine, calib_dir=calib_dir,
                             max_batch=max_batch, workspace_mb=workspace_mb, force=engine.exists())
    try:
        result = convert("tensorrt", request)
    except JetracerError as exc:
        return EnsuredEngine(None, False, f"building {engine.name} failed: {exc}")
    return EnsuredEngine(result.path, True, f"built {engine.name} in {result.seconds:.0f} s because {why}; "
                                            f"{result.comparison.report()}")


__all__ = ["BACKENDS", "ConvertRequest", "ConvertResult", "EnsuredEngine", "convert", "ensure_engine"]
