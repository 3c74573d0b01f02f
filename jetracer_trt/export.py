"""Export a trained checkpoint to ONNX, verified against PyTorch; a model that fails verification is never written.

``jetracer-trt export`` is one route of the conversion pipeline (``convert/pipeline.py``), which checks the
request, computes the reference (PyTorch eager FP32 on the CPU), loads the result through the ONNX Runtime engine
(batches of 8: the dynamic batch dimension is exercised), judges it by ``verify.compare`` at FP32 (every output,
worst frame and mean) and writes it atomically only then; an existing file is replaced only with ``force``. The
route's build (``OnnxExport``):

1. Load the checkpoint with ``model.load_checkpoint`` (best.pt, last.pt or a bare ResNet18 state_dict), FP32, eval,
   with its model contract; a pose checkpoint (``jetracer-trt train --task pose``, or trt_pose's own
   ``resnet18_baseline_att`` weights, ``pose/checkpoint.py``) as the pose network it names (trt_pose's for
   trt_pose's weights; the architecture is recorded in the ONNX metadata too) with the pose contract, whose
   topology is the checkpoint's own or, for trt_pose's weights, the one given (default config/human_pose.json).
2. Export with the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): the contract's input size
   and input/output names (a pose model: two outputs, ``cmap`` and ``paf``), a dynamic batch dimension, opset 17 by
   default. Why this exporter: the dynamo exporter
   needs the ``onnxscript`` package, which the training environment does not have, while this one is part of torch;
   and it can keep BatchNormalization as separate nodes (``do_constant_folding=False``), which step 3 relies on.
3. Shrink the file losslessly: best.pt holds FP16-exact weights, so every FP32 initializer whose values survive a
   float16 round trip unchanged is stored as float16 followed by a ``Cast`` to float32. ONNX Runtime folds the Casts
   when it loads the model (and then fuses Conv+BatchNormalization itself), so inference still runs in FP32 at the
   speed of a plain FP32 export, from a file half the size. Had BatchNormalization been folded into the Conv weights
   at export, those would no longer be FP16-exact and the file would stay FP32-sized.
4. Record in ``metadata_props`` the model contract (``model_contract``, read back by every engine that loads the
   file) and where the model came from, among it ``checkpoint_sha256``, the SHA-256 of the checkpoint file:
   ``backend auto`` runs the ``.pt`` beside the ONNX (or a package compiled from it) on a GPU only when it is that
   checkpoint.

torch and onnx are imported at module level: import this module only where exporting is wanted.
"""
from __future__ import annotations

import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from . import __version__
from .contract import CONTRACT_KEY, POSE, ROAD_FOLLOWING, ModelContract
from .convert.calibration import FrameSplit
from .convert.pipeline import Build, ConvertRequest, ConvertResult, Route
from .engines.artifacts import ONNX_CHECKPOINT_SHA256
from .engines.sidecar import source_hash
from .errors import JetracerError
from .model import load_checkpoint
from .verify import VERIFY_FRAMES

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
FP16_SUFFIX = "__fp16"
VERIFY_BATCH = 8  # the exported model is checked at batches of 8, which exercises its dynamic batch dimension


# ---------------------------------------------------------------------------------------------------------------------
# Export and the lossless FP16 storage


