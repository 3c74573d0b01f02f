"""Inference backends behind one interface. ``create_engine`` imports only the backend it is asked for."""
from __future__ import annotations

from ..errors import JetracerError
from .base import InferenceEngine

BACKENDS = ("onnxruntime",)


def create_engine(backend: str, model_path, **options) -> InferenceEngine:
    """An engine for ``backend`` loaded from ``model_path``; raises JetracerError for an unknown backend."""
    if backend == "onnxruntime":
        from .onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(model_path, **options)
    raise JetracerError(f"unknown inference backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "InferenceEngine", "create_engine"]
