"""``backend auto``: the fastest backend this machine can run for a model, and why it was picked.

Order: a valid TensorRT engine beside the model (its sidecar matches this GPU, this TensorRT and this model), then
the CUDA GPU through PyTorch (an AOTInductor package when one was compiled, else the checkpoint; FP16 with CUDA
graphs), then the CPU through ONNX Runtime (the INT8 model when `jetracer-trt convert` made one, else FP32).
Files are found by the names of ``artifacts.converted_path``; nothing here imports torch or TensorRT unless the
machine has an NVIDIA GPU.

A file found beside the model is used only when it can be shown to come from that model, by the SHA-256 each file
records of its source (the table in ``artifacts.py``):

* a TensorRT engine: its sidecar's ``source_sha256`` is the model's SHA-256 (``sidecar.check_sidecar``);
* the INT8 ONNX: its ``source_sha256`` is the model's SHA-256;
* the checkpoint ``<stem>.pt``: its SHA-256 is the ``checkpoint_sha256`` the model (the exported ONNX) records;
* an AOTInductor package: the checkpoint SHA-256 it records is the ``checkpoint_sha256`` the model records.

Anything else (a different hash, a file that records none because it was made before these records existed, a
model that records no checkpoint) is passed over with the reason and the command that remakes it, in
``Choice.passed_over`` and logged as a warning, and the next candidate is tried: in the end the model as given.
A model file given directly (``.engine``, ``.pt2``, ``.trt.pth``, ``.pt``) is run as it is.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import JetracerError
from .artifacts import (ONNX_CHECKPOINT_SHA256, ONNX_SOURCE_SHA256, PACKAGE_SOURCE_SHA256, checkpoint_path,
                        converted_path, recorded_hash, short_hash)

log = logging.getLogger(__name__)

_DIRECT = {".engine": "tensorrt", ".plan": "tensorrt", ".pt2": "torch", ".pt": "torch", ".pth": "torch"}


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


def tensorrt_engine_problems(engine: Path, source: Path | None, max_batch: int = 1) -> list[str]:
    """Why ``engine`` cannot run here at batches up to ``max_batch`` (empty when it can): the same sidecar checks
    the engine makes at load."""
    from .sidecar import checked_sidecar

    try:
        checked_sidecar(engine, backend="tensorrt", max_batch=max_batch, source=source)
    except JetracerError as exc:
        return [str(exc)]
    return []


class _Model:
    """The model ``backend auto`` was given and the SHA-256s its converted files are checked against, each computed
    (or read) once, when first asked for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sha256: str | None = None
        self._checkpoint: tuple[str | None, str | None] | None = None

    def sha256(self) -> str | None:
        """The model file's SHA-256; None when it is not there (then nothing can be shown to come from it)."""
        from .sidecar import source_hash

        if self._sha256 is None and self.path.is_file():
            self._sha256 = source_hash(self.path)
        return self._sha256

    def checkpoint_sha256(self) -> tuple[str | None, str | None]:
        """(the SHA-256 of the checkpoint the model was exported from, None) or (None, why it is not known)."""
        if self._checkpoint is None:
            self._checkpoint = (recorded_hash(self.path, ONNX_CHECKPOINT_SHA256) if self.path.is_file()
                                else (None, f"{self.path} is not there"))
        return self._checkpoint


def int8_problem(int8: Path, model: _Model) -> str | None:
    """Why the INT8 ONNX ``int8`` must not stand in for ``model`` (None when it may)."""
    remake = (f"remake it with: jetracer-trt convert --backend onnxruntime --precision int8 --model {model.path} "
              f"--out {int8} --force")
    expected = model.sha256()
    if expected is None:
        return f"{int8.name}: the model {model.path} is not there, so it cannot be shown that {int8.name} comes from it"
    recorded, why_not = recorded_hash(int8, ONNX_SOURCE_SHA256)
    if recorded is None:
        return f"{why_not}, so it cannot be shown to come from {model.path.name}; {remake}"
    if recorded != expected:
        return (f"{int8.name} was made from another model than {model.path.name} (it records SHA-256 "
                f"{short_hash(recorded)}, {model.path.name} has {short_hash(expected)}); {remake}")
    return None


