"""``jetracer-trt benchmark``'s core: how fast each inference backend runs the road-following model (or the pose
model) on this machine, against PyTorch eager FP32 measured in the same run. No ROS, and no torch unless a torch
configuration runs (or ``random_pose_models`` makes a network).

For every batch size N, each configuration's (backend, precision) engine is built with ``max_batch=N`` (as it
would be built to run batches of N) and, after ``warmup`` untimed calls, each call is timed on two paths:

* ``model``: ``engine.run_model(N)`` on real frames already staged (uploaded and normalized, on a GPU): the
  network alone, plus copying its outputs to the host (the one synchronisation of a GPU backend). Every backend
  stages the same work before this step (``engines/base.py``), so the path times the same work on all of them; it
  is what NVIDIA's published Jetson figures for torch2trt measure.
* ``full``: ``engine.infer_batch(frames)``: uint8 frames in -> preprocessing -> network -> outputs on the host, what
  the car runs per frame. The frames are real: simulator frames or a dataset's (``verify.verification_frames``).

The engines of one batch size take turns, ``BLOCK`` calls per path each (``measure_engines``): on a shared machine a
change of load then falls on every configuration alike, and the speedups stay fair.

Statistics of a row: p50 and p99 of the per-call latency in ms (numpy's linear interpolation between the sorted
calls), and FPS = N / mean call time: the published figures' definition (iterations / total time), so slow calls
count against throughput. ``speedup_vs_torch_fp32`` = a row's FPS / the FPS of PyTorch eager FP32 at the same batch
and path (a ratio of mean latencies). The baseline runs where the comparison matters: on the CUDA GPU when this
machine has one (``TorchEngine(device="cuda", precision="fp32", cuda_graphs=False)``), else on the CPU.

Accuracy: each configuration's outputs on all benchmark frames against the FP32 ONNX model on ONNX Runtime's CPU
provider (``verify.reference_outputs``), judged by ``verify.compare`` with the tolerance of its precision.

The pose model (``task`` pose: ``jetracer-trt benchmark --task pose``, or a ``--model`` whose contract says pose)
is measured the same way on synthetic scenes of people, ``full`` ending with its ``cmap`` and ``paf`` on the host,
plus a third path, ``people``: ``full`` then ``pose.parse_people`` on the batch's maps, frames -> people in the
frames' pixels, what a follow-me behaviour waits for. The parse step of each ``people`` call is also timed apart
(``parse``: p50/p99 per configuration and batch), and ``parse_objects`` alone on hand-drawn maps of five people
(the parser's bar: p50 <= 2 ms). Beside the rows stand trt_pose's published FPS for the same network
(``TRT_POSE_PUBLISHED``: 22 on a Jetson Nano, 251 on a Xavier; model only, not measured here). As the timing does
not depend on the weights, ``random_pose_models`` makes the files of a randomly initialised network on the fly, so
that the pose rows can be measured where the trained model file is not.

A configuration that cannot run here (no model file, no CUDA GPU, backend not importable, engine refused) becomes a
``Skipped`` entry with the reason, never a crash and never silently dropped; only a configuration the user asked
for alone (``BenchConfig.required``) raises JetracerError, with what to run to make it possible.
"""
from __future__ import annotations

import gc
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from .config import default_model_path
from .contract import POSE, ROAD_FOLLOWING
from .engines import BACKENDS, PRECISIONS, create_engine, engine_class
from .engines.artifacts import checkpoint_path, converted_path
from .errors import JetracerError
from .verify import (TOLERANCES, VERIFY_FRAMES, compare, engine_outputs, reference_outputs, tolerances_for,
                     verification_frames)

log = logging.getLogger(__name__)

PATHS = ("model", "full")
POSE_PATHS = ("model", "full", "people")  # a pose model's: and frames -> people, the parser included
TASKS = (ROAD_FOLLOWING, POSE)
BASELINE = ("torch", "fp32")  # PyTorch eager FP32: every row's speedup is relative to it
GPU_ONLY = ("tensorrt", "torch2trt")
BLOCK = 10  # timed calls per path in one engine's turn (engines take turns: see measure_engines)

# what "auto" benchmarks on each device class, in table order (baseline first)
AUTO_CONFIGS = {
    "cpu": (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"),
            ("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8"),
            ("torch2trt", "fp32"), ("torch2trt", "fp16"), ("torch2trt", "int8")),
    "cuda": (("torch", "fp32"), ("torch", "fp16"), ("onnxruntime", "fp32"),
             ("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8"),
             ("torch2trt", "fp32"), ("torch2trt", "fp16"), ("torch2trt", "int8")),
}

