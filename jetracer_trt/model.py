"""The road-following network: torchvision ResNet18 with its 1000-class ``fc`` replaced by a 2-output head (x, y).

Training, export and any PyTorch-side check build the network here, and checkpoints are written and read here. A
checkpoint carries the model contract it was trained with (``contract.py``: task, input size, mean/std, resize,
outputs) under ``model_contract``, and a file whose head does not fit its contract is refused with a clear message
instead of failing deep inside PyTorch.

Two checkpoint kinds share one format (a plain dict, loadable with ``torch.load(weights_only=True)``):

* ``best.pt`` -- small: floating-point weights stored as FP16 (about 22 MB for ResNet18, fine for git) plus metadata.
  The values are FP16-exact, which is what lets the ONNX export store them as FP16 losslessly.
* ``last.pt`` -- full FP32 training state for ``train --resume`` (optimizer, scheduler, scaler, RNG states, ...).

A bare ``state_dict`` of a torchvision ResNet18 with a 2-output ``fc`` (what the original JetRacer notebooks saved)
is accepted too, with the default contract (and a warning: the file does not say how it was trained). A checkpoint
written before checkpoints carried ``model_contract`` has its input size, mean/std and outputs as top-level keys;
they are read from there.

torch is imported here at module level: import this module only where torch is needed (never from the driving
runtime).
"""
from __future__ import annotations

import datetime
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import torchvision

from .contract import CONTRACT_KEY, ModelContract, contract_from_record
from .errors import JetracerError
from .fileio import atomic_path

log = logging.getLogger(__name__)

ARCHITECTURE = "resnet18"
CHECKPOINT_FORMAT = "jetracer_trt.checkpoint"
CHECKPOINT_VERSION = 1
# the contract fields a checkpoint written before ``model_contract`` existed kept at its top level
_LEGACY_CONTRACT_KEYS = ("input_width", "input_height", "mean", "std", "outputs")
WEIGHT_CHOICES = ("imagenet", "none")


def imagenet_weights_path() -> Path:
    """Where torchvision keeps the ResNet18 ImageNet weights once downloaded: ``<torch hub>/checkpoints/<file>``.

    We only ever look there (never download): training machines may have no route to download.pytorch.org.
    """
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def build_model(weights: str = "none", num_outputs: int | None = None) -> torch.nn.Module:
    """A ResNet18 whose ``fc`` gives ``num_outputs`` values (default: one per output of the default contract, 2).

    ``weights="imagenet"`` initialises the backbone from the locally cached ImageNet weights and raises
    JetracerError if the file is not there (callers that want a silent fallback check ``imagenet_weights_path()``
    first); ``"none"`` starts from torchvision's random initialisation (seed torch first for reproducibility).
    """
    if weights not in WEIGHT_CHOICES:
        raise JetracerError(f"unknown weights {weights!r}; choose one of {', '.join(WEIGHT_CHOICES)}")
    num_outputs = len(ModelContract.default().outputs) if num_outputs is None else int(num_outputs)
    model = torchvision.models.resnet18(weights=None)
    if weights == "imagenet":
        path = imagenet_weights_path()
        if not path.is_file():
            raise JetracerError(f"ImageNet weights not found at {path}; use weights 'none' to train from scratch")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - a truncated download or a foreign file: say which file is bad
            raise JetracerError(
                f"cannot load the ImageNet weights {path} ({_error_summary(exc)}); "
                "delete the file or train with --weights none"
            ) from None
        log.info("backbone initialised from ImageNet weights %s", path)
    model.fc = torch.nn.Linear(model.fc.in_features, num_outputs)
    return model


