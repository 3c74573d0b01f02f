"""Pose checkpoints: ours (``jetracer-trt train --task pose``) and trt_pose's, read the same way.

Ours share the road-following checkpoint format (``model.py``: a plain dict that loads with
``torch.load(weights_only=True)``, FP16 weights in ``best.pt``, the full training state in ``last.pt``) with
``architecture`` set to the name of the network they hold (``network.ARCHITECTURES``: trt_pose's
``resnet18_baseline_att``, whose state dict is in trt_pose's own layer names, so ``torch.save(data["state_dict"])``
is a file trt_pose loads; or our small ``pose_small_resnet18_l2``) and the pose model contract
(``contract.pose_contract``), which carries the topology. Every loader builds the network the checkpoint names; a
name this package does not know is refused by name. trt_pose's own files are bare state dicts: they get the
pose contract of the topology given (default ``config/human_pose.json``) at trt_pose's 224x224 input.

torch is imported here at module level: import this module only where torch is needed.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ..contract import CONTRACT_KEY, POSE, ModelContract, contract_from_record, pose_contract
from ..errors import JetracerError
from ..model import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, half_state_dict, load_torch_file
from .network import ARCHITECTURES, INPUT_SIZE, VARIANT, architecture_of, build_network, check_architecture, \
    check_trt_pose_state_dict
from .topology import PoseTopology, load_topology

log = logging.getLogger(__name__)


def is_pose_checkpoint(data: Any) -> bool:
    """True for a checkpoint dict written by ``make_pose_checkpoint``: one of our pose architectures, or any
    architecture with a pose contract (``pose_record`` then refuses an unknown one by name)."""
    if not isinstance(data, Mapping) or "state_dict" not in data or "architecture" not in data:
        return False
    return data["architecture"] in ARCHITECTURES or _contract_task(data) == POSE


def _contract_task(data: Mapping[str, Any]) -> Any:
    record = data.get(CONTRACT_KEY)
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except json.JSONDecodeError:
            return None
    return record.get("task") if isinstance(record, Mapping) else None


def checkpoint_architecture(data: Mapping[str, Any], source: str | os.PathLike = "the checkpoint") -> str:
    """The pose network a checkpoint dict (or trt_pose's bare state dict: ``resnet18_baseline_att``) holds;
    JetracerError naming an architecture this package does not build."""
    return check_architecture(data.get("architecture", VARIANT) if is_pose_checkpoint(data) else VARIANT,
                              str(source))


def make_pose_checkpoint(model: torch.nn.Module, *, half: bool, contract: ModelContract,
                         **metadata: Any) -> dict[str, Any]:
    """The checkpoint dict of a pose network built by ``network.build_network``: format tag, its architecture,
    the pose contract, the weights (FP16 if ``half``) and ``metadata`` (plain Python values or tensors)."""
    if contract.task != POSE:
        raise JetracerError(f"a pose checkpoint needs a {POSE} contract, not {contract.task}")
    architecture = architecture_of(model)
    state = model.state_dict()
    state = half_state_dict(state) if half else {k: v.detach().cpu().clone() for k, v in state.items()}
    checkpoint: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "architecture": architecture,
        CONTRACT_KEY: contract.as_dict(),
        "weights_dtype": "float16" if half else "float32",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),
    }
    checkpoint.update(metadata)
    checkpoint["state_dict"] = state
    return checkpoint


def pose_record(data: Any, source: str | os.PathLike, topology: PoseTopology | None = None
                ) -> tuple[Mapping[str, Any], dict[str, Any], ModelContract]:
    """(state dict, checkpoint dict, pose contract) of what a pose file holds: our checkpoint (its own contract;
    ``topology`` must then agree with it when given) or trt_pose's state dict (the pose contract of ``topology``,
    default ``config/human_pose.json``). JetracerError naming ``source`` for anything else."""
    if is_pose_checkpoint(data):
        checkpoint_architecture(data, source)
        contract = contract_from_record(data, source)
        if contract.task != POSE:
            raise JetracerError(f"{source} is a {contract.task} checkpoint, not a pose one")
        own = contract.pose_topology()
        if topology is not None and (own.keypoints, own.skeleton) != (topology.keypoints, topology.skeleton):
            raise JetracerError(f"{source} was trained for the topology it carries ({own.num_keypoints} keypoints, "
                                f"{own.num_links} links), not for {topology.source}; leave --topology out")
        return data["state_dict"], dict(data), contract
    if not isinstance(data, Mapping):
        raise JetracerError(f"{source} holds a {type(data).__name__}, not a pose checkpoint")
    state = data.get("state_dict") if isinstance(data.get("state_dict"), Mapping) else data
    topology = topology or load_topology()
    check_trt_pose_state_dict(state, topology, str(source))
    log.info("%s is a trt_pose state dict: running it by the pose contract of %s at %dx%d", source, topology.source,
             INPUT_SIZE, INPUT_SIZE)
    return state, {"state_dict": state}, pose_contract(topology, INPUT_SIZE, INPUT_SIZE)


def read_pose_checkpoint(path: str | os.PathLike, topology: PoseTopology | None = None
                         ) -> tuple[Mapping[str, Any], dict[str, Any], ModelContract]:
    """``pose_record`` of the file ``path``."""
    path = Path(path)
    return pose_record(load_torch_file(path), path.name, topology)


def load_pose_checkpoint(path: str | os.PathLike, topology: PoseTopology | None = None
                         ) -> tuple[torch.nn.Sequential, dict[str, Any], ModelContract]:
    """(FP32 network in eval mode on the CPU, checkpoint dict, pose contract) of our pose checkpoint (the network
    it names) or trt_pose's ``resnet18_baseline_att`` weights."""
    state, data, contract = read_pose_checkpoint(path, topology)
    return network_of_record(state, data, contract, Path(path).name), data, contract


def network_of_record(state: Mapping[str, Any], data: Mapping[str, Any], contract: ModelContract,
                      source: str) -> torch.nn.Sequential:
    """The FP32 network in eval mode on the CPU of what ``pose_record`` read: the architecture ``data`` names,
    loaded strictly with ``state``."""
    architecture = checkpoint_architecture(data, source)
    model = build_network(architecture, contract.pose_topology())
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise JetracerError(f"{source} does not fit {architecture}: {' '.join(lines[1:3])[:300]}") from None
    return model.float().eval()
