"""``jetracer-trt train``: train a model on recorded datasets, in one process or several (``--nproc``, torchrun).

``--task`` picks what is trained (default ``road_following``); ``TASK_MODULES`` names the module that trains each
task. A task's module provides ``run_cli(args) -> int`` (train with the parsed options, print the summary) and runs
with ``python -m MODULE ARGS`` by calling ``main()`` below, which is what ``--nproc N`` has torchrun start in each
process. Road following is ``jetracer_trt.train``, whose ``run_cli`` is ``run_road_following`` here.

torch is imported only when training: ``jetracer-trt --help`` and the driving runtime work without it.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ..config import load_config
from ..errors import JetracerError

# task -> the module that trains it (its run_cli and, for torchrun, its `python -m` entry)
TASK_MODULES = {"road_following": "jetracer_trt.train", "pose": "jetracer_trt.pose.train"}
DEFAULT_TASK = "road_following"
TORCHRUN = ("-m", "torch.distributed.run")  # PyTorch's own launcher, `torchrun`, as a module of this interpreter


def _defaults() -> dict:
    """config/train.yaml for the help texts; an unreadable config must not break ``--help``."""
    try:
        return load_config("train")
    except JetracerError:
        return {}


DESCRIPTION = """\
Train a torchvision ResNet18 with a 2-output head to predict the road target (x, y) of each frame, from scratch or
fine-tuned from a model (--init). Writes RUN/metrics.jsonl (one line per epoch), RUN/loss.png, RUN/best.pt (the best
epoch by validation loss, FP16 weights, small), RUN/last.pt (full state for --resume) and, at the end, RUN/best.onnx:
best.pt exported to ONNX and verified against it, with its model contract and the checkpoint's SHA-256, which is what
`jetracer-trt convert --model RUN/best.onnx` takes on the car. Defaults come from config/train.yaml; the augmentation
strengths are set there. --task pose trains the pose network instead (jetracer_trt/pose/train.py).
"""

EPILOG = """\
examples:
  jetracer-trt train --data data --out runs/r1                                       # from scratch
  jetracer-trt train --data real:3 sim:1 --init models/road_following.pt --lr 3e-4 --epochs 10 --out runs/ft
  jetracer-trt train --data data --out runs/r1 --nproc 2                             # 2 processes (GPUs) via torchrun
  torchrun --nproc-per-node 2 -m jetracer_trt.train --data data --out runs/r1        # the same
  jetracer-trt train --out runs/r1 --resume --epochs 40                              # continue, 1 or N processes
