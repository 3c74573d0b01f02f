"""What a model takes and gives: the model contract, carried by every model file jetracer_trt writes and read back
from the file when the model is loaded.

A contract names the model's task, what input it expects (size, colour order, normalisation, how a frame of another
size is resized, the input tensor's name) and what its outputs are, in one of two shapes:

* columns (road following): one output tensor ``output_name`` of shape (N, len(outputs)), one name per column
  (``x``, ``y``);
* tensors (pose): one output tensor per name in ``outputs`` (``cmap``, ``paf``), each of the per-frame shape
  ``output_shapes`` gives for the contract's input size; a pose contract also carries its ``topology`` (trt_pose's
  COCO category: keypoint names and 1-based skeleton links), which says what each channel of the maps is.

Every path that turns frames into model input (``preprocess.Preprocessor`` on the CPU, ``engines/cuda_stage.py`` on a
GPU, training, calibration) is built from the contract of the model at hand, so a
model trained at another input size or normalisation runs correctly with no configuration change.

Where each kind of file keeps it, always under the key ``model_contract`` (``CONTRACT_KEY``):

| file                                   | where                                                              |
|----------------------------------------|--------------------------------------------------------------------|
| checkpoint ``.pt`` (``train``)         | a key of the checkpoint dict (``model.make_checkpoint``; a pose    |
|                                        | one ``pose.checkpoint.make_pose_checkpoint``)                      |
| ``.onnx`` (``export``, INT8)           | a ``metadata_props`` entry, as JSON                                |
| ``.pt2`` (AOTInductor package)         | the package metadata, as JSON                                      |
| ``.engine``, ``.trt.pth``              | a field of the sidecar ``<file>.json`` (``engines/sidecar.py``)    |

``config/model.yaml`` holds the default contract: the one a new road-following model is trained with, and the one
assumed, with a logged warning, for a file that carries none (a JetRacer notebook ``.pth`` state dict, a foreign
ONNX, a file made before models carried their contract). trt_pose's own weights, a bare state dict too, get the pose
contract of the default topology (``pose_contract``).

No torch, onnx or onnxruntime here (``read_contract`` imports torch only for a checkpoint, and the pose package
only for a pose contract's topology).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .config import load_config
from .errors import JetracerError

log = logging.getLogger(__name__)

CONTRACT_KEY = "model_contract"
ROAD_FOLLOWING = "road_following"
POSE = "pose"
POSE_OUTPUTS = ("cmap", "paf")  # trt_pose's confidence maps and part affinity fields
COLOR_ORDERS = ("RGB",)     # frames are RGB uint8 everywhere in jetracer_trt
RESIZE_POLICIES = ("area",)  # stretch to the input size with cv2.INTER_AREA (``preprocess.resize``)


@dataclass(frozen=True)
class ModelContract:
    """What one model takes and gives (see the module docstring). The network sees, for an RGB uint8 frame
    resized to ``input_width`` x ``input_height`` by the ``resize`` policy, ``(pixel / 255 - mean) / std`` per
    channel as a float32 (N, 3, H, W) tensor named ``input_name``; it gives (N, len(outputs)) named ``output_name``,
    or, when ``output_shapes`` is set, one tensor (N, *shape) per output, named as the output."""

    task: str
    input_width: int
    input_height: int
    color_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str
    input_name: str
    outputs: tuple[str, ...]
    output_meaning: str
    output_name: str = ""                                      # column outputs: the one output tensor
    output_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()  # tensor outputs: (name, per-frame shape) each
    topology: tuple | None = None                              # pose: (name, keypoints, 1-based skeleton pairs)

    @classmethod
    def default(cls) -> ModelContract:
        """The default contract of ``config/model.yaml``."""
        cfg = load_config("model")
        return cls.from_dict({name: cfg.get(name) for name in _FIELDS}, "config/model.yaml")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> ModelContract:
        """The contract ``data`` describes; JetracerError naming ``source`` and every field that is missing or
        invalid (unknown fields are ignored: a newer jetracer_trt may add some)."""
        if not isinstance(data, Mapping):
            raise JetracerError(f"the model contract of {source} is a {type(data).__name__}, not a mapping")
        required = [name for name in _FIELDS if name not in _OPTIONAL]
        if not data.get("output_shapes"):
            required.append("output_name")  # column outputs come out of one named tensor
        missing = [name for name in _FIELDS if name in required and data.get(name) is None]
        if missing:
            raise JetracerError(f"the model contract of {source} lacks {', '.join(missing)}")
        try:
            contract = cls(
                task=str(data["task"]), input_width=_positive_int(data["input_width"]),
                input_height=_positive_int(data["input_height"]), color_order=str(data["color_order"]),
                mean=_three_floats(data["mean"]), std=_three_floats(data["std"]), resize=str(data["resize"]),
                input_name=str(data["input_name"]), output_name=str(data.get("output_name") or ""),
                outputs=tuple(str(name) for name in data["outputs"]), output_meaning=str(data["output_meaning"]),
                output_shapes=_output_shapes(data.get("output_shapes")), topology=_topology(data.get("topology")))
        except (TypeError, ValueError, AttributeError) as exc:
            raise JetracerError(f"the model contract of {source} is invalid: {exc}") from None
        problems = contract._problems()
        if problems:
            raise JetracerError(f"the model contract of {source} is invalid: {'; '.join(problems)}")
        return contract

    def _problems(self) -> list[str]:
        problems: list[str] = []
        if not self.task:
            problems.append("task is empty")
        if self.color_order not in COLOR_ORDERS:
            problems.append(f"color_order {self.color_order!r} is none of {', '.join(COLOR_ORDERS)}")
        if self.resize not in RESIZE_POLICIES:
            problems.append(f"resize {self.resize!r} is none of {', '.join(RESIZE_POLICIES)}")
        if not all(s > 0 for s in self.std):
            problems.append(f"std {list(self.std)} must be positive")
        if not self.outputs or not self.input_name or not (self.output_name or self.output_shapes):
            problems.append("outputs, input_name and output_name must not be empty")
        if self.output_shapes and [name for name, _ in self.output_shapes] != list(self.outputs):
            problems.append(f"output_shapes names {[name for name, _ in self.output_shapes]}, not the outputs "
                            f"{list(self.outputs)}")
        if self.topology is not None:
            problems += self._topology_problems()
        return problems

    def _topology_problems(self) -> list[str]:
        """A carried topology must be valid, and maps named cmap and paf must have its channels."""
        try:
            topology = self.pose_topology()
        except JetracerError as exc:
            return [str(exc)]
        shapes = dict(self.output_shapes)
        if "cmap" not in shapes or "paf" not in shapes:
            return []
        cmap, paf = shapes["cmap"], shapes["paf"]
        if len(cmap) != 3 or len(paf) != 3 or cmap[1:] != paf[1:]:
            return [f"cmap {list(cmap)} and paf {list(paf)} must be (channels, height, width) maps of one size"]
        try:
            topology.check_maps(cmap[0], paf[0], "the contract's maps")
        except JetracerError as exc:
            return [str(exc)]
        return []

    @property
    def tensor_outputs(self) -> bool:
        """True when each output is a whole tensor of its own (``output_shapes``), False for columns of one."""
        return bool(self.output_shapes)

    @property
    def output_tensors(self) -> tuple[str, ...]:
        """The names of the model's output tensors, in order: the outputs themselves, or the one ``output_name``."""
        return self.outputs if self.tensor_outputs else (self.output_name,)

    def output_shape(self, name: str) -> tuple[int, ...]:
        """The per-frame shape of output tensor ``name`` ((len(outputs),) for the one tensor of column outputs)."""
        if not self.tensor_outputs:
            return (len(self.outputs),)
        return dict(self.output_shapes)[name]

    def pose_topology(self):
        """The ``pose.PoseTopology`` a pose contract carries (its keypoints and links: what each channel means)."""
        from .pose.topology import topology_from_category

        if self.topology is None:
            raise JetracerError(f"this {self.task} contract carries no pose topology")
        name, keypoints, skeleton = self.topology
        return topology_from_category({"name": name, "keypoints": list(keypoints),
                                       "skeleton": [list(pair) for pair in skeleton]}, "the model contract")

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height), the order OpenCV takes sizes in."""
        return self.input_width, self.input_height

    def replace(self, **changes: Any) -> ModelContract:
        """A copy with ``changes`` (validated like any contract)."""
        return ModelContract.from_dict({**self.as_dict(), **changes}, "the changed contract")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists, not tuples): what model files store. The fields of tensor outputs and pose are
        left out when unset, so a road-following model's contract reads as it did before they existed."""
        data = {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}
        data["output_shapes"] = {name: list(shape) for name, shape in self.output_shapes}
        if self.topology is not None:
            name, keypoints, skeleton = self.topology
            data["topology"] = {"name": name, "keypoints": list(keypoints), "skeleton": [list(p) for p in skeleton]}
        for name in _OPTIONAL:
            if not data[name]:
                del data[name]
        return data

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def summary(self) -> str:
        """One line for logs and messages."""
        return (f"{self.task}, {self.color_order} {self.input_width}x{self.input_height}, mean {list(self.mean)} "
                f"std {list(self.std)}, {self.resize} resize, outputs {', '.join(self.outputs)}")

    def require_task(self, task: str, model: str | os.PathLike) -> None:
        """JetracerError unless the model does ``task``: a model made for another task must not drive."""
        if self.task != task:
            raise JetracerError(f"{model} is a {self.task} model, and a {task} model is needed here: its outputs "
                                f"({', '.join(self.outputs)}: {self.output_meaning}) mean something else")


