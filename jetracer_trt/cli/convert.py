"""``jetracer-trt convert``: the FP32 model -> a faster one for this machine, verified on real frames before it is
written.

Nothing heavy is imported to build the parser: the chosen route (``jetracer_trt.convert``) imports onnxruntime,
TensorRT or torch only when it runs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from ..errors import JetracerError

BACKENDS = ("tensorrt", "torch", "onnxruntime")  # as jetracer_trt.convert.BACKENDS; a test keeps them equal
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_CALIB_FRAMES = 512  # as ConvertRequest's defaults (a test keeps them equal); repeated so --help needs no import
DEFAULT_VERIFY_FRAMES = 64
DEFAULT_WORKSPACE_MB = 1024

DESCRIPTION = """\
Convert the shipped FP32 road-following model into a faster one for the machine it will run on. Every result is
checked against the source model on real frames (dataset frames from --calib, else simulator frames) and written
only if every output (x and y) agrees within the tolerance of its precision, on the worst frame and on average
(|diff| worst / mean: fp32 1e-4 / 2e-5, fp16 1e-2 / 2e-3, int8 0.1 / 0.02); the error is printed per output.
The result records the model contract and the SHA-256 of its source, and `backend auto` uses it only with that
source. Without --out it is written beside the source under the name `backend auto` looks for, so that, e.g.,
`jetracer-trt convert --backend onnxruntime --precision int8` is all it takes for `jetracer-trt sim eval` to drive
with it. An existing file is never replaced without --force.

Which backend and precision:
  Jetson (the car)          --backend tensorrt --precision fp16   the usual choice: about half the latency of fp32
                            --backend tensorrt --precision int8   faster still; calibrate with --calib DATASET
                            --backend tensorrt --via torch2trt    the same through torch2trt, from the checkpoint
  laptop / CI (CPU only)    --backend onnxruntime --precision int8
                                                                  an INT8 ONNX for ONNX Runtime on a CPU (fp32 needs
                                                                  no conversion: the shipped .onnx is that model)
  CUDA GPU without TensorRT --backend torch --precision fp16      an ahead-of-time compiled PyTorch package (.pt2)
                                                                  that starts in seconds

A TensorRT engine only runs on the GPU model and TensorRT version it was built with: convert on the device.
"""

EPILOG = """\
examples (each writes beside the shipped models/road_following.onnx, where `backend auto` finds it):
  jetracer-trt convert --backend onnxruntime --precision int8 --calib data     # road_following.int8.onnx
  jetracer-trt convert --backend tensorrt --precision fp16                     # road_following.fp16.engine
  jetracer-trt convert --backend tensorrt --precision int8 --calib data        # road_following.int8.engine