def checkpoint_problem(checkpoint: Path, model: _Model) -> str | None:
    """Why the checkpoint ``checkpoint`` must not stand in for ``model`` (None when it may)."""
    from .sidecar import source_hash

    expected, why_not = model.checkpoint_sha256()
    export = f"jetracer-trt export --checkpoint {checkpoint} --out {model.path}"
    if expected is None:
        return (f"{checkpoint.name}: {why_not}, so it cannot be shown that {checkpoint.name} is the network "
                f"{model.path.name} holds; export the model again from the checkpoint to drive: {export}")
    actual = source_hash(checkpoint)
    if actual != expected:
        return (f"{checkpoint.name} is not the checkpoint {model.path.name} was exported from ({model.path.name} "
                f"records SHA-256 {short_hash(expected)}, {checkpoint.name} has {short_hash(actual)}); if the "
                f"checkpoint is the model to drive, export it again: {export}")
    return None


def package_problem(package: Path, model: _Model) -> str | None:
    """Why the AOTInductor package ``package`` must not stand in for ``model`` (None when it may): it must have
    been compiled from the checkpoint the model was exported from."""
    checkpoint = checkpoint_path(model.path)
    recompile = (f"recompile it with: jetracer-trt convert --backend torch --precision {package.name.split('.')[1]} "
                 f"--model {checkpoint} --out {package} --force")
    expected, why_not = model.checkpoint_sha256()
    if expected is None:
        return (f"{package.name}: {why_not}, so it cannot be shown that {package.name} holds the network "
                f"{model.path.name} holds; export it again: jetracer-trt export --checkpoint {checkpoint} "
                f"--out {model.path}")
    recorded, why_not = recorded_hash(package, PACKAGE_SOURCE_SHA256)
    if recorded is None:
        return f"{why_not}, so it cannot be shown to come from {model.path.name}'s checkpoint; {recompile}"
    if recorded != expected:
        return (f"{package.name} was compiled from another checkpoint than the one {model.path.name} was exported "
                f"from (it records SHA-256 {short_hash(recorded)}, {model.path.name} records "
                f"{short_hash(expected)}); {recompile}")
    return None


def choose_backend(model_path) -> Choice:
    """The backend and file ``backend auto`` runs for ``model_path`` (the FP32 ``.onnx`` or a converted file)."""
    model = Path(model_path)
    direct = "torch2trt" if model.name.endswith(".trt.pth") else _DIRECT.get(model.suffix)
    if direct:
        return Choice(direct, model, f"{model.name} is a {direct} model")
    source = _Model(model.with_suffix(".onnx"))
    passed_over: list[str] = []

    def pass_over(reason: str) -> None:
        log.warning("backend auto does not use %s", reason)
        passed_over.append(reason)

    gpu = has_nvidia_gpu()
    if gpu:
        for precision in ("int8", "fp16", "fp32"):
            engine = converted_path(source.path, "tensorrt", precision)
            if not engine.exists():
                continue
            problems = tensorrt_engine_problems(engine, source.path)
            if not problems:
                return Choice("tensorrt", engine, f"a TensorRT {precision} engine built for this GPU and "
                              f"{source.path.name}", passed_over)
            pass_over(f"{engine.name} ({'; '.join(problems)})")
    if gpu and cuda_available():
        package = converted_path(source.path, "torch", "fp16", "cuda")
        checkpoint = checkpoint_path(source.path)
        found = False
        for candidate, what, problem in ((package, "an AOTInductor package", package_problem),
                                         (checkpoint, "the checkpoint", checkpoint_problem)):
            if not candidate.exists():
                continue
            found = True
            reason = problem(candidate, source)
            if reason is None:
                return Choice("torch", candidate, f"CUDA GPU without a TensorRT engine: PyTorch FP16 with CUDA graphs "
                              f"from {what} of {source.path.name}", passed_over)
            pass_over(reason)
        if not found:
            passed_over.append(f"CUDA GPU, but no {checkpoint.name} for PyTorch")
    int8 = converted_path(source.path, "onnxruntime", "int8")
    if model.suffix == ".onnx" and model != int8 and int8.exists():
        reason = int8_problem(int8, source)
        if reason is None:
            return Choice("onnxruntime", int8, f"ONNX Runtime with the INT8 model made from {source.path.name} "
                          "(the SHA-256 it records matches; faster than FP32 on a CPU)", passed_over)
        pass_over(reason)
    return Choice("onnxruntime", model, "ONNX Runtime with the model as given", passed_over)
