"""Checking a converted model against its source: real frames in, per-output errors out, one tolerance per precision.

The conversion pipeline (``convert/pipeline.py``: every ``jetracer-trt convert`` route and ``jetracer-trt export``),
the benchmark and the parity tests use this module, so "agrees with the source" means the same thing everywhere:

* frames: ``verification_frames`` -- images spread over a dataset (or a plain image folder, or a pose dataset),
  else simulator frames of a plain and a randomized track, or for a pose model synthetic scenes of people
  (``pose.data``, seeds from ``pose.data.CONVERSION_SEEDS``); each model resizes them by its own contract;
* reference: the FP32 source model on those frames, through an inference engine like every candidate (ONNX Runtime
  on CPU for an ``.onnx`` source, PyTorch eager FP32 for a checkpoint: ours or, for pose, trt_pose's weights);
* ``compare``: the worst frame's and the mean |difference| of every output, each judged by the bounds the
  tolerance table of the model's task (``tolerances_for``) gives the candidate's precision: a candidate is accepted
  only when no output is off by more than ``max_abs`` on any frame and none by more than ``mean_abs`` on average.
  Outputs are the columns of a road-following model's one output tensor (x and y), or the whole tensors of a model
  with several (a pose model's ``cmap`` and ``paf``: the largest |difference| of any element of a frame, and the
  mean over all elements of all frames).

No torch here: a car without PyTorch can still verify an ONNX Runtime or TensorRT conversion.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence, Union

import numpy as np

from .contract import POSE, ROAD_FOLLOWING, ModelContract
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

# A pose model's outputs are maps (cmap peaks near 1 where a keypoint is, the parser's thresholds 0.1; paf unit
# vectors along limbs), judged element by element: the worst element of any frame and the mean of all elements.
# Measured with the shipped pose model on the 64 verification scenes (models/POSE_MODEL_CARD.md): FP16 (PyTorch
# half on a CPU; not yet measured on a GPU) max 2.8e-3, mean 1.4e-5; ONNX Runtime INT8 max 0.13, mean 4.1e-3, which
# moved PCK@0.1 on the 1000 test scenes from 0.835 to 0.813. The bounds leave a factor of two to four.
POSE_TOLERANCES = {
    "fp32": TOLERANCES["fp32"],
    "fp16": Tolerance("every layer rounded to about 3 significant digits (measured: max 2.8e-3, mean 1.4e-5)",
                      1e-2, 2e-4),
    "int8": Tolerance("256 levels per tensor (measured: max 0.13, mean 4.1e-3 of 64 held-out scenes' maps); no "
                      "element may move by three times the parser's 0.1 thresholds", 0.3, 0.01),
}
_TOLERANCES_BY_TASK = {ROAD_FOLLOWING: TOLERANCES, POSE: POSE_TOLERANCES}

# a model's outputs: one (N, columns) array (road following), or (N, ...) arrays by output name (a pose model)
Outputs = Union[np.ndarray, Mapping[str, np.ndarray]]


def tolerances_for(task: str) -> dict[str, Tolerance]:
    """The tolerance table of a model's task (a task without its own table is judged like road following)."""
    return _TOLERANCES_BY_TASK.get(task, TOLERANCES)


# ---------------------------------------------------------------------------------------------------------------------
# Frames


def verification_frames(frames_dir: str | os.PathLike | None, count: int = VERIFY_FRAMES,
                        task: str = ROAD_FOLLOWING) -> np.ndarray:
    """``count`` RGB uint8 frames as one (N, H, W, 3) array: spread over a dataset (or a folder of images: those
    of another size than the first are resized to it), else from the simulator, or for ``task`` pose synthetic
    scenes of people. JetracerError when fewer than ``MIN_FRAMES`` usable frames can be found: verifying on a
    handful of frames would prove little."""
    if frames_dir is None and task == POSE:
        from .pose.data import CONVERSION_SEEDS, render_scene

        frames = [render_scene(seed).image for seed in range(CONVERSION_SEEDS, CONVERSION_SEEDS + count)]
        source = "synthetic pose scenes"
    elif frames_dir is None:
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
    from .pose.data import is_pose_dataset, read_pose_dataset
    from .preprocess import resize

    try:
        paths = [s.image_path for s in (read_pose_dataset if is_pose_dataset(root) else read_dataset)(root)[0]]
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


