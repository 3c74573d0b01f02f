"""What every conversion takes and gives: one request, one result, whatever the backend."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import JetracerError

from ..verify import Comparison


@dataclass
class ConvertRequest:
    """One ``jetracer-trt convert`` run.

    ``source`` is the FP32 model: an ``.onnx`` file (onnxruntime, tensorrt) or a checkpoint ``.pt`` (torch,
    torch2trt). ``calib_dir`` is a dataset (or image folder) whose frames calibrate INT8 and verify the result;
    without it, simulator frames are used.
    """

    source: Path
    out: Path
    precision: str                  # fp32, fp16 or int8
    calib_dir: Path | None = None
    calib_frames: int = 512         # frames used to calibrate INT8 (spread over calib_dir)
    verify_frames: int = 64         # frames the result is checked on against the source
    workspace_mb: int = 1024        # TensorRT builder workspace
    max_batch: int = 1              # the largest batch the result must run
    force: bool = False             # overwrite an existing, valid output
    verbose: bool = False           # list layers and the precision each runs in (TensorRT)


@dataclass
class ConvertResult:
    """What was written and how well it agrees with the source."""

    path: Path
    backend: str
    precision: str
    comparison: Comparison
    seconds: float                  # wall time of the conversion, build and verification included
    files: list[Path] = field(default_factory=list)  # everything written (the model, a sidecar, a timing cache)
    notes: list[str] = field(default_factory=list)   # lines for the user (layer precisions with --verbose, ...)

    def as_dict(self) -> dict:
        return {"path": str(self.path), "backend": self.backend, "precision": self.precision,
                "seconds": round(self.seconds, 2), "files": [str(f) for f in self.files],
                "verification": self.comparison.as_dict()}


def check_output(out: Path, force: bool) -> None:
    """JetracerError unless ``out`` can be written: not a folder, its folder writable, not there (unless ``force``)."""
    if out.is_dir():
        raise JetracerError(f"--out {out} is a folder; give the file name to write")
    if out.exists() and not force:
        raise JetracerError(f"{out} already exists; pass --force to replace it")
    if out.parent.exists() and not out.parent.is_dir():
        raise JetracerError(f"cannot write {out}: {out.parent} is not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JetracerError(f"cannot create the folder of {out}: {exc.strerror or exc}") from None
    if not os.access(out.parent, os.W_OK):
        raise JetracerError(f"cannot write to {out.parent}: permission denied")
