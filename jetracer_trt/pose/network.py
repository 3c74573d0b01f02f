"""The pose networks: trt_pose's ``resnet18_baseline_att`` with the loader of trt_pose's checkpoints for it, and
our own small one, ``pose_small_resnet18_l2``.

The layers, their order and their names are trt_pose's, so that ``torch.save(model.state_dict())`` of either
network loads into the other (``resnet18_baseline_att_224x224_A_epoch_249.pth``, the published one, included):

* ``0``: torchvision's ResNet18 kept whole as ``0.resnet.*`` (its ``fc`` is never run but stays in the state
  dict), run up to ``layer4``: 512 channels at 1/32 of the input;
* ``1``: the head with attention. Two branches, confidence maps (``cmap``) and part affinity fields (``paf``),
  each three stages of ConvTranspose2d(kernel 4, stride 2, padding 1) + BatchNorm + ReLU to 256 channels at 1/4 of
  the input (``1.cmap_up.{0,1,3,4,6,7}``, ``1.paf_up.*``), multiplied by an attention map from a 3x3 convolution
  (``1.cmap_att`` through a sigmoid, ``1.paf_att`` through a tanh), then a 1x1 convolution to one channel per
  keypoint (``1.cmap_conv``) and two per link (``1.paf_conv``).

Input: RGB, 224x224, ``(pixel / 255 - mean) / std`` with ImageNet's mean and std (``IMAGENET_MEAN``,
``IMAGENET_STD``); outputs ``(cmap, paf)``, 56x56 each: 18 and 42 channels for ``config/human_pose.json``.

``pose_small_resnet18_l2`` (``SMALL_VARIANT``) is no trt_pose model: the same input, outputs and head design at a
fraction of the cost, for a CPU. Its backbone is ResNet18's stem, ``layer1`` and ``layer2`` (``0.conv1``, ``0.bn1``,
``0.layer1.*``, ``0.layer2.*``, torchvision's names: 128 channels at 1/8 of the input), its head the same attention
head with one upsampling stage of ``SMALL_HEAD_CHANNELS`` channels to 1/4. Its state dict is not trt_pose's (no
``0.resnet.``), so it is only ever loaded by name: our checkpoints record the architecture they hold
(``ARCHITECTURES``; ``pose/checkpoint.py``) and every loader builds that one (``build_network``).

torch is imported here at module level: import this module only where torch is needed.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import torchvision

from ..errors import JetracerError
from ..model import load_torch_file
from .topology import PoseTopology, load_topology

VARIANT = "resnet18_baseline_att"
INPUT_SIZE = 224          # the published checkpoint's training size (the network takes any multiple of 32)
OUTPUT_STRIDE = 4         # maps are 1/4 of the input: 56x56
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONE_CHANNELS = 512
HEAD_CHANNELS = 256
UPSAMPLE_STAGES = 3
SMALL_VARIANT = "pose_small_resnet18_l2"
SMALL_BACKBONE_CHANNELS = 128   # ResNet18's layer2
SMALL_HEAD_CHANNELS = 64
SMALL_UPSAMPLE_STAGES = 1       # 1/8 -> 1/4


class ResNetFeatures(torch.nn.Module):
    """ResNet18 up to ``layer4``; the whole torchvision model is held as ``resnet`` so its keys are trt_pose's."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = torchvision.models.resnet18(weights=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.resnet
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        return net.layer4(net.layer3(net.layer2(net.layer1(x))))


class ResNetStemFeatures(torch.nn.Module):
    """ResNet18's stem, ``layer1`` and ``layer2`` under torchvision's names: 128 channels at 1/8 of the input."""

    PARTS = ("conv1", "bn1", "layer1", "layer2")

    def __init__(self) -> None:
        super().__init__()
        resnet = torchvision.models.resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2 = resnet.layer1, resnet.layer2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x))))))


