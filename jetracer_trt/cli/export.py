"""``jetracer-trt export``: checkpoint -> ONNX, verified against PyTorch before anything is written: a road-following
checkpoint, or a pose one (ours, of the network it names, or trt_pose's ``resnet18_baseline_att`` weights: two
outputs, ``cmap`` and ``paf``).

torch and onnx are imported only inside ``run``: ``jetracer-trt --help`` and the driving runtime work without them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OPSET = 17  # repeated from jetracer_trt.export so the parser needs no torch; a test keeps them equal
TASKS = ("road_following", "pose")  # as jetracer_trt.export.OnnxExport.TASKS


def register(subparsers) -> None:
    """Adds the ``export`` verb."""
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX, verified against PyTorch",
        description=(
            "Export a training checkpoint (RUN/best.pt, RUN/last.pt, or a JetRacer notebook ResNet18 state dict) to "
            "ONNX with a dynamic batch dimension. A pose checkpoint (jetracer-trt train --task pose, of the network it "
            "names: resnet18_baseline_att or pose_small_resnet18_l2; or trt_pose's own resnet18_baseline_att "
            "weights such as resnet18_baseline_att_224x224_A_epoch_249.pth) becomes an "
            "ONNX model with two outputs, cmap (batch x keypoints x 56 x 56 for a 224x224 input) and paf (batch x "
            "2 links x 56 x 56), carrying its topology; it is verified on synthetic scenes of people. The "
            "FP16-exact weights of best.pt are stored as float16 (losslessly; ONNX Runtime computes in FP32), so "
            "the file is about half the FP32 size. Before OUT is written, ONNX Runtime is checked against PyTorch "
            "on real frames (every output within 1e-4 on the worst frame and 2e-5 on average); a model that fails "
            "is not written. OUT carries the checkpoint's model contract (input size, mean/std, resize, outputs), "
            "which every backend runs it by, and the checkpoint's SHA-256, so that `backend auto` runs the "
            "checkpoint (or a package compiled from it) in the ONNX model's place only when it is that checkpoint. "
            "An existing OUT is replaced only with --force."
        ),
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", type=Path,
                        help="checkpoint file, e.g. runs/r1/best.pt")
    parser.add_argument("--out", metavar="MODEL.onnx", type=Path,
                        help="ONNX file to write (atomically); default: the checkpoint's name with .onnx, beside it")
    parser.add_argument(
        "--frames", metavar="DIR",
        help="dataset (or image folder, or pose dataset) whose frames verify the export; default: frames of the "
             "simulated track, or synthetic scenes of people for a pose model",
    )
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, metavar="N", help=f"ONNX opset (default: {DEFAULT_OPSET})"
    )
    parser.add_argument("--task", choices=TASKS,
                        help="what the checkpoint is (default: found out from the file; trt_pose's weights are pose)")
    parser.add_argument("--topology", metavar="JSON", type=Path,
                        help="trt_pose topology of a pose checkpoint made for another one than the default "
                             "config/human_pose.json (ours carry their own)")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exports and prints what was written and how well it agrees with PyTorch."""
    from ..export import export_onnx  # torch, onnx: imported only when exporting
    from .convert import describe_result

    topology = None
    if args.topology is not None:
        from ..pose.topology import load_topology

        topology = load_topology(args.topology)
    result = export_onnx(args.checkpoint, args.out, frames_dir=args.frames, opset=args.opset, force=args.force,
                         task=args.task, topology=topology)
    print(describe_result(result, args.checkpoint))
    return 0
