"""``jetracer-trt convert --backend torch``: a checkpoint -> an AOTInductor package (``.pt2``) for this machine.

The model is exported with ``torch.export`` (batch dimension dynamic from 1 to ``max(2, max_batch)``) and compiled
ahead of time by AOTInductor for CUDA when PyTorch sees a GPU (FP32 or FP16: model and input in half, channels_last),
else for the CPU (FP32 only). Loading the package takes seconds, so a car without TensorRT starts quickly instead of
compiling at start-up. The pipeline (``pipeline.py``) checks the package through ``TorchEngine`` against the FP32
checkpoint on real frames and writes it only if it agrees within the tolerance of its precision. The check runs in
a child process: loading a package can crash the process that loads it (seen with PyTorch 2.11.0+cu130 on an H200
machine: even a minimal static FP32 package, for CUDA or for the CPU, died with SIGSEGV inside
``aoti_load_package``'s C++ loader, in a fresh process too), and that must end as a clear error with nothing
written, not as a dead (or hung) ``convert``. Its precision, device, input layout and model contract are stored in
the package's own metadata (``AOTICompiledModel.get_metadata()``), which ``TorchEngine`` reads, with the
checkpoint's name and SHA-256 (``artifacts.PACKAGE_SOURCE_SHA256``), which ``backend auto`` compares with the
checkpoint the ONNX model records before it runs the package in that model's place.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from .. import verify
from ..contract import CONTRACT_KEY, ModelContract, contract_from_record
from ..engines.artifacts import converted_path
from ..errors import JetracerError
from .calibration import FrameSplit
from .pipeline import Build, ConvertRequest, Loaded, Route

log = logging.getLogger(__name__)

# Loading a package takes seconds to a minute (49 s for ResNet18 on the H200 machine); a child still busy after this
# long is stuck, and convert must end with an error rather than wait forever.
CHILD_TIMEOUT_S = 600


class TorchPackage(Route):
    command = "--backend torch"
    backend = "torch"
    what = "the AOTInductor package"
    precisions = ("fp32", "fp16")
    sources = (".pt", ".pth")
    source_kind = "a PyTorch checkpoint (.pt, .pth): pass the .pt the ONNX model was exported from"

    def default_out(self, source: Path, precision: str) -> Path:
        return converted_path(source, self.backend, precision, _device())

    def precision_hint(self, precision: str) -> str:
        if precision == "int8":
            return "for INT8 use --backend onnxruntime (CPU) or --backend tensorrt (GPU)"
        return super().precision_hint(precision)

    def check(self, request: ConvertRequest) -> None:
        if request.out.suffix != ".pt2":
            raise JetracerError(f"an AOTInductor package is a .pt2 file; --out {request.out} should end in .pt2")
        if request.precision == "fp16" and _device() != "cuda":
            raise JetracerError("an FP16 torch package needs a CUDA GPU, and PyTorch sees none here; use --precision "
                                "fp32 for the CPU (or --backend onnxruntime --precision int8 for a faster CPU model)")

    def build(self, request: ConvertRequest, contract: ModelContract, frames: FrameSplit, out: Path,
              work: Path) -> Build:
        import torch

        from ..engines.artifacts import PACKAGE_SOURCE_SHA256
        from ..engines.sidecar import source_hash
        from ..engines.torch_engine import META_CHANNELS_LAST, META_PRECISION, load_network

        device = _device()
        channels_last = device == "cuda"  # cuDNN's FP16 convolutions prefer NHWC; the CPU path stages plain NCHW
        metadata = {META_PRECISION: request.precision, META_CHANNELS_LAST: "1" if channels_last else "0",
                    CONTRACT_KEY: contract.to_json(), "jetracer_device": device,
                    "jetracer_source": request.source.name, PACKAGE_SOURCE_SHA256: source_hash(request.source),
                    "jetracer_torch": str(torch.__version__)}
        max_batch = max(2, request.max_batch)
        log.info("compiling %s for %s %s with AOTInductor (batches 1-%d); this takes a few minutes",
                 request.source, device, request.precision, max_batch)
        _compile(load_network(request.source)[0], out, contract, device, request.precision, channels_last,
                 max_batch, metadata)
        return Build(notes=[f"compiled for {device}; batches 1 to {max_batch}"])

    def run_result(self, request: ConvertRequest, candidate: Path, frames: np.ndarray) -> Loaded:
        """The package run by ``TorchEngine`` in a child process (loading one can crash the process)."""
        work = candidate.parent
        np.save(work / "frames.npy", frames)
        command = [sys.executable, "-m", __name__, str(candidate), str(work / "frames.npy"),
                   str(work / "outputs.npz"), _device(), request.precision, str(request.max_batch)]
        report = json.loads(run_child(command, "loading and running the compiled package",
                                      _child_env()).strip().splitlines()[-1])
        return Loaded(verify.load_outputs(work / "outputs.npz"), report["precision"],
                      contract_from_record(report, candidate.name), [f"ran as {report['engine']}"])


ROUTE = TorchPackage()
convert = ROUTE.convert


def _device() -> str:
    """Where a package compiled here runs: CUDA when PyTorch sees a GPU, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _compile(model, package: Path, contract: ModelContract, device: str, precision: str, channels_last: bool,
             max_batch: int, metadata: dict[str, str]) -> None:
    """torch.export with a dynamic batch, then AOTInductor into ``package``."""
    import torch

    dtype = torch.float16 if precision == "fp16" else torch.float32
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, dtype=dtype).to(memory_format=memory_format)
    height, width = contract.input_height, contract.input_width
    # a batch of 2 as the example: export would specialise a batch of 1 as a constant
    example = torch.zeros((2, 3, height, width), dtype=dtype, device=device).to(memory_format=memory_format)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    try:
        with torch.no_grad():
            exported = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch._inductor.aoti_compile_and_package(exported, package_path=str(package),
                                                 inductor_configs={"aot_inductor.metadata": metadata})
    except Exception as exc:  # noqa: BLE001 - export and Inductor raise many types; say which step failed
        text = str(exc).strip().splitlines()
        raise JetracerError(f"AOTInductor could not compile the model for {device}: "
                            f"{text[0][:300] if text else type(exc).__name__}") from None


