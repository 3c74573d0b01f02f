"""Pose checkpoints: ours (``jetracer-trt train --task pose``) and trt_pose's, read the same way.

Ours share the road-following checkpoint format (``model.py``: a plain dict that loads with
``torch.load(weights_only=True)``, FP16 weights in ``best.pt``, the full training state in ``last.pt``) with
``architecture`` set to trt_pose's model name (``resnet18_baseline_att``), the state dict in trt_pose's own layer
names (so ``torch.save(data["state_dict"])`` is a file trt_pose loads) and the pose model contract
(``contract.pose_contract``), which carries the topology. trt_pose's own files are bare state dicts: they get the
pose contract of the topology given (default ``config/human_pose.json``) at trt_pose's 224x224 input.

torch is imported here at module level: import this module only where torch is needed.
"""
from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ..contract import CONTRACT_KEY, POSE, ModelContract, contract_from_record, pose_contract
from ..errors import JetracerError
from ..model import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, half_state_dict, load_torch_file
from .network import INPUT_SIZE, VARIANT, build_pose_network, check_trt_pose_state_dict
from .topology import PoseTopology, load_topology

log = logging.getLogger(__name__)


def is_pose_checkpoint(data: Any) -> bool:
    """True for a checkpoint dict written by ``make_pose_checkpoint``."""
    return isinstance(data, Mapping) and data.get("architecture") == VARIANT and "state_dict" in data


def make_pose_checkpoint(model: torch.nn.Module, *, half: bool, contract: ModelContract,
                         **metadata: Any) -> dict[str, Any]:
    """The checkpoint dict of a pose network: format tag, architecture, the pose contract, the weights (FP16 if
    ``half``) and ``metadata`` (plain Python values or tensors)."""
    if contract.task != POSE:
        raise JetracerError(f"a pose checkpoint needs a {POSE} contract, not {contract.task}")
    state = model.state_dict()
    state = half_state_dict(state) if half else {k: v.detach().cpu().clone() for k, v in state.items()}
    checkpoint: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "architecture": VARIANT,
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
    """(FP32 network in eval mode on the CPU, checkpoint dict, pose contract) of our pose checkpoint or trt_pose's
    ``resnet18_baseline_att`` weights."""
    state, data, contract = read_pose_checkpoint(path, topology)
    model = build_pose_network(contract.pose_topology())
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise JetracerError(f"{Path(path).name} does not fit {VARIANT}: {' '.join(lines[1:3])[:300]}") from None
    return model.float().eval(), data, contract