# The project's speed bars: (threshold, goal) of each ratio.
CPU_ORT_VS_TORCH = (1.6, 2.5)      # ONNX Runtime FP32 / PyTorch eager FP32, CPU
CPU_INT8_VS_FP32 = (2.5, None)     # ONNX Runtime INT8 / ONNX Runtime FP32, CPU, with mean |dx| <= 0.02
CUDA_BEST_VS_TORCH = (3.0, 5.0)    # best backend at batch 1 / PyTorch eager FP32, CUDA
CUDA_P99_OVER_P50 = 1.25           # steadiness of the best backend at batch 1
CUDA_FULL_OVER_MODEL = 1.3         # preprocessing and transfers must not eat the gain (p50 full / p50 model)
INT8_MEAN_DX = TOLERANCES["int8"].mean_abs  # mean |dx| vs FP32, the project's INT8 tolerance (verify.py)

# NVIDIA's published Jetson figures for ResNet18 with torch2trt (224x224 input already on the GPU: model only). In
# the published batch table each model has an FPS row then a latency row, with the row labels shifted; the pairs
# were matched by FPS x latency ~= batch and by the precision table's FP16 column (Nano 91, Xavier 717).
JETSON_RESNET18: dict[str, Any] = {
    "source": "NVIDIA's published Jetson figures, ResNet18 with torch2trt, model only (input already on the GPU)",
    "by_framework_fp32_batch1_fps": {"Jetson Nano": {"pytorch": 30.5, "tensorrt": 52.5},
                                     "Jetson AGX Xavier": {"pytorch": 164.0, "tensorrt": 339.0}},
    "by_precision_tensorrt_batch1_fps": {"Jetson Nano": {"fp32": 52.5, "fp16": 91.0},
                                         "Jetson AGX Xavier": {"fp32": 339.0, "fp16": 717.0, "int8": 1030.0}},
    "by_batch_tensorrt_fp16": {
        "Jetson Nano": {"fps": {"1": 90.8, "2": 98.4, "4": 99.9, "8": 101.0},
                        "latency_ms": {"1": 11.5, "2": 20.8, "4": 40.6, "8": 80.3}},
        "Jetson AGX Xavier": {"fps": {"1": 718.0, "2": 1070.0, "4": 1420.0, "8": 1570.0},
                              "latency_ms": {"1": 1.66, "2": 2.09, "4": 3.08, "8": 5.42}},
    },
}


# trt_pose's published figures for the same network (its README's table; not measured here): FPS of
# resnet18_baseline_att_224x224_A optimised with TensorRT through torch2trt, the network alone (no Python parsing;
# trt_pose users report 8-16 FPS live on a Nano with it)
TRT_POSE_PUBLISHED: dict[str, Any] = {
    "source": "trt_pose's README (NVIDIA-AI-IOT/trt_pose), resnet18_baseline_att_224x224_A, TensorRT via torch2trt, "
              "model only (no parsing); published, not measured here",
    "fps": {"Jetson Nano": 22.0, "Jetson Xavier": 251.0},
}
PARSE_5_PEOPLE_P50_MS = 2.0  # the parser's bar: p50 for five people's maps on the project's 2-core machine


class Progress(Protocol):
    """What the benchmark reports progress to (a tqdm bar fits)."""

    def update(self, n: float = 1) -> Any: ...

    def set_description(self, desc: str | None = None, refresh: bool = True) -> Any: ...


# ---------------------------------------------------------------------------------------------------------------------
# What to measure


@dataclass(frozen=True)
class BenchConfig:
    """One configuration to measure: a backend, the precision its model computes in, and the model file."""

    backend: str
    precision: str
    model: Path
    required: bool = False  # asked for alone: failing to run it is an error, not a skipped row

    @property
    def key(self) -> tuple[str, str]:
        return self.backend, self.precision

    @property
    def is_baseline(self) -> bool:
        return self.key == BASELINE


@dataclass
class Skipped:
    """A configuration (or one batch size of it) that was not measured, and why."""

    backend: str
    precision: str
    reason: str
    batch: int | None = None  # None: every batch size

    def as_dict(self) -> dict:
        return {"backend": self.backend, "precision": self.precision, "batch": self.batch, "reason": self.reason}


def default_pose_model() -> Path:
    """The shipped pose model in models/ (models/POSE_MODEL_CARD.md)."""
    return default_model_path("pose")


def random_pose_model_path(folder: str | os.PathLike) -> Path:
    """The ONNX model ``random_pose_models`` writes in ``folder`` (the other files are named after it)."""
    return Path(folder) / "pose_random.onnx"


