"""``jetracer-trt convert``: the FP32 model -> a faster one for this machine, verified before it is written.

One module per route, each with ``convert(request: ConvertRequest) -> ConvertResult``, imported only when chosen:

| backend / via        | module              | source       | precisions        | output                     |
|----------------------|---------------------|--------------|-------------------|----------------------------|
| onnxruntime          | ``onnxruntime_int8``| ``.onnx``    | int8              | QOperator U8S8 ``.onnx``   |
| tensorrt             | ``tensorrt_build``  | ``.onnx``    | fp32, fp16, int8  | ``.engine`` + sidecar      |
| torch                | ``torch_aot``       | checkpoint   | fp32, fp16        | AOTInductor ``.pt2``       |
| tensorrt via torch2trt | ``torch2trt_build`` | checkpoint | fp32, fp16, int8  | TRTModule ``.trt.pth``     |
"""
from __future__ import annotations

import importlib

from ..errors import JetracerError
from .common import ConvertRequest, ConvertResult

ROUTES = {
    ("onnxruntime", None): "onnxruntime_int8",
    ("tensorrt", None): "tensorrt_build",
    ("torch", None): "torch_aot",
    ("tensorrt", "torch2trt"): "torch2trt_build",
}
BACKENDS = ("tensorrt", "torch", "onnxruntime")


def convert(backend: str, request: ConvertRequest, via: str | None = None) -> ConvertResult:
    """Runs the conversion route for ``backend`` (and ``via``); JetracerError for a route that does not exist."""
    module = ROUTES.get((backend, via))
    if module is None:
        if backend not in BACKENDS:
            raise JetracerError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        raise JetracerError(f"--via {via} works only with --backend tensorrt")
    return importlib.import_module(f".{module}", __name__).convert(request)


__all__ = ["BACKENDS", "ConvertRequest", "ConvertResult", "convert"]
