"""``jetracer-trt benchmark``: FPS and p50/p99 latency of every backend that can run here, model-only and full path,
each against PyTorch eager FP32 measured in the same run, laid out like NVIDIA's published torch2trt tables, with
their Jetson figures beside. ``--task pose`` measures the pose model the same way, plus frames -> people (the parser
included) and the parser apart, beside trt_pose's published figures.

The measuring is ``jetracer_trt.benchmark``; this module parses options and prints (a table, or one JSON object).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from ..contract import POSE, ROAD_FOLLOWING, read_contract
from ..errors import JetracerError

PATH_TITLES = {"model": "model only (real frames already staged; network + outputs to the host)",
               "full": "full path (uint8 frames in -> preprocessing -> network -> target on the host)",
               "people": "frames -> people (preprocessing -> network -> maps on the host -> parse_people)"}
POSE_FULL_TITLE = "full path (uint8 frames in -> preprocessing -> network -> cmap and paf on the host)"


def register(subparsers) -> None:
    """Adds the ``benchmark`` verb."""
    parser = subparsers.add_parser(
        "benchmark",
        help="FPS and latency of each inference backend against PyTorch eager FP32",
        description=(
            "Builds an engine per configuration (backend, precision) and batch size, warms it up, then times each "
            "call on two paths: model only and the full path from uint8 frames to the target; the engines take "
            "turns in blocks of calls, so that other work on the machine slows them alike. Reports p50/p99 "
            "latency per call, FPS (batch / mean call time) and the speedup over PyTorch eager FP32 measured in the "
            "same run (on the CUDA GPU when there is one, else on the CPU), the accuracy of each configuration "
            "against the FP32 model, and the project's bars. Configurations that cannot run here are listed as "
            "skipped with the reason."
        ),
    )
    parser.add_argument("--backend", default="auto", metavar="LIST",
                        help="comma list of onnxruntime, torch, tensorrt, torch2trt (default: auto, everything "
                             "worth measuring on this machine)")
    parser.add_argument("--precision", metavar="LIST",
                        help="comma list of fp32, fp16, int8 (default: those each backend offers here)")
    parser.add_argument("--batch", default="1,8", metavar="LIST", help="comma list of batch sizes (default: 1,8)")
    parser.add_argument("--iters", type=int, default=100, metavar="N", help="timed calls per row (default: 100)")
    parser.add_argument("--warmup", type=int, default=10, metavar="N",
                        help="untimed calls of each path before timing (default: 10)")
    parser.add_argument("--model", metavar="PATH",
                        help="model file of a single configuration (default: the conventional file in models/)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="device class of the run and of the PyTorch baseline (default: auto, cuda if present)")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="CPU threads per engine (default: 0 = the backend's default, all cores)")
    parser.add_argument("--frames", metavar="DIR",
                        help="dataset (or image folder) to take frames from (default: simulator frames)")
    parser.add_argument("--task", choices=("road_following", "pose"),
                        help="which model family to measure (default: the --model's own task, else road_following); "
                             "pose adds a frames -> people path and the parser's timings")
    parser.add_argument("--source", metavar="ONNX",
                        help="the FP32 ONNX model whose files the configurations run: it, and the checkpoint and "
                             "converted files beside it under their conventional names (default: the task's model "
                             "in models/)")
    parser.add_argument("--random-weights", action="store_true",
                        help="with --task pose: measure a randomly initialised pose network exported on the fly "
                             "(checkpoint, ONNX and ONNX Runtime INT8, in a temporary folder) instead of the files in "
                             "models/; timing does not depend on the weights")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.set_defaults(func=run)


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def parse_batches(text: str) -> list[int]:
    """``"1,8"`` -> [1, 8]; JetracerError for anything but positive integers."""
    try:
        batches = [int(part) for part in _split(text) or []]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise JetracerError(f"--batch takes a comma list of positive integers like 1,8, got {text!r}")
    return sorted(set(batches))


def run(args: argparse.Namespace) -> int:
    """Measures and prints the table (or, with ``--json``, one JSON object); a progress bar goes to stderr."""
    from tqdm import tqdm

    from .. import benchmark as bench

    batches = parse_batches(args.batch)
    if args.iters < 1 or args.warmup < 0 or args.threads < 0:
        raise JetracerError(f"--iters must be >= 1, --warmup and --threads >= 0 (got {args.iters}, {args.warmup}, "
                            f"{args.threads})")
    device = bench.detect_device() if args.device == "auto" else args.device
    # a missing --model is reported below with the command that makes it
    given = args.model or args.source
    model_task = read_contract(given).task if given and Path(given).is_file() else None
    task = args.task or model_task or ROAD_FOLLOWING
    if args.random_weights and task != POSE:
        raise JetracerError("--random-weights measures the pose network: give it with --task pose")
    if args.random_weights and (args.model or args.source):
        raise JetracerError("--random-weights makes its own model files; leave --model and --source out")
    with tempfile.TemporaryDirectory(prefix="jetracer-bench-") as work:
        source, notes = None, []
        if args.random_weights:
            source = bench.random_pose_model_path(work)
        elif args.source:
            source = Path(args.source)
        elif task == POSE:
            source = bench.default_pose_model()
        configs = bench.resolve_configs(_split(args.backend), _split(args.precision), device, args.model, source)
        configs = bench.with_baseline(configs, source)
        if args.random_weights:  # the files those configurations run, INT8 only when one of them needs it
            notes = bench.random_pose_models(work, int8=any(c.key == ("onnxruntime", "int8") for c in configs))
        total = bench.planned_calls(len(configs), batches, args.iters, args.warmup, task)
        with tqdm(total=total, unit=" calls", file=sys.stderr, disable=None, dynamic_ncols=True, leave=False) as bar:
            result = bench.run_benchmark(configs, batches, args.iters, args.warmup, device=device,
                                         threads=args.threads, frames_dir=args.frames, progress=bar,
                                         reference_model=source, task=task)
    result.settings["weights"] = "random (exported on the fly)" if args.random_weights else "model files"
    if notes:
        result.settings["notes"] = notes
    print(json.dumps(result.as_dict()) if args.json else format_report(result))
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# The table


def _cells(fps: float | None, p50: float | None, p99: float | None, speedup: float | None) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    return (f"{num(fps, '.1f'):>8} {num(p50, '.2f'):>8} {num(p99, '.2f'):>8} "
            f"{'-' if speedup is None else format(speedup, '.2f') + 'x':>7} ")


BATCH_WIDTH = len(_cells(0, 0, 0, 0))
LABEL_WIDTH = 28


def _label(backend: str, precision: str) -> str:
    suffix = " (eager)" if (backend, precision) == ("torch", "fp32") else ""
    return f"{backend} {precision}{suffix}"


def _jetson_rows(batches: Sequence[int]) -> list[str]:
    """NVIDIA's published Jetson ResNet18 figures in the same columns (model only, as they were measured)."""
    from ..benchmark import JETSON_RESNET18 as published

    lines = []
    for board, short in (("Jetson Nano", "Nano"), ("Jetson AGX Xavier", "AGX Xavier")):
        framework = published["by_framework_fp32_batch1_fps"][board]
        precision = published["by_precision_tensorrt_batch1_fps"][board]
        by_batch = published["by_batch_tensorrt_fp16"][board]
        pytorch = framework["pytorch"]
        entries = [("pytorch fp32", {1: pytorch}, {}), ("tensorrt fp32", {1: framework["tensorrt"]}, {}),
                   ("tensorrt fp16", {int(b): v for b, v in by_batch["fps"].items()},
                    {int(b): v for b, v in by_batch["latency_ms"].items()})]
        if "int8" in precision:
            entries.append(("tensorrt int8", {1: precision["int8"]}, {}))
        for name, fps, latency in entries:
            cells = [_cells(fps.get(b), latency.get(b), None, fps[1] / pytorch if b == 1 and 1 in fps else None)
                     for b in batches]
            lines.append(f"{short + ' ' + name:<{LABEL_WIDTH}}|" + "|".join(cells) + "|")
    return lines


