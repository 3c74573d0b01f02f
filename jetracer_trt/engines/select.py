"""``backend auto``: the fastest backend this machine can run for a model, and why it was picked.

Order: a valid TensorRT engine beside the model (its sidecar matches this GPU, this TensorRT and this model), then
the CUDA GPU through PyTorch (an AOTInductor package when one was compiled, else the checkpoint; FP16 with CUDA
graphs), then the CPU through ONNX Runtime (the INT8 model when `jetracer-trt convert` made one, else FP32).
Files are found by the names of ``artifacts.converted_path``; nothing here imports torch or TensorRT unless the
machine has an NVIDIA GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import JetracerError
from .artifacts import checkpoint_path, converted_path


_DIRECT = {".engine": "tensorrt", ".plan": "tensorrt", ".pt2": "torch"}


@dataclass
class Choice:
    backend: str
    model: Path
    why: str
    passed_over: list[str] = field(default_factory=list)  # what was found and not used, with the reason

    def explain(self) -> str:
        skipped = "".join(f"; not used: {line}" for line in self.passed_over)
        return f"backend auto picked {self.backend} with {self.model.name}: {self.why}{skipped}"


def has_nvidia_gpu() -> bool:
    """True when the CUDA driver reports a GPU. Asks the driver (libcuda) directly: no torch import, and a car with
    TensorRT but without PyTorch is still seen as a GPU machine."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        return lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0
    return False


def cuda_available() -> bool:
    """True when PyTorch can use a CUDA GPU (torch is imported only when the driver reports one)."""
    if not has_nvidia_gpu():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def tensorrt_engine_problems(engine: Path, source: Path | None) -> list[str]:
    """Why ``engine`` cannot run here (empty when it can): the same sidecar checks the engine makes at load."""
    from .sidecar import checked_sidecar

    try:
        checked_sidecar(engine, backend="tensorrt", max_batch=1, source=source)
    except JetracerError as exc:
        return [str(exc)]
    return []


def choose_backend(model_path) -> Choice:
    """The backend and file ``backend auto`` runs for ``model_path`` (the FP32 ``.onnx`` or a converted file)."""
    model = Path(model_path)
    direct = _DIRECT.get(model.suffix) or ("torch2trt" if model.name.endswith(".trt.pth") else None)
    if direct:
        return Choice(direct, model, f"{model.name} is a {direct} model")
    source = model.with_suffix(".onnx")
    passed_over: list[str] = []
    gpu = has_nvidia_gpu()
    if gpu:
        for precision in ("int8", "fp16", "fp32"):
            engine = converted_path(source, "tensorrt", precision)
            if not engine.exists():
                continue
            problems = tensorrt_engine_problems(engine, source if source.exists() else None)
            if not problems:
                return Choice("tensorrt", engine, f"a TensorRT {precision} engine built for this GPU", passed_over)
            passed_over.append(f"{engine.name} ({'; '.join(problems)})")
    if gpu and cuda_available():
        package = converted_path(source, "torch", "fp16", "cuda")
        checkpoint = checkpoint_path(source)
        for candidate, what in ((package, "an AOTInductor package"), (checkpoint, "the checkpoint")):
            if candidate.exists():
                return Choice("torch", candidate, f"CUDA GPU without a TensorRT engine: PyTorch FP16 with CUDA graphs "
                              f"from {what}", passed_over)
        passed_over.append(f"CUDA GPU, but no {checkpoint.name} for PyTorch")
    int8 = converted_path(source, "onnxruntime", "int8")
    if model.suffix == ".onnx" and model != int8 and int8.exists():
        return Choice("onnxruntime", int8, "no CUDA GPU: ONNX Runtime with the verified INT8 model (faster than "
                      "FP32 on a CPU)", passed_over)
    return Choice("onnxruntime", model, "ONNX Runtime with the model as given", passed_over)
