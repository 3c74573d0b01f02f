"""Checking a converted model against its source: real frames in, per-output errors out, one tolerance per precision.

The conversion pipeline (``convert/pipeline.py``: every ``jetracer-trt convert`` route and ``jetracer-trt export``),
the benchmark and the parity tests use this module, so "agrees with the source" means the same thing everywhere:

* frames: ``verification_frames`` -- images spread over a dataset (or a plain image folder), else simulator frames
  of a plain and a randomized track; each model resizes them by its own contract;
* reference: the FP32 source model on those frames (ONNX Runtime on CPU for an ``.onnx`` source, PyTorch eager FP32
  for a checkpoint);
* ``compare``: the worst frame's and the mean |difference| of every output (x and y, each column of the
  outputs), each judged by the bounds ``TOLERANCES`` gives the candidate's precision: a candidate is accepted only
  when no output is off by more than ``max_abs`` on any frame and none by more than ``mean_abs`` on average.

No torch here: a car without PyTorch can still verify an ONNX Runtime or TensorRT conversion.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from .errors import JetracerError

log = logging.getLogger(__name__)

MIN_FRAMES = 16
VERIFY_FRAMES = 32
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class Tolerance(NamedTuple):
    """The bounds of one precision, applied to every output: ``max_abs`` on the worst frame, ``mean_abs`` on the
    mean over the frames. ``why`` says where the numbers come from."""

    why: str
    max_abs: float
    mean_abs: float


# The one table of what "agrees with the source" means. Steering is steering_gain (1.0 by default) times x, so a
# bound on x is a bound on the steering sent on a frame; y is held to the same bounds (every output is).
TOLERANCES = {
    "fp32": Tolerance("the same arithmetic: must reproduce the source up to summation order", 1e-4, 2e-5),
    "fp16": Tolerance("every layer rounded to about 3 significant digits (measured on a GPU: mean |dx| 8e-5)",
                      1e-2, 2e-3),
    "int8": Tolerance("256 levels per tensor (the shipped CPU model: worst frame 0.010, mean 0.0022 of x on 600 "
                      "held-out frames); no frame may steer more than 0.1 of full lock away from the source",
                      0.1, 0.02),
}


# ---------------------------------------------------------------------------------------------------------------------
# Frames


def verification_frames(frames_dir: str | os.PathLike | None, count: int = VERIFY_FRAMES) -> np.ndarray:
    """``count`` RGB uint8 frames as one (N, H, W, 3) array: spread over a dataset (or a folder of images: those
    of another size than the first are resized to it), else from the simulator. JetracerError when fewer than
    ``MIN_FRAMES`` usable frames can be found: verifying on a handful of frames would prove little."""
    if frames_dir is None:
        frames = _simulator_frames(count)
        source = "the simulator"
    else:
        frames = _folder_frames(Path(frames_dir), count)
        source = str(frames_dir)
    if len(frames) < MIN_FRAMES:
        raise JetracerError(f"only {len(frames)} usable frames in {source}; verification needs at least {MIN_FRAMES}")
    return np.stack(frames)


def _simulator_frames(count: int) -> list[np.ndarray]:
    from .sim import sample_frames

    half = count // 2  # plain and randomised (lighting, colours) tracks: both kinds the model will see
    return (list(sample_frames(half, seed=0, randomize=False))
            + list(sample_frames(count - half, seed=1, randomize=True)))


def _folder_frames(root: Path, count: int) -> list[np.ndarray]:
    from .dataset import load_image, read_dataset
    from .preprocess import resize

    try:
        paths = [s.image_path for s in read_dataset(root)[0]]
    except JetracerError:
        if not root.is_dir():
            raise
        paths = sorted(p for p in root.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)  # a plain image folder
        if not paths:
            raise
    picks = sorted({int(round(i)) for i in np.linspace(0, len(paths) - 1, num=min(count, len(paths)))}) if paths else []
    frames = []
    for index in picks:
        try:
            frame = load_image(paths[index])
        except JetracerError as exc:
            log.warning("%s; skipped for verification", exc)
            continue
        frames.append(resize(frame, (frames[0].shape[1], frames[0].shape[0])) if frames else frame)
    return frames


# ---------------------------------------------------------------------------------------------------------------------
# Outputs


def engine_outputs(engine, frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """(N, outputs) float32 of any ``InferenceEngine`` on ``frames``, in batches of its ``max_batch``."""
    out = []
    for start in range(0, len(frames), engine.max_batch):
        out.append(np.array(engine.infer_batch(frames[start:start + engine.max_batch]), dtype=np.float32))
    return np.concatenate(out, axis=0)


def reference_outputs(source: str | os.PathLike, frames: np.ndarray) -> np.ndarray:
    """The FP32 source model's outputs on ``frames``: ONNX Runtime on CPU for ``.onnx``, PyTorch eager FP32 on CPU
    for a checkpoint (``.pt``/``.pth``)."""
    from .engines import create_engine

    backend = "onnxruntime" if Path(source).suffix == ".onnx" else "torch"
    options = ({"providers": ["CPUExecutionProvider"]} if backend == "onnxruntime"
               else {"device": "cpu", "precision": "fp32"})
    with create_engine(backend, source, max_batch=8, **options) as engine:
        return engine_outputs(engine, frames)


@dataclass
class Comparison:
    """How a candidate's outputs differ from the reference's, and whether that is within the tolerance."""

    precision: str
    frames: int
    max_abs: dict[str, float]   # per output name (x, y): the worst frame
    mean_abs: dict[str, float]  # per output name: the mean over the frames
    ok: bool
    rule: str                   # the tolerance in words, e.g. "every output: max |diff| <= 1e-4, mean <= 2e-5"
    failures: list[str] = field(default_factory=list)  # each bound broken, e.g. "x max 6.0e-01 > 0.1 (frame 3)"
    worst_frame: dict[str, int] = field(default_factory=dict)  # per output name: the frame of its max |diff|

    def report(self) -> str:
        per_output = ", ".join(f"{name} max {self.max_abs[name]:.2e} mean {self.mean_abs[name]:.2e}"
                               for name in self.max_abs)
        verdict = "pass" if self.ok else f"FAIL: {'; '.join(self.failures)}"
        return f"{per_output} over {self.frames} frames ({self.rule}: {verdict})"

    def as_dict(self) -> dict:
        return {"precision": self.precision, "frames": self.frames, "max_abs": self.max_abs,
                "mean_abs": self.mean_abs, "worst_frame": self.worst_frame, "ok": self.ok, "rule": self.rule,
                "failures": self.failures}


def output_names(columns: int, names: Sequence[str] = ()) -> list[str]:
    """The names of ``columns`` output columns: ``names`` (a model contract's ``outputs``: x, y), then ``out<i>``
    for any column beyond them, so that every column is judged and named."""
    names = [str(n) for n in names][:columns]
    return names + [f"out{i}" for i in range(len(names), columns)]


def compare(reference: np.ndarray, candidate: np.ndarray, precision: str, names: Sequence[str] = ()) -> Comparison:
    """Per-output worst-frame and mean |candidate - reference| (NaN or inf count as infinitely wrong), each judged
    by the bounds of ``precision`` in ``TOLERANCES``: every output, both statistics. ``names``: the outputs'
    names (the model contract's ``outputs``)."""
    if precision not in TOLERANCES:
        raise JetracerError(f"unknown precision {precision!r}; choose one of {', '.join(TOLERANCES)}")
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise JetracerError(f"outputs of shape {candidate.shape} cannot be compared with {reference.shape}")
    if reference.ndim == 0 or not len(reference):
        raise JetracerError("there are no outputs to compare")
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64)).reshape(len(reference), -1)
    diff[~np.isfinite(diff)] = np.inf
    names = output_names(diff.shape[1], names)
    max_abs = {name: float(diff[:, i].max()) for i, name in enumerate(names)}
    mean_abs = {name: float(diff[:, i].mean()) for i, name in enumerate(names)}
    worst = {name: int(diff[:, i].argmax()) for i, name in enumerate(names)}
    bounds = TOLERANCES[precision]
    failures = []
    for name in names:
        if not max_abs[name] <= bounds.max_abs:
            failures.append(f"{name} max {max_abs[name]:.2e} > {bounds.max_abs:g} (frame {worst[name]})")
        if not mean_abs[name] <= bounds.mean_abs:
            failures.append(f"{name} mean {mean_abs[name]:.2e} > {bounds.mean_abs:g}")
    rule = f"every output: max |diff| <= {bounds.max_abs:g}, mean <= {bounds.mean_abs:g}"
    return Comparison(precision, int(len(reference)), max_abs, mean_abs, not failures, rule, failures, worst)


def require_match(comparison: Comparison, what: str, out: str | os.PathLike) -> None:
    """Raises JetracerError naming the error per output when ``comparison`` failed; ``out`` was not written."""
    if not comparison.ok:
        raise JetracerError(f"{what} disagrees with the source model: {comparison.report()}; {out} was not written")
    log.info("%s agrees with the source model: %s", what, comparison.report())
