"""The JSON written next to every converted GPU engine (``<engine>.json``): what it was built for and from.

A TensorRT plan runs only with the TensorRT version that built it, on the GPU it was built for, and is only as right
as the model it was built from. None of that can be read back from the plan cheaply, so every conversion writes it
here and every load checks it first (``check_sidecar``), refusing with the exact ``jetracer-trt convert ... --force``
command that rebuilds the engine for this machine (``refusal_message``).

Fields (``write_sidecar`` adds the first four):

* ``format``, ``format_version``, ``created`` (UTC, ISO 8601), ``jetracer_trt_version``;
* ``backend`` ("tensorrt" or "torch2trt"), ``precision``, ``max_batch``;
* ``model_contract``: the contract the engine runs by (``contract.py``: task, input size and names, mean/std,
  resize, outputs), the source model's;
* ``trt_version``, ``gpu_name``, ``compute_capability`` (e.g. "8.7") of the machine that built it;
* ``source`` (path as given) and ``source_sha256`` of the FP32 model it was built from;
* ``artifact_sha256`` of the engine file itself, so that an engine and a sidecar that do not belong together
  (a copy from another car, a crash between the two renames) are caught;
* ``builder`` (workspace, flags, timing cache), ``calibration`` (INT8) and ``verification`` (the comparison with
  the source model) for the record.

The conversion pipeline (``convert/pipeline.py``) writes it; ``checked_sidecar`` reads and checks it at load.

Pure Python except ``current_platform``, which imports tensorrt and torch when called.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import JetracerError
from ..fileio import atomic_path
from .base import PRECISIONS

FORMAT = "jetracer_trt.engine_sidecar"
FORMAT_VERSION = 1
REQUIRED_FIELDS = ("backend", "precision", "max_batch", "trt_version", "gpu_name", "compute_capability",
                   "source", "source_sha256", "artifact_sha256")

TENSORRT_INSTALL_HINT = (
    "on a Jetson it comes with JetPack (apt package python3-libnvinfer; a virtual environment needs "
    "--system-site-packages to see it); on an x86 machine with an NVIDIA GPU: pip install tensorrt"
)


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """``<engine>.json``: where the sidecar of ``engine_path`` lives."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def source_hash(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks; JetracerError if it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise JetracerError(f"cannot read {path} to hash it: {exc.strerror or exc}") from None
    return digest.hexdigest()


def write_sidecar(engine_path: str | os.PathLike, fields: dict[str, Any]) -> Path:
    """Writes ``fields`` (plus format, version, creation time, jetracer_trt version) as the sidecar of
    ``engine_path``, atomically; returns the sidecar's path. Paths among the values are written as strings."""
    record = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "jetracer_trt_version": __version__, **fields}
    path = sidecar_path(engine_path)
    text = json.dumps(record, indent=2, sort_keys=True, default=_json_default) + "\n"
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise JetracerError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"sidecar values must be JSON data, got {type(value).__name__}")