def _trt_pose_rows(batches: Sequence[int]) -> list[str]:
    """trt_pose's published FPS for the same network, batch 1, in the FPS column: published, not measured."""
    from ..benchmark import TRT_POSE_PUBLISHED as published

    lines = [f"trt_pose's published figures for the same network (PUBLISHED, not measured here; "
             f"{published['source'].split(';')[0]}):"]
    for board, fps in published["fps"].items():
        cells = [_cells(fps if b == 1 else None, None, None, None) for b in batches]
        lines.append(f"{board + ' (published)':<{LABEL_WIDTH}}|" + "|".join(cells) + "|")
    return lines


def format_report(result) -> str:
    """The benchmark laid out as NVIDIA's published torch2trt tables: configurations down, batch sizes across (FPS,
    p50 and p99 ms, speedup over PyTorch eager FP32), one table per path; then skipped configurations and the
    bars."""
    m, s = result.machine, result.settings
    versions = ", ".join(f"{lib} {m[lib]}" for lib in ("onnxruntime", "torch") if m.get(lib))
    where = f"{m['cpu']} ({m['cores']} cores)" + (f", GPU {m['gpu']}" if m.get("gpu") else "")
    load = m.get("load_average") or {}
    if load.get("start") is not None:
        where += f"; load average {load['start']:.2f} at the start, {load['end']:.2f} at the end"
    lines = [f"jetracer-trt benchmark on {result.device}: {where}; {versions}",
             f"{s['iters']} timed calls per row after {s['warmup']} warm-up calls, on {s['frames']} "
             f"{s['frames_source']} frames; FPS = batch / mean call time; latency per call in ms; "
             f"vs pt = FPS / PyTorch eager FP32 FPS (same batch, same path)"]
    batches = s["batches"]
    header = f"{'':<{LABEL_WIDTH}}|" + "|".join(f"{'batch ' + str(b):^{BATCH_WIDTH}}" for b in batches) + "|"
    columns = f"{'backend precision':<{LABEL_WIDTH}}|" + "|".join(
        f"{'FPS':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs pt':>7} " for _ in batches) + (
        "| mean|diff| vs FP32 (worst map)" if result.task == "pose" else "| mean|dx| vs FP32")
    keys = list(dict.fromkeys((r.backend, r.precision) for r in result.rows))
    pose = result.task == "pose"
    for path in ("model", "full", "people") if pose else ("model", "full"):
        title = POSE_FULL_TITLE if pose and path == "full" else PATH_TITLES[path]
        lines += ["", f"THROUGHPUT (FPS) / LATENCY (MS) BY BATCH SIZE -- {title}", header, columns]
        for key in keys:
            cells = []
            for b in batches:
                row = result.row(*key, b, path)
                cells.append(_cells(row.stats.fps, row.stats.p50_ms, row.stats.p99_ms, row.speedup_vs_torch_fp32)
                             if row else f"{'skipped':^{BATCH_WIDTH}}")
            report = result.config(*key)
            accuracy = ""
            if report is not None and report.accuracy is not None:
                error = max(report.accuracy["mean_abs"].values()) if pose else report.mean_abs_dx  # worst map
                accuracy = f" {error:.1e} ({'ok' if report.accuracy['ok'] else 'FAIL'} {key[1]})"
            lines.append(f"{_label(*key):<{LABEL_WIDTH}}|" + "|".join(cells) + "|" + accuracy)
        if path == "model" and pose:
            lines += _trt_pose_rows(batches)
        elif path == "model":
            lines.append("NVIDIA's published Jetson figures, ResNet18 with torch2trt (model only; latency as "
                         "published, no p99; vs pt = against the same board's PyTorch):")
            lines += _jetson_rows(batches)
    if pose:
        lines += ["", "parse time (parse_people on each call's maps, ms per call):"]
        for entry in result.parse.get("per_call", []):
            lines.append(f"  {entry['backend']} {entry['precision']} batch {entry['batch']}: p50 {entry['p50_ms']:.2f}"
                         f" p99 {entry['p99_ms']:.2f}")
        five = result.parse.get("five_people")
        if five:
            lines.append(f"  {five['what']}: p50 {five['p50_ms']:.2f} p99 {five['p99_ms']:.2f}")
    if result.skipped:
        lines += ["", "skipped:"]
        for skip in result.skipped:
            at = f" at batch {skip.batch}" if skip.batch is not None else ""
            lines.append(f"  {skip.backend} {skip.precision}{at}: {skip.reason}")
    if result.bars:
        lines += ["", f"bars ({result.device}):"]
        for bar in result.bars:
            verdict = {True: "PASS", False: "FAIL", None: "n/a "}[bar["passed"]]
            value = "-" if bar["value"] is None else f"{bar['value']:.2f}"
            extras = [f"goal {bar['goal']}" if bar.get("goal") else "",
                      f"model only {bar['model_path_value']:.2f}" if bar.get("model_path_value") is not None else "",
                      f"mean |dx| {bar['mean_abs_dx']:.4f}" if bar.get("mean_abs_dx") is not None else "",
                      bar["note"]]
            extra = "; ".join(e for e in extras if e)
            lines.append(f"  {verdict}  {bar['what']}: {value}" + (f" ({extra})" if extra else ""))
    return "\n".join(lines)
