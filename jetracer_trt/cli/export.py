"""``jetracer-trt export``: checkpoint -> ONNX, verified against PyTorch before anything is written.

torch and onnx are imported only inside ``run``: ``jetracer-trt --help`` and the driving runtime work without them.
"""
from __future__ import annotations

import argparse

DEFAULT_OPSET = 17  # repeated from jetracer_trt.export so the parser needs no torch; a test keeps them equal


def register(subparsers) -> None:
    """Adds the ``export`` verb."""
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX, verified against PyTorch",
        description=(
            "Export a training checkpoint (RUN/best.pt, RUN/last.pt) to ONNX with a dynamic batch dimension. The "
            "FP16-exact weights of best.pt are stored as float16 (losslessly; ONNX Runtime computes in FP32), so the "
            "file is about half the FP32 size. Before OUT is written, ONNX Runtime is checked against PyTorch on "
            "real frames (every output within 1e-4 on the worst frame and 2e-5 on average); a model that fails is "
            "not written. OUT records the checkpoint's SHA-256, so that `backend auto` runs the checkpoint (or a "
            "package compiled from it) in the ONNX model's place only when it is that checkpoint."
        ),
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="checkpoint file, e.g. runs/r1/best.pt")
    parser.add_argument("--out", required=True, metavar="MODEL.onnx", help="ONNX file to write (replaced atomically)")
    parser.add_argument(
        "--frames", metavar="DIR",
        help="dataset (or image folder) whose frames verify the export; default: frames of the simulated track",
    )
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, metavar="N", help=f"ONNX opset (default: {DEFAULT_OPSET})"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Exports and prints the verification result, the file size and the path."""
    from ..export import export_onnx  # torch, onnx: imported only when exporting

    result = export_onnx(args.checkpoint, args.out, frames_dir=args.frames, opset=args.opset)
    print(f"verified ONNX Runtime against PyTorch: {result.comparison.report()}")
    print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, opset {result.opset}, "
        f"{result.fp16_initializers} weight tensors stored as FP16, {result.fp32_initializers} as FP32)"
    )
    print(f"  made from {args.checkpoint}, SHA-256 {result.checkpoint_sha256}")
    return 0