def engine_outputs(engine, frames: np.ndarray | Sequence[np.ndarray]) -> Outputs:
    """Any ``InferenceEngine``'s float32 outputs on ``frames``, in batches of its ``max_batch``: (N, outputs) for a
    model of column outputs (road following), ``{name: (N, ...)}`` for one of output tensors (a pose model's
    ``cmap`` and ``paf``)."""
    if not engine.contract.tensor_outputs:
        return np.concatenate([np.array(engine.infer_batch(frames[start:start + engine.max_batch]), dtype=np.float32)
                               for start in range(0, len(frames), engine.max_batch)], axis=0)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in engine.contract.output_tensors}
    for start in range(0, len(frames), engine.max_batch):
        for name, value in engine.infer_batch_tensors(frames[start:start + engine.max_batch]).items():
            chunks[name].append(np.array(value, dtype=np.float32))  # a copy: the engine reuses its buffers
    return {name: np.concatenate(values, axis=0) for name, values in chunks.items()}


def reference_outputs(source: str | os.PathLike, frames: np.ndarray, max_batch: int = 8) -> Outputs:
    """The source model's outputs on ``frames`` (``engine_outputs``): ONNX Runtime on CPU for ``.onnx`` (an INT8 one
    too), PyTorch eager FP32 on CPU for a checkpoint (``.pt``/``.pth``, pose ones and trt_pose's weights too)."""
    from .engines import create_engine

    backend = "onnxruntime" if Path(source).suffix == ".onnx" else "torch"
    options = ({"providers": ["CPUExecutionProvider"]} if backend == "onnxruntime"
               else {"device": "cpu", "precision": "fp32"})
    with create_engine(backend, source, max_batch=max_batch, **options) as engine:
        return engine_outputs(engine, frames)


def tensor_model_outputs(model, frames: np.ndarray, contract: ModelContract | None = None,
                         batch: int = 8) -> dict[str, np.ndarray]:
    """The outputs of a model with several output tensors (a pose model: ``cmap``, ``paf``) on ``frames``, by name:
    a model file through ``reference_outputs`` (its engine on the CPU), or a torch module given as it is (then
    ``contract`` is needed: the frames are normalised by its ``Preprocessor``), in PyTorch eager FP32 on its
    device."""
    if isinstance(model, (str, os.PathLike)):
        outputs = reference_outputs(model, frames, batch)
        if not isinstance(outputs, Mapping):
            raise JetracerError(f"{model} gives the columns of one output tensor, not several output tensors")
        return outputs
    if contract is None:
        raise JetracerError("a torch module's outputs need its model contract")
    import torch

    from .preprocess import Preprocessor

    network = model.float().eval()
    device = next(network.parameters()).device
    preprocess = Preprocessor(contract)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in contract.output_tensors}
    for start in range(0, len(frames), batch):
        with torch.inference_mode():
            values = network(torch.from_numpy(preprocess.batch(frames[start:start + batch])).to(device))
        for name, value in zip(chunks, values, strict=True):
            chunks[name].append(value.float().cpu().numpy())
    return {name: np.concatenate(values) for name, values in chunks.items()}


def save_outputs(path: str | os.PathLike, outputs: Outputs) -> None:
    """Writes ``outputs`` (``engine_outputs``'s: an array, or arrays by name) to the ``.npz`` file ``path``, which
    ``load_outputs`` reads back as they were (for a check that runs in a child process)."""
    np.savez(path, **(dict(outputs) if isinstance(outputs, Mapping) else {_COLUMNS: outputs}))


