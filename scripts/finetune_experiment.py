#!/usr/bin/env python3
"""How many labelled frames of a new floor does fine-tuning the shipped model need? Measured in the simulator.

The new floor is an appearance the shipped model never saw (``HELD_OUT``): ceramic tiles with dark grout, the floor
texture at strength 0.6 where training drew 0.02-0.25, so every 0.2-0.6 m a dark 2 cm line crosses the camera's view
like a line of tape. The script, each step skipped when its result is already in OUT (re-run it to continue):

1. Records N frames with that look for each N in ``--sizes`` on training seeds (every 6th frame of the noisy expert's
   driving, 20 per track, each labelled with the simulator's true road target: what a person clicking would give);
   for the mixed variant also 1000 frames of the usual randomized looks.
2. Drives the shipped model closed loop on the evaluation seeds with the new floor and with the usual randomized look
   (``--laps`` laps each): the "before".
3. Fine-tunes ``models/road_following.pt`` on each set with ``jetracer-trt train --init`` (the commands are written to
   OUT/commands.txt), two variants: ``new``: the N frames alone; ``mixed``: ``--data new-N:3 usual:1``.
4. Drives every fine-tuned ``best.onnx`` the same way (``backend auto``: on a CUDA GPU PyTorch FP16 runs the
   checkpoint beside it; on a CPU ONNX Runtime FP32): the "after". OUT/results.json holds every run; the table is
   printed.

SimWorld takes no appearance of its own, so this script gives every world it makes in a process the held-out look by
replacing ``jetracer_trt.sim.world.sample_appearance`` there (``set_look``); nothing outside this script changes.

usage: PYTHONPATH=. python3 scripts/finetune_experiment.py OUT [--sizes 100,300,1000] [--eval-seeds 1001-1005]
       [--laps 3] [--epochs 30] [--workers 8] [--parallel-trainings 3] [--variants new,mixed]
"""
from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jetracer_trt.sim.appearance import Appearance  # noqa: E402

HELD_OUT = Appearance(floor_style="tiles", floor_rgb=(150, 150, 150), floor_texture_strength=0.6)
SHIPPED_CHECKPOINT = ROOT / "models" / "road_following.pt"
SHIPPED_ONNX = ROOT / "models" / "road_following.onnx"
TRAIN_SEEDS = range(0, 900)  # below the evaluation seeds (1000+); the experiment's tracks start at 0
PER_TRACK, STRIDE = 20, 6  # 20 frames per track, one every 6 camera frames (0.2 s): clicks, not a video
USUAL_FRAMES = 1000
FINE_TUNE = ["--lr", "3e-4", "--batch-size", "16"]  # the recipe under test; --epochs from the command line
LOOKS = ("new floor", "usual randomized")


def set_look(held_out: bool) -> None:
    """Every SimWorld made in this process from now on gets the held-out look (or the usual ones again)."""
    from jetracer_trt.sim import appearance, world

    world.sample_appearance = (lambda rng, randomize: HELD_OUT) if held_out else appearance.sample_appearance


# ---------------------------------------------------------------------------------------------------------------------
# 1. Data