def random_pose_models(folder: str | os.PathLike, int8: bool = True, calib_frames: int = 32,
                       seed: int = 0) -> list[str]:
    """A randomly initialised pose network (``pose.network``, seeded) made into the files a pose run measures, in
    ``folder`` under the conventional names (``engines/artifacts.py``): the checkpoint (``pose_random.pt``, the
    torch rows), its ONNX export (``random_pose_model_path``) and, with ``int8``, its INT8 conversion for ONNX
    Runtime, each verified as ``export`` and ``convert`` verify. The timing does not depend on the weights, so this
    measures the pose network where the trained model file is not (it is not in the repository). Returns notes: a
    conversion that failed, with why (its rows are then skipped: no file)."""
    import torch

    from .contract import pose_contract
    from .convert import ConvertRequest, convert
    from .export import export_onnx
    from .model import save_checkpoint
    from .pose.checkpoint import make_pose_checkpoint
    from .pose.network import build_pose_network
    from .pose.topology import load_topology

    onnx_model = random_pose_model_path(folder)
    topology = load_topology()
    torch.manual_seed(seed)
    checkpoint = checkpoint_path(onnx_model)
    save_checkpoint(make_pose_checkpoint(build_pose_network(topology), half=True, contract=pose_contract(topology),
                                         kind="random weights"), checkpoint)
    export_onnx(checkpoint, onnx_model, num_frames=16)
    notes = []
    if int8:
        try:
            convert("onnxruntime", ConvertRequest(source=onnx_model, precision="int8", calib_frames=calib_frames,
                                                  verify_frames=16, out=converted_path(onnx_model, "onnxruntime",
                                                                                       "int8")))
        except JetracerError as exc:
            notes.append(f"onnxruntime int8 of the random network not made: {exc}")
    return notes


def detect_device() -> str:
    """``"cuda"`` when the CUDA driver reports a GPU here, else ``"cpu"`` (``engines.select.has_nvidia_gpu``)."""
    from .engines.select import has_nvidia_gpu

    return "cuda" if has_nvidia_gpu() else "cpu"

def default_model(backend: str, precision: str, source: str | os.PathLike | None = None) -> Path:
    """The model file a configuration uses when none is given, by the project's naming convention
    (``engines/artifacts.py``): the shipped ONNX for ONNX Runtime FP32, the checkpoint for PyTorch, the converted
    files beside the ONNX for the others."""
    onnx = Path(source) if source is not None else default_model_path()
    if backend == "torch":
        return checkpoint_path(onnx)
    if backend in ("onnxruntime", "tensorrt", "torch2trt"):
        return converted_path(onnx, backend, precision)
    raise JetracerError(f"unknown inference backend {backend!r}; choose one of {', '.join(BACKENDS + ('auto',))}")


def make_command(backend: str, precision: str, model: Path, max_batch: int = 1) -> str:
    """The command that makes ``model`` for a configuration (engines for batches up to ``max_batch``), for messages
    about a missing file."""
    if backend == "torch":
        return f"jetracer-trt train --data DATA --out runs/r1, then copy runs/r1/best.pt to {model} (or give --model)"
    if backend == "onnxruntime" and precision == "fp32":
        return f"jetracer-trt export --checkpoint CKPT --out {model}"
    via = " --via torch2trt" if backend == "torch2trt" else ""
    route = "tensorrt" if backend == "torch2trt" else backend
    batch = f" --max-batch {max_batch}" if max_batch > 1 and backend in GPU_ONLY else ""
    return f"jetracer-trt convert --backend {route}{via} --precision {precision}{batch} --out {model}"


def _parse_list(values: Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str] | None:
    if not values or list(values) == ["auto"]:
        return None
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise JetracerError(f"unknown {what} {', '.join(map(repr, unknown))}; choose from {', '.join(allowed)}"
                            + (" or auto" if what == "backend" else ""))
    return list(dict.fromkeys(values))


def resolve_configs(backends: Sequence[str] | None, precisions: Sequence[str] | None, device: str,
                    model: str | os.PathLike | None = None, source: str | os.PathLike | None = None
                    ) -> list[BenchConfig]:
    """The configurations to measure.

    ``backends`` None or ``["auto"]``: everything worth measuring on this device class (``AUTO_CONFIGS``; those that
    cannot run here become skipped rows). An explicit backend without ``precisions`` takes the precisions ``auto``
    would measure for it here. ``model`` overrides the conventional file of a single configuration; ``source``
    is the FP32 ONNX whose conventional files the others use (default: the shipped road-following model). A single
    configuration the user named is ``required``: failing to run it raises instead of skipping.
    """
    chosen_backends = _parse_list(backends, BACKENDS, "backend")
    chosen_precisions = _parse_list(precisions, PRECISIONS, "precision")
    candidates = AUTO_CONFIGS.get(device)
    if candidates is None:
        raise JetracerError(f"unknown device {device!r}; choose cpu or cuda")
    if chosen_backends is None:
        keys = [k for k in candidates if chosen_precisions is None or k[1] in chosen_precisions]
    elif chosen_precisions is None:
        keys = [k for b in chosen_backends for k in candidates if k[0] == b] or \
               [(b, "fp32") for b in chosen_backends]
    else:
        keys = [(b, p) for b in chosen_backends for p in chosen_precisions]
    if not keys:
        raise JetracerError(f"no configuration matches backend {backends} and precision {precisions} on {device}")
    if model is not None and len(keys) != 1:
        raise JetracerError(f"--model applies to one configuration, but {len(keys)} were asked for "
                            f"({', '.join(' '.join(k) for k in keys)}); give one --backend and one --precision")
    required = chosen_backends is not None and len(keys) == 1
    return [BenchConfig(b, p, Path(model) if model is not None else default_model(b, p, source), required)
            for b, p in keys]


