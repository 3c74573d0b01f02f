"""``jetracer-trt train``: train the road-following ResNet18 on recorded datasets.

torch is imported only inside ``run``: ``jetracer-trt --help`` and the driving runtime work without it.
"""
from __future__ import annotations

import argparse

from ..config import load_config
from ..errors import JetracerError


def _defaults() -> dict:
    """config/train.yaml for the help texts; an unreadable config must not break ``--help``."""
    try:
        return load_config("train")
    except JetracerError:
        return {}


def register(subparsers) -> None:
    """Adds the ``train`` verb."""
    d = _defaults()

    def dflt(key: str) -> str:
        return f" (default: {d[key]}, from config/train.yaml)" if key in d else " (default: config/train.yaml)"

    parser = subparsers.add_parser(
        "train",
        help="train the road-following ResNet18 (GPU recommended)",
        description=(
            "Train a torchvision ResNet18 with a 2-output head to predict the road target (x, y) of each frame. "
            "Writes RUN/metrics.jsonl (one line per epoch), RUN/loss.png, RUN/best.pt (the best epoch by validation "
            "loss, FP16 weights, small) and RUN/last.pt (full state for --resume). Defaults come from "
            "config/train.yaml; the augmentation strengths are set there."
        ),
    )
    parser.add_argument(
        "--data", nargs="+", metavar="DIR", help="dataset folder(s); optional with --resume (the run's own)"
    )
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder (created if needed)")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN from RUN/last.pt up to --epochs")
    parser.add_argument("--epochs", type=int, help="passes over the training split" + dflt("epochs"))
    parser.add_argument("--batch-size", type=int, help="images per optimizer step" + dflt("batch_size"))
    parser.add_argument("--lr", type=float, help="AdamW peak learning rate" + dflt("lr"))
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay" + dflt("weight_decay"))
    parser.add_argument(
        "--val-fraction", type=float, help="share held out for validation (whole tracks)" + dflt("val_fraction")
    )
    parser.add_argument("--seed", type=int, help="seed of init, split, shuffling and augmentation" + dflt("seed"))
    parser.add_argument("--workers", type=int, help="JPEG-decoding DataLoader processes, 0 = none" + dflt("workers"))
    parser.add_argument(
        "--weights", choices=("imagenet", "none"),
        help="backbone init; imagenet only if already in the torch hub cache, else from scratch" + dflt("weights"),
    )
    parser.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"), help="training device (default: auto)"
    )
    parser.add_argument(
        "--max-steps", type=int, metavar="N", help="stop after N optimizer steps in total (smoke runs, tests)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Trains, then prints where the best checkpoint is and how good it was."""
    if not args.data and not args.resume:
        raise JetracerError("train needs --data DIR (or --resume to continue a run)")
    from ..train import train  # torch: imported only when training

    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "val_fraction": args.val_fraction,
        "seed": args.seed,
        "workers": args.workers,
        "weights": args.weights,
    }
    result = train(
        args.data, args.out, overrides=overrides, resume=args.resume, device=args.device, max_steps=args.max_steps
    )
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
    print(f"best checkpoint: {result.best_path}")
    print(f"metrics: {result.metrics_path}  plot: {result.plot_path}  resume state: {result.last_path}")
    return 0