def record_dataset(task: tuple[str, int, bool]) -> str:
    """Records ``frames`` frames into a new dataset at ``out``: ``PER_TRACK`` per track on the training seeds in
    order, every ``STRIDE``-th camera frame of the noisy expert, with the held-out look or the usual randomized ones.
    The same (frames, look) always records the same samples in the same order, and a smaller set is the start of a
    larger one."""
    import cv2

    from jetracer_trt.control import ControlParams
    from jetracer_trt.dataset import DatasetWriter, read_dataset
    from jetracer_trt.sim import SimWorld
    from jetracer_trt.sim.runner import expert_episode

    out, frames, held_out = task
    if Path(out).exists():
        if len(read_dataset(out)[0]) == frames:
            return out
        raise SystemExit(f"{out} holds a partial dataset; delete it and run again")
    cv2.setNumThreads(1)
    set_look(held_out)
    params = ControlParams.from_config(profile="sim")
    with DatasetWriter(out) as writer:
        for k in range(frames // PER_TRACK):
            seed = TRAIN_SEEDS[k]
            world = SimWorld(seed, randomize=not held_out, run_seed=k)
            count = [0]

            def sink(frame, x, y, meta, seed=seed, k=k, count=count):
                if count[0] % STRIDE == 0:
                    writer.append(frame, x, y, track_seed=seed, run_seed=k,
                                  look="held-out" if held_out else "randomized", **meta)
                count[0] += 1

            expert_episode(world, params, PER_TRACK * STRIDE, sink)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# 2, 4. Closed loop


def drive_one(task: tuple[str, int, bool, int]) -> dict:
    """One closed-loop run: the metrics of ``sim eval --json`` for ``model`` on ``seed`` with the held-out look or
    the usual randomized one."""
    import cv2

    from jetracer_trt.contract import ROAD_FOLLOWING
    from jetracer_trt.engines import create_engine
    from jetracer_trt.safety import SafetyGovernor
    from jetracer_trt.sim import SimWorld, drive

    model, seed, held_out, laps = task
    cv2.setNumThreads(1)
    set_look(held_out)
    engine = create_engine("auto", model, task=ROAD_FOLLOWING, threads=1)
    engine.warmup()
    world = SimWorld(seed, randomize=not held_out, run_seed=0)
    metrics = drive(world, engine.infer, SafetyGovernor.from_config("sim"), laps)
    described = engine.describe()
    engine.close()
    return {"model": model, "track_seed": seed, "look": LOOKS[0] if held_out else LOOKS[1], "laps": laps,
            **metrics, "engine": described}


# ---------------------------------------------------------------------------------------------------------------------
# 3. Fine-tuning


def fine_tune(command: list[str], log_path: Path) -> None:
    with open(log_path, "w") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"training failed ({done.returncode}); see {log_path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--sizes", default="100,300,1000", help="frames of the new floor to fine-tune on")
    parser.add_argument("--eval-seeds", default="1001-1005")
    parser.add_argument("--laps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--max-steps", type=int, help="cap every fine-tuning run (smoke runs)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--parallel-trainings", type=int, default=3)
    parser.add_argument("--variants", default="new,mixed")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from jetracer_trt.sim.track import parse_seeds

    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    seeds = parse_seeds(args.eval_seeds)
    variants = args.variants.split(",")
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    started = time.time()
    context = mp.get_context("spawn")  # fresh interpreters: CUDA and the replaced look stay per process

    with futures.ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        datasets = [(str(out / f"new-{n}"), n, True) for n in sizes]
        if "mixed" in variants:
            datasets.append((str(out / "usual"), USUAL_FRAMES, False))
        list(pool.map(record_dataset, datasets))
        print(f"data ready after {time.time() - started:.0f} s", flush=True)

        lock = threading.Lock()
        pending: list[futures.Future] = []

        def drive_all(name: str, model: str) -> None:
            """Queues the closed-loop runs of ``model`` not yet in the results; each is saved as soon as it ends."""
            for seed in seeds:
                for held_out in (True, False):
                    key = f"{name}/{seed}/{LOOKS[not held_out]}"
                    if key in results:
                        continue
                    future = pool.submit(drive_one, (model, seed, held_out, args.laps))
                    future.add_done_callback(lambda f, key=key, name=name: save(key, name, f))
                    with lock:
                        pending.append(future)

        def save(key: str, name: str, future: futures.Future) -> None:
            if future.exception() is not None:
                print(f"{key}: {future.exception()!r}", flush=True)
                return
            with lock:
                results[key] = {"name": name, **future.result()}
                results_path.write_text(json.dumps(results, indent=1))

        models = {"shipped": str(SHIPPED_ONNX)}
        drive_all("shipped", str(SHIPPED_ONNX))  # the "before" drives while the fine-tuning runs
        commands = []
        trainings = []
        for variant in variants:
            for n in sizes:
                run = out / f"ft-{variant}-{n}"
                data = [str(out / f"new-{n}")] if variant == "new" else [f"{out / f'new-{n}'}:3", f"{out / 'usual'}:1"]
                command = [sys.executable, "-m", "jetracer_trt.cli.main", "train", "--init", str(SHIPPED_CHECKPOINT),
                           "--data", *data, "--out", str(run), "--epochs", str(args.epochs), *FINE_TUNE,
                           "--workers", "3", "--device", args.device]
                if args.max_steps:
                    command += ["--max-steps", str(args.max_steps)]
                commands.append(" ".join(command[1:]))
                models[f"{variant}-{n}"] = str(run / "best.onnx")
                trainings.append((f"{variant}-{n}", command, out / f"ft-{variant}-{n}.log"))
        (out / "commands.txt").write_text("\n".join(commands) + "\n")

        def train_then_drive(name: str, command: list[str], log_path: Path) -> None:
            if not Path(models[name]).exists():
                fine_tune(command, log_path)
                print(f"{name} fine-tuned after {time.time() - started:.0f} s", flush=True)
            drive_all(name, models[name])

        with futures.ThreadPoolExecutor(args.parallel_trainings) as threads:
            for _ in threads.map(lambda job: train_then_drive(*job), trainings):
                pass
        futures.wait(pending)
    print(f"driven after {time.time() - started:.0f} s", flush=True)
    print(table(results, models, seeds, args.laps, out))
    return 0


def table(results: dict, models: dict, seeds: list[int], laps: int, out: Path) -> str:
    """The markdown table: per model and look, laps completed and off-track events summed over the seeds, mean
    |CTE| over the runs, and the fine-tuning run's best validation loss."""
    lines = [f"| model | {LOOKS[0]}: laps / {laps * len(seeds)}, off-track | {LOOKS[0]}: mean \\|CTE\\| (m) | "
             f"{LOOKS[1]}: laps / {laps * len(seeds)}, off-track | {LOOKS[1]}: mean \\|CTE\\| (m) | "
             "best val loss, steps |",
             "|---|---|---|---|---|---|"]
    for name in models:
        cells = [name]
        for look in LOOKS:
            runs = [results.get(f"{name}/{seed}/{look}") for seed in seeds]
            runs = [r for r in runs if r]
            if not runs:
                cells += ["", ""]
                continue
            per_seed = " ".join(str(r["off_track_events"]) for r in runs)
            cells.append(f"{sum(r['laps_completed'] for r in runs)}, {sum(r['off_track_events'] for r in runs)} "
                         f"({per_seed})")
            cells.append(f"{sum(r['mean_abs_cte_m'] for r in runs) / len(runs):.3f}")
        metrics_path = out / f"ft-{name}" / "metrics.jsonl"
        best = ""
        if metrics_path.exists():
            rows = [json.loads(line) for line in metrics_path.read_text().splitlines()]
            best = f"{min(r.get('val_loss', float('inf')) for r in rows):.5f}, {rows[-1]['global_step']}"
        cells.append(best)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
