"""``jetracer-trt``: drive, collect, train, export and check from one command.

Each verb module adds its parser with ``register(subparsers)`` and sets ``func``; a ``JetracerError`` raised anywhere
becomes ``error: <message>`` on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import JetracerError

VERB_MODULES = ("sim", "launch", "calibrate", "neutral", "joy", "data", "train", "export", "convert", "benchmark")

DESCRIPTION = """\
Self-driving JetRacer-style car: a ResNet18 looks at the camera frame and predicts the point on the road to steer
towards; a control law turns that point into steering and throttle.

Typical workflow:
  jetracer-trt sim eval --plot lap.png           drive the simulated car with the shipped model
  jetracer-trt sim collect --out data --frames 5000 --randomize
                                                 record expert-labelled frames in the simulator
  jetracer-trt data check data                   count good and corrupt samples of a dataset
  jetracer-trt train --data data --out runs/r1   train the road-following ResNet18 (GPU recommended)
  jetracer-trt export --checkpoint runs/r1/best.pt --out model.onnx
                                                 export to ONNX, verified against PyTorch
  jetracer-trt convert --backend tensorrt --precision fp16 --out models/road_following.fp16.engine
                                                 build a faster model for this machine (on the car)
  jetracer-trt benchmark --batch 1,8             time every backend that runs here against PyTorch
  jetracer-trt launch drive                      run the ROS 2 drive graph (camera, inference, control)
  jetracer-trt joy test                          show the gamepad's raw codes and mapped values
Run `jetracer-trt <verb> --help` for each verb's options.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jetracer-trt", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="verb", metavar="<verb>")
    for name in VERB_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(argv)
    except KeyboardInterrupt:  # Ctrl-C at any point, the verbs' imports included
        print("interrupted", file=sys.stderr)
        return 130


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except JetracerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
