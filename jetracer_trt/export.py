"""Export a trained checkpoint to ONNX, verified against PyTorch; a model that fails verification is never written.

Steps (``export_onnx``):

1. Load the checkpoint with ``model.load_checkpoint`` (best.pt, last.pt or a bare ResNet18 state_dict), FP32, eval.
2. Export with the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): input/output names from
   config/model.yaml, a dynamic batch dimension, opset 17 by default. Why this exporter: the dynamo exporter needs
   the ``onnxscript`` package, which the training environment does not have, while this one is part of torch; and
   it can keep BatchNormalization as separate nodes (``do_constant_folding=False``), which step 3 relies on.
3. Shrink the file losslessly: best.pt holds FP16-exact weights, so every FP32 initializer whose values survive a
   float16 round trip unchanged is stored as float16 followed by a ``Cast`` to float32. ONNX Runtime folds the Casts
   when it loads the model (and then fuses Conv+BatchNormalization itself), so inference still runs in FP32 at the
   speed of a plain FP32 export, from a file half the size. Had BatchNormalization been folded into the Conv weights
   at export, those would no longer be FP16-exact and the file would stay FP32-sized.
4. Record where the model came from in ``metadata_props``, among it ``checkpoint_sha256``, the SHA-256 of the
   checkpoint file: ``backend auto`` runs the ``.pt`` beside the ONNX (or a package compiled from it) on a GPU only
   when it is that checkpoint.
5. Verify: the same frames (``--frames DIR`` dataset images, else frames of the simulated track), preprocessed by
   ``preprocess.Preprocessor``, go through PyTorch (FP32) and through ONNX Runtime (CPU) on the written temp file,
   judged by ``verify.compare`` at FP32 (every output, worst frame and mean); if they disagree the temp file is
   deleted and JetracerError names the error per output. Otherwise the temp file is renamed over OUT.

torch and onnx are imported at module level: import this module only where exporting is wanted.
"""
from __future__ import annotations

import io
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from . import __version__
from .config import load_config
from .engines.artifacts import ONNX_CHECKPOINT_SHA256
from .engines.sidecar import source_hash
from .errors import JetracerError
from .fileio import atomic_path
from .model import load_checkpoint
from .preprocess import Preprocessor
from .verify import VERIFY_FRAMES, Comparison, compare, verification_frames

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
FP16_SUFFIX = "__fp16"


@dataclass
class ExportResult:
    """What was written and how well it matched PyTorch."""

    path: Path
    size_bytes: int
    max_abs_diff: dict[str, float]  # per output name (x, y)
    frames: int
    comparison: Comparison  # ONNX Runtime against PyTorch, judged at FP32 (verify.py)
    checkpoint_sha256: str  # recorded in the model's metadata_props
    opset: int
    fp16_initializers: int  # stored as float16 + Cast
    fp32_initializers: int  # kept as float32 (values not FP16-exact)


# ---------------------------------------------------------------------------------------------------------------------
# Export and the lossless FP16 storage


def export_model_proto(model: torch.nn.Module, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The FP32 ONNX graph of ``model`` with config/model.yaml's names, a dynamic batch and BatchNorm kept unfused."""
    cfg = load_config("model")
    input_name, output_name = cfg["onnx_input_name"], cfg["onnx_output_name"]
    dummy = torch.zeros(1, 3, int(cfg["input_height"]), int(cfg["input_width"]), dtype=torch.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.onnx.export(
                model, (dummy,), buffer,
                dynamo=False,  # TorchScript exporter: no onnxscript needed (see the module docstring)
                input_names=[input_name], output_names=[output_name],
                dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                opset_version=int(opset),
                do_constant_folding=False,  # keeps BatchNormalization: its and Conv's weights stay FP16-exact
                training=torch.onnx.TrainingMode.EVAL,
            )
        except Exception as exc:  # noqa: BLE001 - exporter errors come in many types; say which opset failed
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise JetracerError(f"ONNX export at opset {opset} failed: {first[:300]}") from None
    for warning in caught:  # the exporter's deprecation notices: not the user's business
        log.debug("torch.onnx: %s", str(warning.message).splitlines()[0])
    return onnx.load_model_from_string(buffer.getvalue())


def store_fp16_initializers(proto: onnx.ModelProto) -> tuple[int, int]:
    """Stores each FP16-exact float32 initializer as float16 + ``Cast`` to float32, in place; returns (fp16, fp32).

    Lossless by construction: a tensor is converted only if float16 -> float32 gives back exactly the same values.
    The Cast nodes go first in the graph, keeping it topologically sorted; downstream nodes are untouched because the
    Cast output carries the initializer's original name.
    """
    graph = proto.graph
    taken = {init.name for init in graph.initializer} | {n for node in graph.node for n in (*node.input, *node.output)}
    casts = []
    converted = kept = 0
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):
            kept += 1
            continue
        name = init.name
        stored = name + FP16_SUFFIX
        while stored in taken:
            stored += "_"
        taken.add(stored)
        init.CopyFrom(numpy_helper.from_array(half, stored))
        casts.append(helper.make_node("Cast", [stored], [name], name=f"{stored}_to_fp32", to=TensorProto.FLOAT))
        converted += 1
    if casts:
        nodes = casts + list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes)
    return converted, kept