"""


def register(subparsers) -> None:
    """Adds the ``convert`` verb."""
    parser = subparsers.add_parser(
        "convert", help="convert the model for TensorRT, ONNX Runtime INT8 or compiled PyTorch, verified",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", required=True, choices=BACKENDS,
                        help="what will run the result: tensorrt (Jetson, a .engine), onnxruntime (CPU, an INT8 .onnx)"
                             " or torch (CUDA GPU without TensorRT, an AOTInductor .pt2)")
    parser.add_argument("--precision", required=True, choices=PRECISIONS,
                        help="fp32 (exact), fp16 (GPUs), int8 (needs calibration frames; tensorrt and onnxruntime)")
    parser.add_argument("--model", metavar="SRC", type=Path,
                        help="the FP32 source: an .onnx (tensorrt, onnxruntime) or a checkpoint .pt (torch, --via "
                             "torch2trt); default: the shipped models/road_following.onnx, or the .pt beside it")
    parser.add_argument("--out", metavar="PATH", type=Path,
                        help="file to write (atomically; only once verified); default: beside the source, under the "
                             "name backend auto looks for (road_following.int8.onnx, road_following.fp16.engine, ...)")
    parser.add_argument("--calib", metavar="DIR", type=Path,
                        help="dataset from `jetracer-trt sim collect` (or a folder of images) to calibrate INT8 and "
                             "verify on; default: simulator frames")
    parser.add_argument("--calib-frames", type=int, default=DEFAULT_CALIB_FRAMES, metavar="N",
                        help=f"frames that calibrate INT8, spread over --calib (default: {DEFAULT_CALIB_FRAMES})")
    parser.add_argument("--verify-frames", type=int, default=DEFAULT_VERIFY_FRAMES, metavar="N",
                        help="frames the result is checked on, apart from the calibration frames "
                             f"(default: {DEFAULT_VERIFY_FRAMES})")
    parser.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MB, metavar="MB",
                        help=f"TensorRT builder workspace (default: {DEFAULT_WORKSPACE_MB})")
    parser.add_argument("--max-batch", type=int, default=1, metavar="N",
                        help="the largest batch the result must run (default: 1, the car's camera)")
    parser.add_argument("--via", choices=("torch2trt",),
                        help="build the TensorRT engine with NVIDIA's torch2trt from the checkpoint")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    parser.add_argument("--verbose", action="store_true", help="list the layers and the precision each runs in")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the result, nothing else")
    parser.set_defaults(func=run)


def default_source(backend: str, via: str | None) -> Path:
    """The shipped model a route starts from: the checkpoint for torch and torch2trt, the ONNX otherwise."""
    from ..config import default_model_path
    from ..engines.artifacts import checkpoint_path

    onnx_path = default_model_path()
    return checkpoint_path(onnx_path) if backend == "torch" or via == "torch2trt" else onnx_path


def build_request(args: argparse.Namespace):
    """A ``ConvertRequest`` from the arguments; JetracerError for input that no route could use."""
    from ..convert import ConvertRequest

    source = args.model if args.model is not None else default_source(args.backend, args.via)
    if not source.is_file():
        raise JetracerError(f"model file not found: {source}")
    if args.calib is not None and not args.calib.is_dir():
        raise JetracerError(f"--calib {args.calib} is not a folder; give a dataset from `jetracer-trt sim collect` "
                            "or a folder of images")
    for flag, value in (("--calib-frames", args.calib_frames), ("--verify-frames", args.verify_frames),
                        ("--workspace", args.workspace), ("--max-batch", args.max_batch)):
        if value < 1:
            raise JetracerError(f"{flag} must be a positive integer, got {value}")
    return ConvertRequest(source=source, out=args.out, precision=args.precision, calib_dir=args.calib,
                          calib_frames=args.calib_frames, verify_frames=args.verify_frames,
                          workspace_mb=args.workspace, max_batch=args.max_batch, force=args.force,
                          verbose=args.verbose)


def run(args: argparse.Namespace) -> int:
    """Converts; prints what was written, the error per output against the source and the time (or one JSON
    object with ``--json``)."""
    from ..convert import convert

    request = build_request(args)
    # with --json, stdout carries the JSON object alone: whatever a library prints goes to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        try:
            result = convert(args.backend, request, via=args.via)
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("jetracer_trt."):
                raise
            route = f"--backend {args.backend}" + (f" --via {args.via}" if args.via else "")
            raise JetracerError(f"conversion {route} is not available in this version of jetracer_trt") from None
    print(json.dumps(result.as_dict()) if args.json else describe_result(result, request.source))
    return 0


def describe_result(result, source: Path) -> str:
    """What a conversion (or an export) wrote, for the user: the file, how well it agrees with ``source``, the
    route's notes and the time taken."""
    size = result.path.stat().st_size / 1e6 if result.path.is_file() else 0.0
    lines = [f"wrote {result.path} ({result.backend} {result.precision}, {size:.1f} MB)"]
    lines += [f"  and {extra}" for extra in result.files if extra != result.path]
    lines.append(f"agrees with {source.name}: {result.comparison.report()}")
    lines += [f"  {note}" for note in result.notes]
    lines.append(f"took {result.seconds:.1f} s")
    return "\n".join(lines)