"""


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``train``, shared by ``jetracer-trt train`` and ``python -m jetracer_trt.train``."""
    d = _defaults()

    def dflt(key: str) -> str:
        return f" (default: {d[key]}, from config/train.yaml)" if key in d else " (default: config/train.yaml)"

    parser.add_argument("--task", choices=tuple(TASK_MODULES), default=DEFAULT_TASK,
                        help=f"what to train (default: {DEFAULT_TASK})")
    parser.add_argument(
        "--data", nargs="+", metavar="DIR[:W]",
        help="dataset folder(s); DIR:W weights a folder: each epoch draws from it in proportion to W (e.g. real:3 "
             "sim:1; a weight for every folder or none; none: every sample once per epoch); optional with --resume "
             "(the run's own)",
    )
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder (created if needed)")
    parser.add_argument("--init", metavar="MODEL",
                        help="fine-tune from this model: a checkpoint of ours (e.g. models/road_following.pt; its "
                             "model contract is kept) or a JetRacer notebook ResNet18 state dict (.pth; the default "
                             "contract). The optimizer and its schedule start fresh; a lower --lr (3e-4) suits")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN from RUN/last.pt up to --epochs")
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help="train in N processes (N GPUs, or N CPU processes with --device cpu) with "
                             "DistributedDataParallel, started by torchrun; --batch-size is the global batch "
                             "(default: 1)")
    parser.add_argument("--epochs", type=int, help="passes over the training split" + dflt("epochs"))
    parser.add_argument("--batch-size", type=int,
                        help="images per optimizer step, over all processes" + dflt("batch_size"))
    parser.add_argument("--lr", type=float, help="AdamW peak learning rate" + dflt("lr"))
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay" + dflt("weight_decay"))
    parser.add_argument(
        "--val-fraction", type=float,
        help="share held out for validation (whole tracks and sessions)" + dflt("val_fraction"),
    )
    parser.add_argument("--seed", type=int, help="seed of init, split, shuffling and augmentation" + dflt("seed"))
    parser.add_argument("--workers", type=int,
                        help="JPEG-decoding DataLoader processes per training process, 0 = none" + dflt("workers"))
    parser.add_argument(
        "--weights", choices=("imagenet", "none"),
        help="backbone init; imagenet only if already in the torch hub cache, else from scratch" + dflt("weights"),
    )
    parser.add_argument("--batchnorm", choices=("batch", "frozen"),
                        help="batch: BatchNorm normalises with each batch's statistics (each process's own); frozen: "
                             "with the running statistics of the model, kept (fine-tuning on few images)"
                             + dflt("batchnorm"))
    parser.add_argument("--augment", choices=("on", "off"),
                        help="on: the augmentation of config/train.yaml; off: none (default: on)")
    parser.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="training device (default: auto)"
    )
    parser.add_argument(
        "--max-steps", type=int, metavar="N", help="stop after N optimizer steps in total (smoke runs, tests)"
    )
    parser.add_argument("--minutes", type=float, metavar="M", help="--task pose: a time budget; the learning rate "
                        "anneals over it and the run ends when it is spent (default: config/pose_train.yaml)")
    parser.add_argument("--arch", metavar="NAME",
                        help="--task pose: which pose network: resnet18_baseline_att (trt_pose's) or "
                             "pose_small_resnet18_l2 (ours, small and fast on a CPU; models/POSE_MODEL_CARD.md) "
                             "(default: arch of config/pose_train.yaml)")
    parser.add_argument("--no-export", action="store_true", help="do not write RUN/best.onnx at the end")