def _upsampler(in_channels: int, channels: int, stages: int) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for stage in range(stages):
        layers += [torch.nn.ConvTranspose2d(in_channels if stage == 0 else channels, channels, kernel_size=4,
                                            stride=2, padding=1),
                   torch.nn.BatchNorm2d(channels),
                   torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


class AttentionPoseHead(torch.nn.Module):
    """Backbone features -> (cmap, paf), each branch upsampled and gated by its own attention map."""

    def __init__(self, in_channels: int, cmap_channels: int, paf_channels: int, channels: int = HEAD_CHANNELS,
                 stages: int = UPSAMPLE_STAGES) -> None:
        super().__init__()
        # registration order is trt_pose's, so state dicts list their keys in the same order
        self.cmap_up = _upsampler(in_channels, channels, stages)
        self.paf_up = _upsampler(in_channels, channels, stages)
        self.cmap_att = torch.nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)
        self.paf_att = torch.nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)
        self.cmap_conv = torch.nn.Conv2d(channels, cmap_channels, kernel_size=1, stride=1, padding=0)
        self.paf_conv = torch.nn.Conv2d(channels, paf_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cmap = self.cmap_up(features)
        cmap = cmap * torch.sigmoid(self.cmap_att(cmap))
        paf = self.paf_up(features)
        paf = paf * torch.tanh(self.paf_att(paf))
        return self.cmap_conv(cmap), self.paf_conv(paf)


def build_pose_network(topology: PoseTopology | None = None) -> torch.nn.Sequential:
    """trt_pose's ``resnet18_baseline_att`` for ``topology`` (default ``config/human_pose.json``), randomly
    initialised (seed torch first for reproducibility), in training mode like any new torch module."""
    topology = topology or load_topology()
    model = torch.nn.Sequential(
        ResNetFeatures(),
        AttentionPoseHead(BACKBONE_CHANNELS, topology.num_keypoints, topology.paf_channels),
    )
    model.architecture = VARIANT
    return model


def build_small_pose_network(topology: PoseTopology | None = None) -> torch.nn.Sequential:
    """``pose_small_resnet18_l2`` for ``topology`` (default ``config/human_pose.json``): as
    ``build_pose_network``, randomly initialised, in training mode."""
    topology = topology or load_topology()
    model = torch.nn.Sequential(
        ResNetStemFeatures(),
        AttentionPoseHead(SMALL_BACKBONE_CHANNELS, topology.num_keypoints, topology.paf_channels,
                          channels=SMALL_HEAD_CHANNELS, stages=SMALL_UPSAMPLE_STAGES),
    )
    model.architecture = SMALL_VARIANT
    return model


# the pose networks this package builds, by the name their checkpoints record as ``architecture``
ARCHITECTURES = {VARIANT: build_pose_network, SMALL_VARIANT: build_small_pose_network}


def check_architecture(name: Any, source: str = "the pose network") -> str:
    """``name`` when it is one of ``ARCHITECTURES``; JetracerError naming it otherwise."""
    if name not in ARCHITECTURES:
        raise JetracerError(f"{source}: unknown pose architecture {name!r}; this package builds "
                            f"{', '.join(ARCHITECTURES)}")
    return name


def build_network(architecture: str = VARIANT, topology: PoseTopology | None = None) -> torch.nn.Sequential:
    """The pose network of that name (``ARCHITECTURES``) for ``topology``, randomly initialised, in training mode;
    JetracerError for an unknown name."""
    return ARCHITECTURES[check_architecture(architecture)](topology)


def architecture_of(model: torch.nn.Module) -> str:
    """The name of a pose network built here (``build_network``)."""
    return check_architecture(getattr(model, "architecture", None), type(model).__name__)


def load_imagenet_backbone(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Loads torchvision's ResNet18 ImageNet state dict ``state`` into the backbone of a pose network built here
    (the small one takes the layers it has)."""
    if architecture_of(model) == SMALL_VARIANT:
        model[0].load_state_dict({key: value for key, value in state.items()
                                  if key.split(".")[0] in ResNetStemFeatures.PARTS}, strict=True)
    else:
        model[0].resnet.load_state_dict(state)


def load_trt_pose_checkpoint(path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
                             topology: PoseTopology | None = None) -> torch.nn.Sequential:
    """The network with the weights of a trt_pose ``resnet18_baseline_att`` checkpoint (a file written by
    ``torch.save(model.state_dict())``, or that state dict), FP32, on the CPU, in eval mode.

    Every key and shape must match (``load_state_dict(strict=True)``). JetracerError, before anything is loaded,
    naming what differs: another trt_pose model (``densenet121_baseline_att``, ``resnet50_baseline_att``, ...), maps
    that do not fit ``topology`` (default ``config/human_pose.json``), missing or unexpected keys, other shapes."""
    topology = topology or load_topology()
    state, source = _read_state_dict(path_or_state_dict)
    check_trt_pose_state_dict(state, topology, source)
    model = build_pose_network(topology)
    model.load_state_dict(state, strict=True)
    return model.float().eval()


def check_trt_pose_state_dict(state: Mapping[str, Any], topology: PoseTopology, source: str) -> None:
    """JetracerError unless ``state`` is the state dict of a ``resnet18_baseline_att`` for ``topology``."""
    variant = trt_pose_variant(state)
    if variant is None:
        raise JetracerError(f"{source} is not a trt_pose checkpoint: its keys do not start with "
                            f"'0.<backbone>.' and '1.' (first key: {next(iter(state), 'none')!r})")
    if variant != VARIANT:
        raise JetracerError(f"{source} is trt_pose's {variant}; only {VARIANT} is supported")
    upsample = _upsample_layers(state, "1.cmap_up.")
    flat = [index for index, kernel in upsample if kernel == 3]
    if len(upsample) - len(flat) != UPSAMPLE_STAGES or flat:
        raise JetracerError(f"{source}'s head has {len(upsample) - len(flat)} upsampling stages and {len(flat)} flat "
                            f"convolutions; {VARIANT} has {UPSAMPLE_STAGES} and none")
    attention = _shape(state, "1.cmap_att.weight")
    if attention and attention[0] != HEAD_CHANNELS:
        raise JetracerError(f"{source}'s head has {attention[0]} channels; {VARIANT} has {HEAD_CHANNELS}")
    cmap, paf = _shape(state, "1.cmap_conv.weight"), _shape(state, "1.paf_conv.weight")
    if cmap and paf:
        topology.check_maps(cmap[0], paf[0], source)
    expected = {key: tuple(value.shape) for key, value in _expected_state_dict(topology).items()}
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [f"{key} {_shape(state, key)} (expected {expected[key]})" for key in expected
                if key in state and _shape(state, key) != expected[key]]
    problems = [f"{label}: {_some(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("other shapes", reshaped)) if keys]
    if problems:
        raise JetracerError(f"{source} does not fit {VARIANT}: {'; '.join(problems)}")


def trt_pose_variant(state: Mapping[str, Any]) -> str | None:
    """trt_pose's name for the model a state dict belongs to (``resnet18_baseline_att``, ``densenet121_baseline``,
    ``mnasnet_baseline_att``, ``dla_up``, ...), or None when it does not look like one of trt_pose's."""
    keys = [key for key in state if isinstance(key, str)]
    if any(key.startswith("backbone.") for key in keys) and not any(key.startswith("1.") for key in keys):
        return "dla_up"  # trt_pose's DLA wrapper holds the whole network as ``backbone``
    backbones = {key.split(".")[1] for key in keys if key.startswith("0.") and key.count(".") >= 2}
    if len(backbones) != 1 or not any(key.startswith("1.") for key in keys):
        return None
    (backbone,) = backbones
    if any(key.startswith("1.cmap_up.") for key in keys):
        head = "_baseline_att"
    elif any(key.startswith("1.cmap_conv.") for key in keys):
        head = "_baseline"
    else:
        head = "_unknown_head"
    if backbone == "resnet":
        return f"resnet{_resnet_depth(keys)}{head}"
    if backbone == "densenet":
        return f"densenet{_densenet_depth(keys)}{head}"
    if backbone == "backbone":
        return f"mnasnet{head}"  # trt_pose's MNASNet wrapper names its backbone ``backbone``
    return f"{backbone}{head}"


_RESNET_DEPTHS = {("basic", (2, 2, 2, 2)): "18", ("basic", (3, 4, 6, 3)): "34", ("bottleneck", (3, 4, 6, 3)): "50",
                  ("bottleneck", (3, 4, 23, 3)): "101", ("bottleneck", (3, 8, 36, 3)): "152"}
_DENSENET_DEPTHS = {(24, 16): "121", (32, 32): "169", (48, 32): "201", (36, 24): "161"}


def _resnet_depth(keys: list[str]) -> str:
    blocks = tuple(len({key.split(".")[3] for key in keys if key.startswith(f"0.resnet.layer{layer}.")})
                   for layer in range(1, 5))
    kind = "bottleneck" if any(".conv3." in key for key in keys) else "basic"
    return _RESNET_DEPTHS.get((kind, blocks), "?")


def _densenet_depth(keys: list[str]) -> str:
    layers = tuple(len({key.split(".")[4] for key in keys if key.startswith(f"0.densenet.features.denseblock{b}.")})
                   for b in (3, 4))
    return _DENSENET_DEPTHS.get(layers, "?")


def _upsample_layers(state: Mapping[str, Any], prefix: str) -> list[tuple[int, int]]:
    """(index, kernel size) of the convolutions (4-D weights) under ``prefix``."""
    layers = []
    for key in state:
        match = re.fullmatch(re.escape(prefix) + r"(\d+)\.weight", key)
        shape = _shape(state, key)
        if match and shape and len(shape) == 4:
            layers.append((int(match.group(1)), shape[-1]))
    return sorted(layers)


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return tuple(value.shape) if hasattr(value, "shape") else None


def _some(keys: list[str], most: int = 6) -> str:
    shown = ", ".join(keys[:most])
    return f"{shown} and {len(keys) - most} more" if len(keys) > most else shown


def _expected_state_dict(topology: PoseTopology) -> dict[str, torch.Tensor]:
    """The keys and shapes of our network's state dict, without allocating its weights."""
    with torch.device("meta"):
        return build_pose_network(topology).state_dict()


def _read_state_dict(path_or_state_dict: str | os.PathLike | Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    if isinstance(path_or_state_dict, Mapping):
        return _unwrap(path_or_state_dict, "the state dict"), "the state dict"
    path = Path(path_or_state_dict)
    data = load_torch_file(path)
    if not isinstance(data, Mapping):
        raise JetracerError(f"{path} holds a {type(data).__name__}, not a state dict")
    return _unwrap(data, str(path)), str(path)


def _unwrap(data: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    """The state dict itself: a bare one as trt_pose writes it, or the ``state_dict`` entry of a checkpoint dict."""
    if "engine" in data and "input_names" in data:
        raise JetracerError(f"{source} is a torch2trt TensorRT module (a *_trt.pth), not trt_pose weights; "
                            "give the .pth it was built from")
    inner = data.get("state_dict")
    return inner if isinstance(inner, Mapping) else data