def with_baseline(configs: Sequence[BenchConfig], source: str | os.PathLike | None = None) -> list[BenchConfig]:
    """``configs`` with PyTorch eager FP32 first (added if missing): speedups are measured in the same run."""
    if any(c.is_baseline for c in configs):
        return sorted(configs, key=lambda c: not c.is_baseline)
    return [BenchConfig(*BASELINE, default_model(*BASELINE, source)), *configs]


def unavailable_reason(config: BenchConfig, device: str, max_batch: int = 1) -> str | None:
    """Why ``config`` cannot run here (before trying to build it for batches up to ``max_batch``), or None."""
    if config.backend in GPU_ONLY and device != "cuda":
        return f"the {config.backend} backend needs a CUDA GPU, and this machine has none"
    if config.backend == "onnxruntime" and config.precision == "fp16":
        return "ONNX Runtime runs the FP32 model or the INT8 one from `jetracer-trt convert`; there is no fp16 model"
    if not config.model.is_file():
        command = make_command(*config.key, config.model, max_batch)
        return f"model file {config.model} not found; make it with: {command}"
    try:
        engine_class(config.backend)
    except ImportError as exc:
        return f"the {config.backend} backend cannot be imported here ({exc})"
    return None


def planned_calls(configs: int, batches: Sequence[int], iters: int, warmup: int, task: str = ROAD_FOLLOWING) -> int:
    """Engine calls the benchmark makes for ``configs`` configurations (the length of a progress bar)."""
    return configs * len(batches) * len(paths_of(task)) * (iters + warmup)


def paths_of(task: str) -> tuple[str, ...]:
    """The timed paths of a model of ``task``: model only and full, and for a pose model frames -> people."""
    return POSE_PATHS if task == POSE else PATHS


# ---------------------------------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency statistics of one row."""

    p50_ms: float
    p99_ms: float
    mean_ms: float
    fps: float  # frames per second: batch / mean call time