def read_sidecar(engine_path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of ``engine_path`` as a dict; JetracerError naming the rebuild command if it is missing or
    unreadable (an engine that cannot be checked is not loaded)."""
    path = sidecar_path(engine_path)
    what = (f"records which GPU, TensorRT version and model {Path(engine_path).name} was built for, "
            "and an engine that cannot be checked is not loaded")
    rebuild = rebuild_command(engine_path, None)
    if not path.is_file():
        raise JetracerError(f"{engine_path} has no sidecar {path.name} (it {what}); rebuild it with: {rebuild}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JetracerError(f"sidecar {path} is unreadable ({exc}); it {what}; rebuild with: {rebuild}") from None
    if not isinstance(data, dict):
        raise JetracerError(f"sidecar {path} holds a JSON {type(data).__name__}, not an object; "
                            f"rebuild with: {rebuild}")
    return data


def check_sidecar(sidecar: dict[str, Any], *, trt_version: str, gpu_name: str, compute_capability: str,
                  source_path: str | os.PathLike | None, artifact_path: str | os.PathLike | None = None) -> list[str]:
    """Human-readable reasons why the engine described by ``sidecar`` must not run here; empty when it may.

    ``trt_version``, ``gpu_name`` and ``compute_capability`` are this machine's (``current_platform``).
    ``source_path``: the model the engine is expected to come from (None: not checked). ``artifact_path``: the
    engine file itself, checked against the hash the sidecar recorded (None: not checked).
    """
    if sidecar.get("format") != FORMAT:
        return [f"the sidecar is not a jetracer_trt engine sidecar (format {sidecar.get('format')!r})"]
    version = sidecar.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        return [f"the sidecar has format version {version!r}, and jetracer_trt {__version__} reads only "
                f"version{'s 1 to' if FORMAT_VERSION > 1 else ''} {FORMAT_VERSION}"]
    missing = [name for name in REQUIRED_FIELDS if name not in sidecar]
    if missing:
        return [f"the sidecar lacks {', '.join(missing)}"]

    problems = []
    built_gpu = (str(sidecar["gpu_name"]), str(sidecar["compute_capability"]))
    if built_gpu != (gpu_name, compute_capability):
        problems.append(f"it was built for another GPU: {built_gpu[0]} (compute capability {built_gpu[1]}), this "
                        f"machine has {gpu_name} (compute capability {compute_capability}); an engine is tuned "
                        "for, and runs only on, the GPU it was built for")
    if str(sidecar["trt_version"]) != trt_version:
        problems.append(f"it was built with TensorRT {sidecar['trt_version']}, this machine has TensorRT "
                        f"{trt_version}; a plan loads only in the TensorRT version that built it")
    if sidecar["precision"] not in PRECISIONS:
        problems.append(f"its precision {sidecar['precision']!r} is none of {', '.join(PRECISIONS)}")
    max_batch = sidecar["max_batch"]
    if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
        problems.append(f"its max_batch {max_batch!r} is not a positive integer")
    if source_path is not None:
        source_path = Path(source_path)
        if not source_path.is_file():
            problems.append(f"the source model {source_path} is not there, so it cannot be checked that the engine "
                            "was built from it")
        elif source_hash(source_path) != sidecar["source_sha256"]:
            problems.append(f"it was built from another model: {source_path} has changed since (the engine was "
                            f"built from {sidecar['source']}, SHA-256 {str(sidecar['source_sha256'])[:12]}...)")
    if artifact_path is not None and source_hash(artifact_path) != sidecar["artifact_sha256"]:
        problems.append(f"the sidecar describes another file than {Path(artifact_path).name} (SHA-256 differs): "
                        "the engine and its sidecar do not belong together")
    return problems


def rebuild_command(engine_path: str | os.PathLike, sidecar: dict[str, Any] | None) -> str:
    """The ``jetracer-trt convert`` command that rebuilds ``engine_path`` as the sidecar describes it
    (placeholders for what an unreadable sidecar cannot tell)."""
    sidecar = sidecar or {}
    parts = ["jetracer-trt convert --backend tensorrt"]
    if sidecar.get("backend") == "torch2trt":
        parts.append("--via torch2trt")
    precision = sidecar.get("precision")
    parts.append(f"--precision {precision if precision in PRECISIONS else '<' + '|'.join(PRECISIONS) + '>'}")
    parts.append(f"--model {sidecar.get('source') or '<model.onnx>'}")
    calib_dir = (sidecar.get("calibration") or {}).get("calib_dir")
    if precision == "int8" and calib_dir:
        parts.append(f"--calib {calib_dir}")
    max_batch = sidecar.get("max_batch")
    if isinstance(max_batch, int) and max_batch > 1:
        parts.append(f"--max-batch {max_batch}")
    parts.append(f"--out {engine_path} --force")
    return " ".join(parts)


def refusal_message(engine_path: str | os.PathLike, problems: list[str], sidecar: dict[str, Any] | None) -> str:
    """The message of an engine that will not be loaded: every problem, then the command that rebuilds it."""
    return (f"refusing to load {engine_path}: {'; '.join(problems)}. Rebuild it for this machine with: "
            f"{rebuild_command(engine_path, sidecar)}")


def checked_sidecar(engine_path: Path, *, backend: str, max_batch: int,
                    source: str | os.PathLike | None) -> dict[str, Any]:
    """The sidecar of ``engine_path`` once it is known that the engine is one for ``backend`` and may run here at
    batches up to ``max_batch`` (built from ``source`` when given); otherwise JetracerError listing every problem
    and the rebuild command. Nothing of TensorRT is loaded before this passes, except to learn its version."""
    if not engine_path.is_file():
        raise JetracerError(f"engine not found: {engine_path}; build one with: "
                            f"{rebuild_command(engine_path, {'backend': backend})}")
    sidecar = read_sidecar(engine_path)
    if sidecar.get("backend", backend) != backend:
        raise JetracerError(f"{engine_path} is a {sidecar['backend']} engine, not a {backend} one: load it with "
                            f"backend {sidecar['backend']}")
    problems = check_sidecar(sidecar, **current_platform(), source_path=source, artifact_path=engine_path)
    if not problems and max_batch > sidecar["max_batch"]:
        problems.append(f"it was built for batches of up to {sidecar['max_batch']}, and {max_batch} were asked for")
    if problems:  # the rebuild command asks for the batch size wanted now, if that is larger
        recorded = sidecar.get("max_batch")
        wanted = {**sidecar, "max_batch": max(max_batch, recorded if isinstance(recorded, int) else 1)}
        raise JetracerError(refusal_message(engine_path, problems, wanted))
    return sidecar


def current_platform() -> dict[str, str]:
    """This machine's ``trt_version``, ``gpu_name`` and ``compute_capability`` (the current CUDA device), the
    keyword arguments ``check_sidecar`` compares with; JetracerError if TensorRT, PyTorch or a GPU is missing."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise JetracerError(f"TensorRT's Python package is not importable ({exc}); {TENSORRT_INSTALL_HINT}") from None
    try:
        import torch
    except ImportError:
        raise JetracerError("the TensorRT backends need PyTorch with CUDA for GPU memory and streams; install the "
                            "PyTorch build for this machine (on a Jetson: NVIDIA's JetPack wheel)") from None
    if not torch.cuda.is_available():
        raise JetracerError("PyTorch sees no CUDA GPU here: TensorRT engines need one (is this the CUDA build of "
                            "PyTorch, and is the GPU visible, e.g. CUDA_VISIBLE_DEVICES?)")
    device = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(device)
    return {"trt_version": str(trt.__version__), "gpu_name": torch.cuda.get_device_name(device),
            "compute_capability": f"{major}.{minor}"}