def register(subparsers) -> None:
    """Adds the ``train`` verb."""
    parser = subparsers.add_parser(
        "train", help="train the road-following ResNet18, or fine-tune it on your data (GPU recommended)",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser)
    parser.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """``python -m jetracer_trt.train ARGS``: the train verb alone, as torchrun starts it in each process.

    Only process 0 logs below warnings; an error ends each process with ``error: ...`` and status 2."""
    parser = argparse.ArgumentParser(prog="python -m jetracer_trt.train", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_options(parser)
    args = parser.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    level = logging.DEBUG if args.verbose else logging.INFO if rank == "0" else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s" if rank == "0"
                        else f"%(levelname)s [process {rank}] %(name)s: %(message)s")
    try:
        return int(run(args) or 0)
    except JetracerError as exc:
        print(f"error: {exc}" if rank == "0" else f"error: [process {rank}] {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def torchrun_command(args: argparse.Namespace) -> list[str]:
    """The command that trains ``args`` in ``args.nproc`` processes: torchrun on this machine (``--standalone``:
    it picks a free port), each process running the task's module with the same options but ``--nproc``."""
    options: list[str] = ["--task", args.task]
    if getattr(args, "verbose", False):
        options.append("-v")
    if args.data:
        options += ["--data", *args.data]
    for flag in ("--out", "--init", "--epochs", "--batch-size", "--lr", "--weight-decay", "--val-fraction", "--seed",
                 "--workers", "--weights", "--batchnorm", "--augment", "--device", "--max-steps", "--minutes",
                 "--arch"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            options += [flag, str(value)]
    for flag in ("--resume", "--no-export"):
        if getattr(args, flag[2:].replace("-", "_")):
            options.append(flag)
    return [sys.executable, *TORCHRUN, "--standalone", "--nproc-per-node", str(args.nproc),
            "-m", TASK_MODULES[args.task], *options]


def run(args: argparse.Namespace) -> int:
    """Trains ``args.task``: here, or with ``--nproc N`` > 1 by replacing this process with torchrun."""
    if args.nproc < 1:
        raise JetracerError(f"--nproc must be at least 1, got {args.nproc}")
    if args.nproc > 1:
        if "LOCAL_RANK" in os.environ:
            raise JetracerError("--nproc starts torchrun, and this process already runs under it; leave --nproc out")
        if args.batch_size is not None and args.batch_size % args.nproc:
            raise JetracerError(f"--batch-size {args.batch_size} must be a multiple of --nproc {args.nproc}: every "
                                "process takes the same share of each batch")
        command = torchrun_command(args)
        print("starting: " + " ".join(command[1:]), file=sys.stderr, flush=True)
        sys.stdout.flush()
        os.execv(command[0], command)
    if args.task == DEFAULT_TASK:
        return run_road_following(args)
    try:
        module = importlib.import_module(TASK_MODULES[args.task])
    except ModuleNotFoundError as exc:
        if exc.name and TASK_MODULES[args.task].startswith(exc.name):
            raise JetracerError(f"--task {args.task}: this install has no trainer for it ({TASK_MODULES[args.task]} "
                                "is missing)") from None
        raise
    return int(module.run_cli(args) or 0)


def run_road_following(args: argparse.Namespace) -> int:
    """Trains, exports best.pt to best.onnx beside it (process 0), then prints where everything is and how good the
    model was."""
    if getattr(args, "arch", None) is not None:
        raise JetracerError("--arch picks a pose network (--task pose); road following trains its ResNet18")
    if not args.data and not args.resume:
        raise JetracerError("train needs --data DIR (or --resume to continue a run)")
    from ..train import export_best, train  # torch: imported only when training

    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "workers": args.workers,
        "weights": args.weights,
        "batchnorm": args.batchnorm,
        "augment": _augment_override(args.augment),
    }
    result = train(
        args.data, args.out, overrides=overrides, resume=args.resume, device=args.device, max_steps=args.max_steps,
        init=args.init,
    )
    if not result.main_process:
        return 0
    if result.best_path is None:
        print(f"no epoch finished; run state in {result.last_path}")
        return 1
    metrics = result.best_metrics
    errors = ", ".join(f"mean |d{k[len('val_mae_'):]}| {v:.4f}" for k, v in metrics.items() if k.startswith("val_mae_"))
    score = metrics.get(result.selected_by)
    print(
        f"best {result.selected_by.replace('_', ' ')} {score:.5f} at epoch {result.best_epoch}"
        + (f" ({errors})" if errors else "")
        + f"; {result.epochs_done} epochs, {result.global_step} steps"
    )
    for name, row in (metrics.get("val_datasets") or {}).items():
        print(f"  {name}: val loss {row['val_loss']:.5f} on {row['samples']} samples")
    print(f"best checkpoint: {result.best_path}")
    print(f"metrics: {result.metrics_path}  plot: {result.plot_path}  resume state: {result.last_path}")
    if not args.no_export:
        from .convert import describe_result

        exported = export_best(result)
        onnx_path = result.best_path.with_suffix(".onnx")
        print(describe_result(exported, result.best_path) if exported else f"ONNX model: {onnx_path} (up to date)")
        print(f"on the car: jetracer-trt convert --backend tensorrt --precision fp16 --model {onnx_path}")
    return 0


def _augment_override(choice: str | None) -> dict | None:
    """``--augment off``: every augmentation strength of config/train.yaml at 0; on or not given: as configured."""
    if choice != "off":
        return None
    return {key: 0 for key in (_defaults().get("augment") or {})}