def _add_metadata(proto: onnx.ModelProto, checkpoint: dict[str, Any], source: Path) -> None:
    """Records where the model came from, readable with onnx or Netron (``metadata_props``)."""
    cfg = load_config("model")
    proto.producer_name = "jetracer_trt"
    proto.producer_version = __version__
    proto.doc_string = (
        f"Road-following {cfg['architecture']}: RGB frame -> ({', '.join(cfg['outputs'])}) in [-1, 1]. Input "
        f"'{cfg['onnx_input_name']}' is (N, 3, {cfg['input_height']}, {cfg['input_width']}) float32 = "
        f"(pixel / 255 - mean) / std with mean {cfg['mean']}, std {cfg['std']}."
    )
    props = {
        "architecture": str(cfg["architecture"]),
        "input_size": f"{cfg['input_width']}x{cfg['input_height']}",
        "mean": json.dumps(cfg["mean"]),
        "std": json.dumps(cfg["std"]),
        "outputs": json.dumps(cfg["outputs"]),
        "checkpoint": source.name,
        ONNX_CHECKPOINT_SHA256: source_hash(source),
    }
    for key in ("epoch", "global_step", "metrics", "created"):
        if checkpoint.get(key) is not None:
            props[f"checkpoint_{key}"] = json.dumps(checkpoint[key])
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)


# ---------------------------------------------------------------------------------------------------------------------
# Verification


def preprocess_frames(frames: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 3, H, W) float32 batch, each frame through the runtime's own ``Preprocessor``."""
    pre = Preprocessor()
    return np.concatenate([pre(frame).copy() for frame in frames], axis=0)


def torch_reference(model: torch.nn.Module, batch: np.ndarray) -> np.ndarray:
    """PyTorch FP32 outputs (N, outputs) for a preprocessed batch: what ONNX Runtime must reproduce."""
    with torch.inference_mode():
        return model.float().eval()(torch.from_numpy(batch)).numpy().astype(np.float32)


def onnxruntime_outputs(model_path: Path, batch: np.ndarray) -> np.ndarray:
    """ONNX Runtime CPU outputs for the whole batch at once (which also exercises the dynamic batch dimension).

    Goes through ``create_engine`` so the file also passes the runtime's own input/output checks.
    """
    from .engines import create_engine

    engine = create_engine("onnxruntime", model_path, providers=["CPUExecutionProvider"])
    try:
        session = engine.session
        return session.run(None, {session.get_inputs()[0].name: batch})[0]
    finally:
        engine.close()


# ---------------------------------------------------------------------------------------------------------------------
# The whole export


def export_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    frames_dir: str | os.PathLike | None = None,
    opset: int = DEFAULT_OPSET,
    num_frames: int = VERIFY_FRAMES,
) -> ExportResult:
    """Exports ``checkpoint`` to ``out`` only if ONNX Runtime agrees with PyTorch within the FP32 tolerance of
    ``verify.TOLERANCES`` on every output; otherwise raises JetracerError and leaves ``out`` as it was."""
    checkpoint, out = Path(checkpoint), Path(out)
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 11:
        raise JetracerError(f"--opset must be an integer >= 11, got {opset!r}")
    model, data = load_checkpoint(checkpoint)
    if out.is_dir():
        raise JetracerError(f"--out {out} is a folder; give the .onnx file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JetracerError(f"cannot create the folder of {out}: {exc.strerror or exc}") from None
    frames = verification_frames(frames_dir, num_frames)
    batch = preprocess_frames(frames)
    reference = torch_reference(model, batch)

    proto = export_model_proto(model, opset)
    fp16, fp32 = store_fp16_initializers(proto)
    if fp32 > fp16:
        log.warning(
            "%d of %d weight tensors are not FP16-exact (an FP32 checkpoint such as last.pt?); they stay FP32 and the "
            "file is about twice the size it would be from best.pt", fp32, fp16 + fp32,
        )
    _add_metadata(proto, data, checkpoint)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise JetracerError(f"the exported ONNX graph is invalid: {str(exc).splitlines()[0]}") from None

    with atomic_path(out) as tmp:  # OUT appears only once verified
        try:
            onnx.save_model(proto, tmp)
        except OSError as exc:
            raise JetracerError(f"cannot write {tmp}: {exc.strerror or exc}") from None
        comparison = compare(reference, onnxruntime_outputs(tmp, batch), "fp32")
        if not comparison.ok:
            raise JetracerError(f"ONNX Runtime disagrees with PyTorch: {comparison.report()}; {out} was not written")
        size = tmp.stat().st_size
    log.info("ONNX Runtime matches PyTorch: %s", comparison.report())
    recorded = {p.key: p.value for p in proto.metadata_props}
    return ExportResult(
        path=out, size_bytes=size, max_abs_diff=comparison.max_abs, frames=len(frames), comparison=comparison,
        checkpoint_sha256=recorded[ONNX_CHECKPOINT_SHA256], opset=opset, fp16_initializers=fp16,
        fp32_initializers=fp32,
    )