def latency_stats(seconds: Sequence[float] | np.ndarray, batch: int) -> LatencyStats:
    """p50, p99 (linear interpolation between sorted calls), mean, and FPS = ``batch`` / mean, from per-call times
    in seconds."""
    t = np.asarray(seconds, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise JetracerError(f"latency statistics need positive call times, got {t.size} values")
    p50, p99 = np.percentile(t, [50, 99])
    mean = float(t.mean())
    return LatencyStats(p50_ms=float(p50) * 1e3, p99_ms=float(p99) * 1e3, mean_ms=mean * 1e3, fps=batch / mean)


def measure_engines(engines: dict[tuple[str, str], Any], frames: np.ndarray, batch: int, iters: int, warmup: int,
                    progress: Progress | None = None, block: int = BLOCK, parse=None
                    ) -> tuple[dict[tuple[str, str], dict[str, np.ndarray]], dict[tuple[str, str], Exception]]:
    """Per-call seconds of every path of every engine at ``batch``, the frames cycling through ``frames``; and the
    engines that failed while running, with their exception (they leave the rotation).

    Without ``parse`` the paths are ``PATHS`` (column models). With it (a pose model's ``parse(maps, frames)``,
    the parser on the maps of a batch) they are ``POSE_PATHS``: ``full`` ends with the maps on the host and
    ``people`` is ``full`` then ``parse``; the parse step's own seconds of each ``people`` call come as a fourth
    series, ``parse``.

    The engines take turns in blocks of ``block`` calls per path, so that a change of load on a shared machine
    falls on every configuration alike and the ratios stay fair; one untimed call opens each engine's turn, so no
    engine pays for the caches and threads the one before it disturbed.
    """
    chunks = [frames[i:i + batch] for i in range(0, len(frames) - batch + 1, batch)]
    paths = PATHS if parse is None else POSE_PATHS

    def call(engine, path: str, k: int) -> float:
        """Runs one call of ``path``; the seconds its parse step took (0 without one)."""
        if path == "model":
            engine.run_model(batch)  # on the real frames the last full-path call staged
            return 0.0
        chunk = chunks[k % len(chunks)]
        if parse is None:
            engine.infer_batch(chunk)
            return 0.0
        maps = engine.infer_batch_tensors(chunk)
        if path == "full":
            return 0.0
        begin = time.perf_counter()
        parse(maps, chunk)
        return time.perf_counter() - begin

    series = paths if parse is None else (*paths, "parse")
    times = {key: {path: np.empty(iters, dtype=np.float64) for path in series} for key in engines}
    failed: dict[tuple[str, str], Exception] = {}
    active = dict(engines)

    def turn(key, engine, start: int, count: int, timed: bool) -> None:
        try:
            call(engine, "full", start - 1)  # stages real frames; untimed
            for path in ("full", "model", *paths[2:]):
                for k in range(start, start + count):
                    begin = time.perf_counter()
                    parsing = call(engine, path, k)
                    if timed:
                        times[key][path][k] = time.perf_counter() - begin
                        if path == "people":
                            times[key]["parse"][k] = parsing
                    if progress is not None:
                        progress.update(1)
        except Exception as exc:  # noqa: BLE001 - reported by the caller as a skipped row
            failed[key] = exc
            del active[key]

    for key, engine in list(active.items()):
        turn(key, engine, 0, warmup, timed=False)
    for start in range(0, iters, block):
        for key, engine in list(active.items()):
            turn(key, engine, start, min(block, iters - start), timed=True)
    return {key: t for key, t in times.items() if key not in failed}, failed


# ---------------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class Row:
    """One measured row: a configuration at one batch size on one path."""

    backend: str
    precision: str
    batch: int
    path: str
    stats: LatencyStats
    speedup_vs_torch_fp32: float | None = None

    def as_dict(self) -> dict:
        """The row as ``--json`` prints it."""
        return {"backend": self.backend, "precision": self.precision, "batch": self.batch, "path": self.path,
                "p50_ms": round(self.stats.p50_ms, 4), "p99_ms": round(self.stats.p99_ms, 4),
                "fps": round(self.stats.fps, 2),
                "speedup_vs_torch_fp32": None if self.speedup_vs_torch_fp32 is None
                else round(self.speedup_vs_torch_fp32, 3)}


@dataclass
class ConfigReport:
    """What was learnt about one configuration besides its timings: where it ran and how accurate it is."""

    backend: str
    precision: str
    model: str
    device: str = ""
    accuracy: dict | None = None  # verify.Comparison.as_dict() against the FP32 ONNX model

    @property
    def mean_abs_dx(self) -> float | None:
        return None if self.accuracy is None else self.accuracy["mean_abs"].get("x")

    def as_dict(self) -> dict:
        return {"backend": self.backend, "precision": self.precision, "model": self.model, "device": self.device,
                "mean_abs_dx": self.mean_abs_dx, "accuracy": self.accuracy}


@dataclass
class BenchmarkResult:
    """Everything one benchmark run measured."""

    device: str                       # the device class: "cpu" or "cuda"
    machine: dict
    settings: dict
    rows: list[Row] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    configs: list[ConfigReport] = field(default_factory=list)
    bars: list[dict] = field(default_factory=list)
    task: str = ROAD_FOLLOWING
    # a pose run's parser timings: per configuration and batch, the parse step of its ``people`` calls (ms per call,
    # p50/p99); and ``five_people``: the parser alone on hand-drawn maps of five people (the project's bar)
    parse: dict = field(default_factory=dict)

    def row(self, backend: str, precision: str, batch: int, path: str) -> Row | None:
        for r in self.rows:
            if (r.backend, r.precision, r.batch, r.path) == (backend, precision, batch, path):
                return r
        return None

    def config(self, backend: str, precision: str) -> ConfigReport | None:
        return next((c for c in self.configs if (c.backend, c.precision) == (backend, precision)), None)

    def as_dict(self) -> dict:
        """The ``--json`` object."""
        data = {"rows": [r.as_dict() for r in self.rows], "device": self.device, "machine": self.machine,
                "settings": self.settings, "configs": [c.as_dict() for c in self.configs],
                "skipped": [s.as_dict() for s in self.skipped], "bars": self.bars, "task": self.task}
        if self.task == POSE:
            return {**data, "parse": self.parse, "published": TRT_POSE_PUBLISHED}
        return {**data, "reference": JETSON_RESNET18}


def add_speedups(rows: Sequence[Row]) -> None:
    """Sets each row's speedup: its FPS / PyTorch eager FP32's at the same batch and path (None without one)."""
    base = {(r.batch, r.path): r.stats.fps for r in rows if (r.backend, r.precision) == BASELINE}
    for r in rows:
        ref = base.get((r.batch, r.path))
        r.speedup_vs_torch_fp32 = r.stats.fps / ref if ref else None


# ---------------------------------------------------------------------------------------------------------------------
# Bars


def _bar(name: str, what: str, value: float | None, threshold: float, goal: float | None, passed: bool | None,
         note: str = "", **extra) -> dict:
    return {"name": name, "what": what, "value": None if value is None else round(value, 3),
            "threshold": threshold, "goal": goal, "passed": passed, "note": note, **extra}


def _ratio(result: BenchmarkResult, a: tuple[str, str], b: tuple[str, str], batch: int, path: str) -> float | None:
    ra, rb = result.row(*a, batch, path), result.row(*b, batch, path)
    return ra.stats.fps / rb.stats.fps if ra and rb else None


def evaluate_bars(result: BenchmarkResult, batch: int = 1) -> list[dict]:
    """The project's speed bars for the device class of ``result``, judged at ``batch`` on the full path (what the
    car runs per frame); the model-only ratio is given beside each. ``passed`` is None when a row it needs was not
    measured."""
    missing = f"not measured: a row it needs at batch {batch} is missing (not asked for, or see skipped)"
    if result.task == POSE:
        return _pose_bars(result)
    if result.device == "cpu":
        return _cpu_bars(result, batch, missing)
    return _cuda_bars(result, batch, missing)


def _cpu_bars(result: BenchmarkResult, batch: int, missing: str) -> list[dict]:
    """ONNX Runtime FP32 against PyTorch eager FP32, and ONNX Runtime INT8 against FP32 (fast and accurate)."""
    bars = []
    for name, a, b, (threshold, goal) in (
            ("cpu_onnxruntime_fp32_vs_torch_fp32", ("onnxruntime", "fp32"), BASELINE, CPU_ORT_VS_TORCH),
            ("cpu_onnxruntime_int8_vs_onnxruntime_fp32", ("onnxruntime", "int8"), ("onnxruntime", "fp32"),
             CPU_INT8_VS_FP32)):
        full, model = _ratio(result, a, b, batch, "full"), _ratio(result, a, b, batch, "model")
        what = f"FPS {' '.join(a)} / {' '.join(b)}, batch {batch}, full path (>= {threshold}x)"
        extra: dict[str, Any] = {"model_path_value": None if model is None else round(model, 3)}
        passed = None if full is None else full >= threshold
        if a[1] == "int8":
            config = result.config(*a)
            dx = config.mean_abs_dx if config else None
            extra["mean_abs_dx"] = dx
            what += f" and mean |dx| vs FP32 <= {INT8_MEAN_DX}"
            if passed is not None:
                passed = passed and dx is not None and dx <= INT8_MEAN_DX
        note = "" if full is not None else f"{missing}; it compares {' '.join(a)} with {' '.join(b)}"
        bars.append(_bar(name, what, full, threshold, goal, passed, note, **extra))
    return bars


def _pose_bars(result: BenchmarkResult) -> list[dict]:
    """The parser's bar: p50 for five people's maps (the speed bars of road following are for its model)."""
    five = result.parse.get("five_people")
    p50 = None if five is None else five["p50_ms"]
    return [_bar("pose_parse_5_people_p50_ms", f"parse_objects p50 on the maps of five people, ms (<= "
                 f"{PARSE_5_PEOPLE_P50_MS})", p50, PARSE_5_PEOPLE_P50_MS, None,
                 None if p50 is None else p50 <= PARSE_5_PEOPLE_P50_MS,
                 "" if p50 is not None else "not measured", p99_ms=None if five is None else five["p99_ms"])]


def _cuda_bars(result: BenchmarkResult, batch: int, missing: str) -> list[dict]:
    """The CUDA bars, on the best backend at ``batch``: the highest full-path FPS other than the baseline itself."""
    candidates = [r for r in result.rows
                  if r.batch == batch and r.path == "full" and (r.backend, r.precision) != BASELINE]
    best = max(candidates, key=lambda r: r.stats.fps, default=None)
    if best is None:
        return [_bar(name, what, None, threshold, goal, None, missing, best="none") for name, what, threshold, goal in (
            ("cuda_best_vs_torch_fp32", f"FPS best backend / torch fp32 eager, batch {batch}", *CUDA_BEST_VS_TORCH),
            ("cuda_p99_over_p50", f"p99 / p50 of the best backend, batch {batch}", CUDA_P99_OVER_P50, None),
            ("cuda_full_over_model", f"p50 full / p50 model only, batch {batch}", CUDA_FULL_OVER_MODEL, None))]
    label = f"{best.backend} {best.precision}"
    model = result.row(best.backend, best.precision, batch, "model")
    speed = best.speedup_vs_torch_fp32
    model_speed = model.speedup_vs_torch_fp32 if model else None
    steady = best.stats.p99_ms / best.stats.p50_ms
    overhead = best.stats.p50_ms / model.stats.p50_ms if model else None
    threshold, goal = CUDA_BEST_VS_TORCH
    return [
        _bar("cuda_best_vs_torch_fp32", f"FPS best backend ({label}) / torch fp32 eager, batch {batch}, full path "
             f"(>= {threshold}x)", speed, threshold, goal, None if speed is None else speed >= threshold,
             "" if speed is not None else missing, best=label,
             model_path_value=None if model_speed is None else round(model_speed, 3)),
        _bar("cuda_p99_over_p50", f"p99 / p50 of {label}, batch {batch}, full path (<= {CUDA_P99_OVER_P50})",
             steady, CUDA_P99_OVER_P50, None, steady <= CUDA_P99_OVER_P50, best=label,
             model_path_value=None if model is None else round(model.stats.p99_ms / model.stats.p50_ms, 3)),
        _bar("cuda_full_over_model", f"p50 full path / p50 model only of {label}, batch {batch} "
             f"(<= {CUDA_FULL_OVER_MODEL})", overhead, CUDA_FULL_OVER_MODEL, None,
             None if overhead is None else overhead <= CUDA_FULL_OVER_MODEL, "" if overhead is not None else missing,
             best=label),
    ]


# ---------------------------------------------------------------------------------------------------------------------
# The run


def machine_info(device: str) -> dict:
    """What the numbers ran on, for the report: CPU model and cores, GPU, library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version(), "gpu": None}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    torch = sys.modules.get("torch")  # only if a torch configuration ran: never imported for this
    if torch is not None:
        info["torch"] = torch.__version__
        if device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _load_average() -> float | None:
    """The 1-minute load average (runnable processes), where the platform has one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _build(config: BenchConfig, batch: int, device: str, threads: int):
    options: dict[str, Any] = {"max_batch": batch, "precision": config.precision, "device": device}
    if threads:
        options["threads"] = threads
    if config.backend == "onnxruntime" and device == "cpu":
        options["providers"] = ["CPUExecutionProvider"]
    if config.is_baseline:
        options["cuda_graphs"] = False  # eager: the baseline is PyTorch as a user first runs it
    engine = create_engine(config.backend, config.model, **options)
    if engine.precision != config.precision:
        engine.close()
        raise JetracerError(f"{config.model} computes in {engine.precision}, not {config.precision}")
    return engine


class _Counted:
    """Counts the calls reported to a progress bar, so that a failed measurement can fill in what it did not do."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress, self.count = progress, 0

    def update(self, n: float = 1) -> None:
        self.count += n
        if self.progress is not None:
            self.progress.update(n)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        if self.progress is not None:
            self.progress.set_description(desc, refresh)

    def fill_to(self, count: int) -> None:
        if count > self.count:
            self.update(count - self.count)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_benchmark(configs: Sequence[BenchConfig], batches: Sequence[int] = (1, 8), iters: int = 100,
                  warmup: int = 10, device: str | None = None, threads: int = 0,
                  frames: np.ndarray | None = None, frames_dir: str | os.PathLike | None = None,
                  reference_model: str | os.PathLike | None = None,
                  progress: Progress | None = None, task: str = ROAD_FOLLOWING) -> BenchmarkResult:
    """Measures ``configs`` (see the module docstring) and returns rows, skipped entries, accuracy and bars.

    ``frames``: RGB uint8 (N, H, W, 3) frames to run; default: ``verify.verification_frames(frames_dir)`` (a
    dataset or image folder, else the simulator, or for ``task`` pose synthetic scenes of people), at least as many
    as the largest batch. ``reference_model``: the FP32 ONNX that accuracy is judged against (default: the shipped
    model of ``task``). ``device``: "cpu" or "cuda" (default: ``detect_device()``). ``task``: a pose run times the
    ``people`` path too (frames -> people, the parser included), the parser apart, and the parser on five people.
    Add the baseline with ``with_baseline`` first to get speedups.
    """
    batches = sorted(set(int(b) for b in batches))
    if not batches or batches[0] < 1:
        raise JetracerError(f"batch sizes must be positive integers, got {list(batches)}")
    if iters < 1 or warmup < 0:
        raise JetracerError(f"need at least 1 timed iteration and 0 or more warm-up calls, got {iters} and {warmup}")
    if task not in TASKS:
        raise JetracerError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    device = device or detect_device()
    for config in configs:  # before any frame is rendered: a configuration asked for alone fails fast
        reason = unavailable_reason(config, device, batches[-1]) if config.required else None
        if reason is not None:
            raise JetracerError(f"cannot benchmark {' '.join(config.key)}: {reason}")
    default_source = "pose scenes" if task == POSE else "simulator"
    frames_source = "given" if frames is not None else str(frames_dir) if frames_dir is not None else default_source
    if frames is None:
        frames = verification_frames(frames_dir, max(VERIFY_FRAMES, batches[-1]), task=task)
    if len(frames) < batches[-1]:
        raise JetracerError(f"{len(frames)} frames cannot fill a batch of {batches[-1]}; give more frames")
    if reference_model is None:
        reference_model = default_pose_model() if task == POSE else default_model_path()
    reference_model = Path(reference_model)
    load_start = _load_average()
    result = BenchmarkResult(device, {}, {"batches": batches, "iters": iters, "warmup": warmup, "threads": threads,
                                          "frames": int(len(frames)), "frames_source": frames_source,
                                          "reference_model": str(reference_model),
                                          "fps": "batch / mean call time", "latency": "per call, ms"}, task=task)
    counter = _Counted(progress)
    runnable: list[BenchConfig] = []
    for config in configs:
        reason = unavailable_reason(config, device, batches[-1])
        if reason is None:
            runnable.append(config)
        else:
            result.skipped.append(Skipped(*config.key, reason))
            counter.update(planned_calls(1, batches, iters, warmup, task))
    reports = {config.key: ConfigReport(*config.key, model=str(config.model)) for config in runnable}
    reference = None  # the FP32 model's outputs on the frames, that every configuration's accuracy is judged by
    if runnable:
        try:
            reference = reference_outputs(reference_model, frames)
        except JetracerError as exc:
            result.settings["reference_error"] = str(exc)
    for batch in batches:
        done = counter.count + planned_calls(len(runnable), [batch], iters, warmup, task)
        counter.set_description(f"batch {batch}")
        _measure_batch(runnable, batch, device, threads, frames, iters, warmup, counter, result, reports, reference)
        counter.fill_to(done)
    result.configs = [report for report in reports.values() if report.device]
    add_speedups(result.rows)
    if task == POSE:
        result.parse["five_people"] = parse_five_people(iters=max(iters, 50))
    result.machine = machine_info(device)
    # other processes on the machine slow every row (and PyTorch's OpenMP threads far more than others): say so
    result.machine["load_average"] = {"start": load_start, "end": _load_average()}
    if result.machine["gpu"] is None:  # torch not loaded: the GPU as a backend described it
        result.machine["gpu"] = next((c.device for c in result.configs if c.device.startswith("cuda")), None)
    result.bars = evaluate_bars(result)
    return result


def people_parse(topology):
    """A pose run's parse step for ``measure_engines``: ``parse(maps, frames)``, a batch's maps -> its people
    (``pose.parse_people``, trt_pose's thresholds, in the frames' own pixels)."""
    from .pose.people import parse_people

    def parse(maps, frames) -> None:
        parse_people(maps["cmap"], maps["paf"], topology, (frames.shape[2], frames.shape[1]))

    return parse


def parse_five_people(iters: int = 100) -> dict:
    """p50/p99 (ms) of ``parse_objects`` on hand-drawn maps of five people at 56x56 (``pose.synthetic``): the
    parser's own cost, whatever a model's weights make of the frames."""
    from .pose.parse import parse_objects
    from .pose.synthetic import draw_maps, people_in_a_row
    from .pose.topology import load_topology

    topology = load_topology()
    cmap, paf = draw_maps(people_in_a_row(5, topology), topology)
    seconds = []
    for _ in range(iters + 5):
        begin = time.perf_counter()
        parse_objects(cmap, paf, topology)
        seconds.append(time.perf_counter() - begin)
    stats = latency_stats(seconds[5:], 1)
    return {"what": "parse_objects on hand-drawn maps of five people, 56x56, trt_pose's thresholds",
            "calls": iters, "p50_ms": round(stats.p50_ms, 4), "p99_ms": round(stats.p99_ms, 4)}


def _skip_or_raise(config: BenchConfig, batch: int, exc: Exception, result: BenchmarkResult) -> None:
    if config.required:
        raise JetracerError(f"cannot benchmark {' '.join(config.key)} at batch {batch}: {_first_line(exc)}") from exc
    log.warning("%s at batch %d not measured: %s", " ".join(config.key), batch, _first_line(exc))
    log.debug("traceback", exc_info=exc)
    result.skipped.append(Skipped(*config.key, _first_line(exc), batch))


def _measure_batch(configs: Sequence[BenchConfig], batch: int, device: str, threads: int, frames: np.ndarray,
                   iters: int, warmup: int, progress: Progress, result: BenchmarkResult,
                   reports: dict[tuple[str, str], ConfigReport], reference) -> None:
    """Builds every configuration's engine for ``batch``, times them taking turns, adds their rows (and, in a pose
    run, their parse timings) to ``result`` and, the first time a configuration runs, its accuracy to its report;
    then frees the engines."""
    engines: dict[tuple[str, str], Any] = {}
    try:
        for config in configs:
            try:
                engines[config.key] = _build(config, batch, device, threads)
            except Exception as exc:  # noqa: BLE001 - any backend's refusal becomes a reported skipped row
                _skip_or_raise(config, batch, exc, result)
        parse = None
        if result.task == POSE and engines:
            parse = people_parse(next(iter(engines.values())).contract.pose_topology())
        times, failed = measure_engines(engines, frames, batch, iters, warmup, progress, parse=parse)
        for config in configs:
            if config.key in failed:
                _skip_or_raise(config, batch, failed[config.key], result)
            if config.key not in times:
                continue
            engine, report = engines[config.key], reports[config.key]
            result.rows.extend(Row(*config.key, batch, path, latency_stats(times[config.key][path], batch))
                               for path in paths_of(result.task))
            if parse is not None:
                stats = latency_stats(times[config.key]["parse"], batch)
                result.parse.setdefault("per_call", []).append(
                    {"backend": config.backend, "precision": config.precision, "batch": batch,
                     "p50_ms": round(stats.p50_ms, 4), "p99_ms": round(stats.p99_ms, 4)})
            report.device = engine.device
            if report.accuracy is None and reference is not None:
                report.accuracy = compare(reference, engine_outputs(engine, frames), config.precision,
                                          engine.contract.outputs, tolerances_for(engine.contract.task)).as_dict()
    finally:
        for engine in engines.values():
            engine.close()
        engines.clear()
        gc.collect()  # frees the backends' threads and buffers before the next batch size is timed
