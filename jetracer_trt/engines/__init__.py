"""Inference backends behind one interface. ``create_engine`` imports only the backend it is asked for.

| backend      | model file                                   | runs on                                   |
|--------------|----------------------------------------------|-------------------------------------------|
| onnxruntime  | ``.onnx`` (FP32, or INT8 from ``convert``)   | CPU; CUDA / TensorRT providers if present |
| torch        | ``.pt`` checkpoint, or ``.pt2`` AOTInductor  | CUDA (FP16/FP32, CUDA graphs) or CPU      |
| tensorrt     | ``.engine`` plan + its ``.json`` sidecar     | CUDA GPU with TensorRT 10/11              |
| torch2trt    | ``.pth`` TRTModule state dict + sidecar      | CUDA GPU with torch2trt                   |

Every engine runs the model by the contract its file carries (``engine.contract``, ``contract.py``): a road-following
model's columns (``infer``, ``infer_batch``) or a pose model's output tensors by name (``infer_tensors``,
``infer_batch_tensors``: ``cmap`` and ``paf``), each from buffers preallocated per output (``base.py``).
"""
from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path

from ..errors import JetracerError
from .base import PRECISIONS, InferenceEngine

log = logging.getLogger(__name__)

# backend -> (module in this package, engine class); imported only when chosen
_REGISTRY = {
    "onnxruntime": ("onnxruntime_engine", "OnnxRuntimeEngine"),
    "torch": ("torch_engine", "TorchEngine"),
    "tensorrt": ("tensorrt_engine", "TensorRTEngine"),
    "torch2trt": ("torch2trt_engine", "Torch2TRTEngine"),
}
BACKENDS = tuple(_REGISTRY)


def engine_class(backend: str) -> type[InferenceEngine]:
    """The engine class of ``backend`` (its module imported now, not before); JetracerError for an unknown one."""
    if backend not in _REGISTRY:
        raise JetracerError(f"unknown inference backend {backend!r}; choose one of {', '.join(BACKENDS + ('auto',))}")
    module, cls = _REGISTRY[backend]
    return getattr(importlib.import_module(f".{module}", __name__), cls)


def create_engine(backend: str, model_path, task: str | None = None, **options) -> InferenceEngine:
    """An engine for ``backend`` loaded from ``model_path``; ``auto`` picks the backend and file (``select.py``)
    and logs what it picked and why.

    ``task``: the task the model must do (``contract.ROAD_FOLLOWING``); a model whose contract names another is
    refused with JetracerError. ``options`` are the common ones (``max_batch``, ``threads``, ``precision``,
    ``device``) plus a backend's own; those the chosen backend does not take (``threads`` for a GPU backend) are
    ignored, so callers never branch on the backend.
    """
    selection = ""
    if backend == "auto":
        from .select import choose_backend

        choice = choose_backend(model_path)
        selection = choice.explain()
        log.info("%s", selection)
        backend, model_path = choice.backend, choice.model
    cls = engine_class(backend)
    accepted = inspect.signature(cls.__init__).parameters
    used = {k: v for k, v in options.items() if k in accepted}
    ignored = sorted(set(options) - set(used))
    if ignored:
        log.debug("%s backend ignores options %s", backend, ", ".join(ignored))
    engine = cls(model_path, **used)
    engine.selection = selection
    engine.model_path = Path(model_path)
    if task is not None:
        try:
            engine.contract.require_task(task, model_path)
        except JetracerError:
            engine.close()
            raise
    return engine


__all__ = ["BACKENDS", "PRECISIONS", "InferenceEngine", "create_engine", "engine_class"]