def load_outputs(path: str | os.PathLike) -> Outputs:
    """What ``save_outputs`` wrote to ``path``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    return arrays[_COLUMNS] if set(arrays) == {_COLUMNS} else arrays


_COLUMNS = "__columns__"  # save_outputs' name for the one array of column outputs


def onnx_precision(path: str | os.PathLike) -> str:
    """What an ONNX model computes in: its ``precision`` metadata (``jetracer-trt convert`` writes it), else int8
    when it has quantized operators, else fp32."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    recorded = {p.key: p.value for p in proto.metadata_props}.get("precision")
    if recorded:
        return recorded
    quantized = {node.op_type for node in proto.graph.node} & {"QLinearConv", "QLinearMatMul", "ConvInteger",
                                                              "MatMulInteger", "QuantizeLinear"}
    return "int8" if quantized else "fp32"


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


def compare(reference: Outputs, candidate: Outputs, precision: str, names: Sequence[str] = (),
            tolerances: Mapping[str, Tolerance] | None = None) -> Comparison:
    """Per-output worst-frame and mean |candidate - reference| (NaN or inf count as infinitely wrong), each judged
    by the bounds of ``precision`` in ``tolerances`` (default ``TOLERANCES``, road following's; see
    ``tolerances_for``): every output, both statistics. Outputs are the columns of (N, columns) arrays, named by
    ``names`` (the model contract's ``outputs``), or the (N, ...) arrays of mappings by output name, each judged
    over all its elements."""
    tolerances = TOLERANCES if tolerances is None else tolerances
    if precision not in tolerances:
        raise JetracerError(f"unknown precision {precision!r}; choose one of {', '.join(tolerances)}")
    if isinstance(reference, Mapping) or isinstance(candidate, Mapping):
        if not (isinstance(reference, Mapping) and isinstance(candidate, Mapping)) or set(reference) != set(candidate):
            raise JetracerError(f"outputs {_output_list(candidate)} cannot be compared with {_output_list(reference)}")
        diffs = {name: _abs_diff(reference[name], candidate[name]) for name in reference}
    else:
        diff = _abs_diff(reference, candidate)
        diffs = {name: diff[:, i:i + 1] for i, name in enumerate(output_names(diff.shape[1], names))}
    frames = {len(diff) for diff in diffs.values()}
    if len(frames) != 1:
        raise JetracerError(f"the outputs cover different numbers of frames: {sorted(frames)}")
    max_abs = {name: float(diff.max()) for name, diff in diffs.items()}
    mean_abs = {name: float(diff.mean()) for name, diff in diffs.items()}
    worst = {name: int(diff.max(axis=1).argmax()) for name, diff in diffs.items()}
    bounds = tolerances[precision]
    failures = []
    for name in diffs:
        if not max_abs[name] <= bounds.max_abs:
            failures.append(f"{name} max {max_abs[name]:.2e} > {bounds.max_abs:g} (frame {worst[name]})")
        if not mean_abs[name] <= bounds.mean_abs:
            failures.append(f"{name} mean {mean_abs[name]:.2e} > {bounds.mean_abs:g}")
    rule = f"every output: max |diff| <= {bounds.max_abs:g}, mean <= {bounds.mean_abs:g}"
    return Comparison(precision, frames.pop(), max_abs, mean_abs, not failures, rule, failures, worst)


def _output_list(outputs: Outputs) -> str:
    if isinstance(outputs, Mapping):
        return ", ".join(f"{name} {np.shape(value)}" for name, value in outputs.items())
    return f"of shape {np.shape(outputs)}"


def _abs_diff(reference, candidate) -> np.ndarray:
    """(N, elements) float64 |candidate - reference|, non-finite values as inf."""
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise JetracerError(f"outputs of shape {candidate.shape} cannot be compared with {reference.shape}")
    if reference.ndim == 0 or not len(reference):
        raise JetracerError("there are no outputs to compare")
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64)).reshape(len(reference), -1)
    diff[~np.isfinite(diff)] = np.inf
    return diff


def require_match(comparison: Comparison, what: str, out: str | os.PathLike) -> None:
    """Raises JetracerError naming the error per output when ``comparison`` failed; ``out`` was not written."""
    if not comparison.ok:
        raise JetracerError(f"{what} disagrees with the source model: {comparison.report()}; {out} was not written")
    log.info("%s agrees with the source model: %s", what, comparison.report())
