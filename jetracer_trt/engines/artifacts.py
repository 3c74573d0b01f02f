"""Where converted models sit beside their source, so that ``backend auto`` can find them without being told.

``models/road_following.onnx`` is the source; ``jetracer-trt convert`` writes (when asked to, with these ``--out``
names) ``road_following.int8.onnx`` (ONNX Runtime INT8), ``road_following.<precision>.engine`` (TensorRT, with
``.engine.json`` beside it), ``road_following.<precision>.<device>.pt2`` (PyTorch AOTInductor) and
``road_following.<precision>.trt.pth`` (torch2trt).
"""
from __future__ import annotations

from pathlib import Path

SUFFIXES = {"onnxruntime": ".onnx", "tensorrt": ".engine", "torch2trt": ".trt.pth"}


def checkpoint_path(source) -> Path:
    """The PyTorch checkpoint ``source`` (an ``.onnx`` or a converted file) was made from: ``<stem>.pt`` beside it."""
    source = Path(source)
    return source.with_name(f"{source.name.split('.')[0]}.pt")


def converted_path(source, backend: str, precision: str, device: str = "cuda") -> Path:
    """The conventional file name of ``source`` converted for ``backend`` at ``precision``."""
    source = Path(source)
    stem = source.name.split(".")[0]
    if backend == "torch":
        return source.with_name(f"{stem}.{precision}.{device}.pt2")
    if backend == "onnxruntime" and precision == "fp32":
        return source.with_name(f"{stem}.onnx")
    return source.with_name(f"{stem}.{precision}{SUFFIXES[backend]}")