def export_model_proto(model: torch.nn.Module, contract: ModelContract, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The FP32 ONNX graph of ``model`` with the contract's input size and names (one output tensor per name of
    ``contract.output_tensors``), a dynamic batch and BatchNorm kept unfused."""
    input_name, output_names = contract.input_name, list(contract.output_tensors)
    dummy = torch.zeros(1, 3, contract.input_height, contract.input_width, dtype=torch.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.onnx.export(
                model, (dummy,), buffer,
                dynamo=False,  # TorchScript exporter: no onnxscript needed (see the module docstring)
                input_names=[input_name], output_names=output_names,
                dynamic_axes={name: {0: "batch"} for name in (input_name, *output_names)},
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


def _add_metadata(proto: onnx.ModelProto, checkpoint: dict[str, Any], source: Path, source_sha256: str,
                  contract: ModelContract) -> None:
    """Records the model contract and where the model came from, readable with onnx or Netron
    (``metadata_props``)."""
    proto.producer_name = "jetracer_trt"
    proto.producer_version = __version__
    proto.doc_string = (
        f"{contract.task}: RGB frame -> ({', '.join(contract.outputs)}), {contract.output_meaning}. Input "
        f"'{contract.input_name}' is (N, 3, {contract.input_height}, {contract.input_width}) float32 = "
        f"(pixel / 255 - mean) / std with mean {list(contract.mean)}, std {list(contract.std)}."
    )
    props = {CONTRACT_KEY: contract.to_json(), "checkpoint": source.name, ONNX_CHECKPOINT_SHA256: source_sha256}
    for key in ("epoch", "global_step", "metrics", "created"):
        if checkpoint.get(key) is not None:
            props[f"checkpoint_{key}"] = json.dumps(checkpoint[key])
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)


# ---------------------------------------------------------------------------------------------------------------------
# The export route


class OnnxExport(Route):
    command = "export"
    backend = "onnxruntime"
    what = "the exported ONNX model on ONNX Runtime"
    precisions = ("fp32",)
    sources = (".pt", ".pth")
    source_kind = ("a PyTorch checkpoint (.pt, .pth: RUN/best.pt, RUN/last.pt, a ResNet18 state_dict, or a pose "
                   "checkpoint: ours or trt_pose's resnet18_baseline_att weights)")
    TASKS = (ROAD_FOLLOWING, POSE)

    def __init__(self, opset: int = DEFAULT_OPSET, task: str | None = None, topology=None) -> None:
        """``task``: what the checkpoint is (None: found out from the file); ``topology``: a ``pose.PoseTopology``
        for trt_pose's weights (default config/human_pose.json)."""
        self.opset = opset
        self.task = task
        self.topology = topology
        self._pose: tuple | None = None  # (state dict, checkpoint dict, contract) of a pose source, read once

    def check(self, request: ConvertRequest) -> None:
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or self.opset < 11:
            raise JetracerError(f"--opset must be an integer >= 11, got {self.opset!r}")
        if self.task is not None and self.task not in self.TASKS:
            raise JetracerError(f"--task must be one of {', '.join(self.TASKS)}, not {self.task!r}")
        if self.topology is not None and self.task == ROAD_FOLLOWING:
            raise JetracerError("--topology is for pose checkpoints (--task pose)")
        self._pose = None
        if self.task == POSE or self.task is None and _is_pose_file(request.source):
            from .pose.checkpoint import read_pose_checkpoint

            self._pose = read_pose_checkpoint(request.source, self.topology)
        elif self.task is None and self.topology is not None:
            raise JetracerError(f"--topology is for pose checkpoints, and {request.source.name} is none")

    def source_contract(self, request: ConvertRequest) -> ModelContract:
        return self._pose[2] if self._pose else super().source_contract(request)

    def _network(self, request: ConvertRequest) -> tuple[torch.nn.Module, dict[str, Any]]:
        """(FP32 network in eval mode, checkpoint dict) of the source."""
        if not self._pose:
            return load_checkpoint(request.source)
        from .pose.checkpoint import network_of_record

        state, data, contract = self._pose
        return network_of_record(state, data, contract, request.source.name), data

    def reference(self, request: ConvertRequest, frames: np.ndarray, contract: ModelContract):
        if not self._pose:
            return super().reference(request, frames, contract)
        from .verify import tensor_model_outputs

        return tensor_model_outputs(self._network(request)[0], frames, contract)

    def build(self, request: ConvertRequest, contract: ModelContract, frames: FrameSplit, out: Path,
              work: Path) -> Build:
        model, data = self._network(request)
        proto = export_model_proto(model, contract, self.opset)
        fp16, fp32 = store_fp16_initializers(proto)
        if fp32 > fp16:
            log.warning("%d of %d weight tensors are not FP16-exact (an FP32 checkpoint such as last.pt, or trt_pose's "
                        "own weights?); they stay FP32 and the file is about twice the size it would be from best.pt",
                        fp32, fp16 + fp32)
        sha256 = source_hash(request.source)
        _add_metadata(proto, data, request.source, sha256, contract)
        if self._pose:  # which pose network the graph is, for whoever reads the file (it runs by the contract alone)
            from .pose.checkpoint import checkpoint_architecture

            proto.metadata_props.add(key="architecture", value=checkpoint_architecture(data, request.source.name))
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as exc:
            raise JetracerError(f"the exported ONNX graph is invalid: {str(exc).splitlines()[0]}") from None
        try:
            onnx.save_model(proto, str(out))
        except OSError as exc:
            raise JetracerError(f"cannot write {out}: {exc.strerror or exc}") from None
        return Build(notes=[f"{out.stat().st_size / 1e6:.1f} MB, opset {self.opset}, {fp16} weight tensors stored as "
                            f"FP16, {fp32} as FP32; made from {request.source.name}, SHA-256 {sha256}"])

    def load_options(self, request: ConvertRequest) -> dict:
        return {"providers": ["CPUExecutionProvider"]}


def _is_pose_file(path: Path) -> bool:
    """True when ``path`` holds a pose checkpoint, ours or trt_pose's."""
    from .model import load_torch_file
    from .pose.checkpoint import is_pose_checkpoint
    from .pose.network import trt_pose_variant

    data = load_torch_file(path)
    return is_pose_checkpoint(data) or (isinstance(data, dict) and trt_pose_variant(data) is not None)


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, *,
                frames_dir: str | os.PathLike | None = None, opset: int = DEFAULT_OPSET,
                num_frames: int = VERIFY_FRAMES, force: bool = False, task: str | None = None,
                topology=None) -> ConvertResult:
    """Exports ``checkpoint`` to ``out`` (default: ``<checkpoint stem>.onnx`` beside it) only if ONNX Runtime agrees
    with PyTorch within the FP32 tolerance of its task (``verify.tolerances_for``) on every output; otherwise raises
    JetracerError and leaves ``out`` as it was. An existing ``out`` is replaced only with ``force``. ``task``: road
    following or pose (None: what the checkpoint is); ``topology``: a ``pose.PoseTopology`` for trt_pose's weights
    (default config/human_pose.json)."""
    request = ConvertRequest(source=Path(checkpoint), precision="fp32", out=Path(out) if out is not None else None,
                             calib_dir=Path(frames_dir) if frames_dir is not None else None,
                             verify_frames=num_frames, max_batch=VERIFY_BATCH, force=force)
    return OnnxExport(opset, task=task, topology=topology).convert(request)