_FIELDS = tuple(f.name for f in dataclasses.fields(ModelContract))
_OPTIONAL = ("output_name", "output_shapes", "topology")


def _output_shapes(value: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``{name: [dims]}`` -> ((name, dims), ...) in the mapping's order; () for none."""
    if not value:
        return ()
    if not isinstance(value, Mapping):
        raise ValueError(f"output_shapes must map output names to shapes, not {type(value).__name__}")
    return tuple((str(name), tuple(_positive_int(d) for d in dims)) for name, dims in value.items())


def _topology(value: Any) -> tuple | None:
    """A COCO keypoint category -> (name, keypoint names, 1-based skeleton pairs), checked by ``pose_topology``."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"topology must be a COCO keypoint category (keypoints, skeleton), not {type(value).__name__}")
    return (str(value.get("name", "pose")), tuple(str(k) for k in value.get("keypoints") or ()),
            tuple(tuple(int(v) for v in pair) for pair in value.get("skeleton") or ()))


def pose_contract(topology, input_width: int = 224, input_height: int = 224, stride: int = 4,
                  base: ModelContract | None = None) -> ModelContract:
    """The contract of a trt_pose-style pose model for ``topology`` (a ``pose.PoseTopology``): the default
    contract's colour order, ImageNet mean/std and resize (``base``, default config/model.yaml's), the given input
    size, and two outputs: ``cmap`` (one confidence map per keypoint) and ``paf`` (two part affinity channels per
    link, row then column), each at 1/``stride`` of the input."""
    base = base or ModelContract.default()
    height, width = input_height // stride, input_width // stride
    skeleton = [[a + 1, b + 1] for a, b in topology.skeleton]
    return ModelContract.from_dict({
        **{name: value for name, value in base.as_dict().items() if name not in _OPTIONAL},
        "task": POSE, "input_width": input_width, "input_height": input_height, "outputs": list(POSE_OUTPUTS),
        "output_shapes": {"cmap": [topology.num_keypoints, height, width],
                          "paf": [topology.paf_channels, height, width]},
        "topology": {"name": topology.name, "keypoints": list(topology.keypoints), "skeleton": skeleton},
        "output_meaning": (f"trt_pose's maps for the {topology.name} topology ({topology.num_keypoints} keypoints, "
                           f"{topology.num_links} links): cmap, one confidence map per keypoint; paf, a part "
                           "affinity field per link (channel 2k its row component, 2k + 1 its column one)"),
    }, "the pose contract")


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{value!r} is not a positive integer")
    return int(value)


def _three_floats(values: Any) -> tuple[float, float, float]:
    floats = tuple(float(v) for v in values)
    if len(floats) != 3 or not all(math.isfinite(v) for v in floats):
        raise ValueError(f"{list(values)!r} is not three finite numbers, one per colour channel")
    return floats  # type: ignore[return-value]


def contract_from_record(record: Mapping[str, Any], source: str | os.PathLike) -> ModelContract:
    """The contract a model file's record holds under ``CONTRACT_KEY`` (a dict, or its JSON text: ONNX and package
    metadata hold strings); the default contract, with a logged warning, when the record holds none."""
    value = record.get(CONTRACT_KEY)
    if value is None:
        default = ModelContract.default()
        log.warning("%s carries no model contract (a file not made by jetracer_trt, or made before models carried "
                    "one); assuming the default of config/model.yaml: %s", source, default.summary())
        return default
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise JetracerError(f"the model contract of {source} is not valid JSON ({exc})") from None
    return ModelContract.from_dict(value, str(source))


def read_contract(path: str | os.PathLike) -> ModelContract:
    """The contract the model file ``path`` carries (see the table in the module docstring), read without loading
    the model (except a checkpoint, which is a single pickle); the default contract, with a warning, if it carries
    none. JetracerError for a file that cannot be read or is of no known kind."""
    from .engines.artifacts import onnx_metadata, package_metadata
    from .engines.sidecar import read_sidecar

    path = Path(path)
    if not path.is_file():
        raise JetracerError(f"model file not found: {path}")
    if path.name.endswith((".engine", ".plan", ".trt.pth")):
        record = read_sidecar(path)
    elif path.suffix in (".pt", ".pth"):
        record = _checkpoint_record(path)
    elif path.suffix in (".onnx", ".pt2"):
        try:
            record = (onnx_metadata if path.suffix == ".onnx" else package_metadata)(path)
        except (OSError, ValueError) as exc:
            raise JetracerError(f"cannot read the metadata of {path}: {exc}") from None
    else:
        raise JetracerError(f"{path.name} is no model file jetracer_trt knows (.onnx, .pt, .pth, .pt2, .engine, "
                            ".trt.pth)")
    return contract_from_record(record, path.name)


def _checkpoint_record(path: Path) -> Mapping[str, Any]:
    """The record of a checkpoint: a pose one (ours or trt_pose's, ``pose/checkpoint.py``) or a road-following one
    (``model.read_checkpoint``)."""
    from .model import load_torch_file, read_checkpoint
    from .pose.checkpoint import is_pose_checkpoint, pose_record
    from .pose.network import trt_pose_variant

    data = load_torch_file(path)
    if is_pose_checkpoint(data) or (isinstance(data, Mapping) and trt_pose_variant(data) is not None):
        return {CONTRACT_KEY: pose_record(data, path.name)[2].as_dict()}
    return read_checkpoint(path)