def half_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors as FP16 on the CPU (half the bytes), others (BatchNorm's step counter) unchanged.

    A tensor that would overflow FP16 (a huge BatchNorm running variance, say) is kept in FP32 rather than turned into
    inf: the file stays correct, only that tensor stays big.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        value = value.detach().cpu()
        if value.is_floating_point():
            half = value.half()
            if bool(torch.isfinite(half).all()) or not bool(torch.isfinite(value).all()):
                value = half
            else:
                log.warning("checkpoint tensor %s overflows FP16; stored as FP32", key)
        out[key] = value.clone()
    return out


def make_checkpoint(model: torch.nn.Module, *, half: bool, contract: ModelContract, **metadata: Any) -> dict[str, Any]:
    """The checkpoint dict: format tag, the model contract, the weights (FP16 if ``half``) and ``metadata``.

    Metadata values must be plain Python (dict, list, str, numbers, None) or tensors so that the file loads with
    ``torch.load(weights_only=True)``.
    """
    state = model.state_dict()
    state = half_state_dict(state) if half else {k: v.detach().cpu().clone() for k, v in state.items()}
    checkpoint: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "architecture": ARCHITECTURE,
        CONTRACT_KEY: contract.as_dict(),
        "num_outputs": int(model.fc.out_features),
        "weights_dtype": "float16" if half else "float32",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": str(torch.__version__),  # TorchVersion would not load with weights_only
    }
    checkpoint.update(metadata)
    checkpoint["state_dict"] = state
    return checkpoint


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Writes ``checkpoint`` atomically (temp file beside it, then rename): a crash never leaves a torn file."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            torch.save(dict(checkpoint), tmp)
    except OSError as exc:
        raise JetracerError(f"cannot write checkpoint {path}: {exc.strerror or exc}") from None
    return path


def load_torch_file(path: Path) -> Any:
    """What ``torch.save`` wrote to ``path`` (tensors on the CPU, no code run: ``weights_only``); JetracerError
    with the reason for a missing, truncated or foreign file."""
    if not path.is_file():
        raise JetracerError(f"checkpoint {path} not found" if not path.exists() else f"checkpoint {path} is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle/zip errors of a truncated or foreign file come in many types
        raise JetracerError(f"{path} is not a readable PyTorch checkpoint ({_error_summary(exc)})") from None


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dict (weights on the CPU) with its ``model_contract`` always present (a bare state dict
    gets the default contract, with a warning; an older checkpoint its top-level fields), checked to fit its
    contract; JetracerError if unusable."""
    path = Path(path)
    data = load_torch_file(path)
    if not isinstance(data, dict):
        raise JetracerError(f"{path} holds a {type(data).__name__}, not a jetracer_trt checkpoint")
    if "state_dict" not in data and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        log.info("%s is a bare state_dict; assuming a torchvision ResNet18", path)
        data = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "architecture": ARCHITECTURE,
                "state_dict": data}
    if not isinstance(data.get("state_dict"), dict):
        raise JetracerError(f"{path} has no model weights (no 'state_dict'); is it a jetracer_trt checkpoint?")
    if CONTRACT_KEY in data:
        contract = contract_from_record(data, path)
    elif any(key in data for key in _LEGACY_CONTRACT_KEYS):
        contract = ModelContract.default().replace(**{k: data[k] for k in _LEGACY_CONTRACT_KEYS if k in data})
    else:
        contract = contract_from_record(data, path)  # the default, with a warning
    data[CONTRACT_KEY] = contract.as_dict()
    _check_fit(path, data, contract)
    return data


def _check_fit(path: Path, data: Mapping[str, Any], contract: ModelContract) -> None:
    arch = data.get("architecture", ARCHITECTURE)
    if arch != ARCHITECTURE:
        raise JetracerError(f"checkpoint {path} is a {arch!r} model; only {ARCHITECTURE!r} is supported")
    fc = data["state_dict"].get("fc.weight")
    if not isinstance(fc, torch.Tensor) or fc.ndim != 2:
        raise JetracerError(f"checkpoint {path} has no ResNet18 head (fc.weight); wrong architecture?")
    if fc.shape[0] != len(contract.outputs):
        raise JetracerError(
            f"checkpoint {path} has a head with {fc.shape[0]} outputs, but its {contract.task} contract names "
            f"{len(contract.outputs)} ({', '.join(contract.outputs)})"
        )


def load_checkpoint(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(FP32 model in eval mode on the CPU, checkpoint dict) from a best.pt, last.pt or bare state_dict file."""
    data = read_checkpoint(path)
    model = build_model(weights="none", num_outputs=int(data["state_dict"]["fc.weight"].shape[0]))
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = " ".join(lines[1:3]) if len(lines) > 1 else lines[0] if lines else ""
        raise JetracerError(f"checkpoint {path} does not fit a ResNet18: {detail[:300]}") from None
    model.float().eval()
    return model, data


def _error_summary(exc: BaseException) -> str:
    """One short line from torch.load's long, multi-paragraph errors: the unpickler's own reason when it gives one."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = next((line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()), "")
        return f"unpickler: {reason}"[:200]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    return first.split(". ", 1)[0][:200]  # the first sentence; torch's go on with advice meant for its developers