def run_child(command: list[str], what: str, env: dict[str, str] | None = None,
              timeout_s: float = CHILD_TIMEOUT_S) -> str:
    """Runs ``command``; its stdout, or JetracerError naming the signal, the time-out or the child's last error
    line."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise JetracerError(f"{what} had not finished after {timeout_s:.0f} s in this PyTorch {_torch_version()} "
                            "and was stopped; nothing was written. Try another PyTorch version, or use --backend "
                            "onnxruntime / tensorrt") from None
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        raise JetracerError(f"{what} crashed ({name}) in this PyTorch {_torch_version()}; nothing was written. "
                            "Try another PyTorch version, or use --backend onnxruntime / tensorrt")
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {result.returncode}"
        raise JetracerError(f"{what} failed: {detail.removeprefix('error: ')}")
    return result.stdout


def _child_env() -> dict[str, str]:
    """This environment, with the folder this jetracer_trt was imported from first on PYTHONPATH (it may not be
    installed, and the child may start in another folder)."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def _child_main(argv: list[str]) -> int:
    """The child of ``TorchPackage.run_result``: package, frames.npy, outputs.npz, device, precision, max_batch."""
    from ..engines.torch_engine import TorchEngine

    package, frames_path, outputs_path, device, precision, max_batch = argv
    try:
        with TorchEngine(package, max_batch=int(max_batch), device=device, precision=precision) as engine:
            engine.warmup()
            verify.save_outputs(outputs_path, verify.engine_outputs(engine, np.load(frames_path)))
            print(json.dumps({"engine": engine.describe(), "precision": engine.precision,
                              CONTRACT_KEY: engine.contract.as_dict()}))
    except JetracerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
