"""What a model takes and gives: the model contract, carried by every model file jetracer_trt writes and read back
from the file when the model is loaded.

A contract names the model's task, what input it expects (size, colour order, normalisation, how a frame of another
size is resized, the input tensor's name) and what its outputs are (the output tensor's name, one name per output
column, what they mean). Every path that turns frames into model input (``preprocess.Preprocessor`` on the CPU,
``engines/cuda_stage.py`` on a GPU, training, calibration) is built from the contract of the model at hand, so a
model trained at another input size or normalisation runs correctly with no configuration change.

Where each kind of file keeps it, always under the key ``model_contract`` (``CONTRACT_KEY``):

| file                                   | where                                                              |
|----------------------------------------|--------------------------------------------------------------------|
| checkpoint ``.pt`` (``train``)         | a key of the checkpoint dict (``model.make_checkpoint``)           |
| ``.onnx`` (``export``, INT8)           | a ``metadata_props`` entry, as JSON                                |
| ``.pt2`` (AOTInductor package)         | the package metadata, as JSON                                      |
| ``.engine``, ``.trt.pth``              | a field of the sidecar ``<file>.json`` (``engines/sidecar.py``)    |

``config/model.yaml`` holds the default contract: the one a new model is trained with, and the one assumed, with a
logged warning, for a file that carries none (a JetRacer notebook ``.pth`` state dict, a foreign ONNX, a file made
before models carried their contract).

No torch, onnx or onnxruntime here (``read_contract`` imports torch only for a checkpoint).
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
COLOR_ORDERS = ("RGB",)     # frames are RGB uint8 everywhere in jetracer_trt
RESIZE_POLICIES = ("area",)  # stretch to the input size with cv2.INTER_AREA (``preprocess.resize``)


@dataclass(frozen=True)
class ModelContract:
    """What one model takes and gives (see the module docstring). The network sees, for an RGB uint8 frame
    resized to ``input_width`` x ``input_height`` by the ``resize`` policy, ``(pixel / 255 - mean) / std`` per
    channel as a float32 (N, 3, H, W) tensor named ``input_name``; it gives (N, len(outputs)) named ``output_name``."""

    task: str
    input_width: int
    input_height: int
    color_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str
    input_name: str
    output_name: str
    outputs: tuple[str, ...]
    output_meaning: str

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
        missing = [name for name in _FIELDS if data.get(name) is None]
        if missing:
            raise JetracerError(f"the model contract of {source} lacks {', '.join(missing)}")
        try:
            contract = cls(
                task=str(data["task"]), input_width=_positive_int(data["input_width"]),
                input_height=_positive_int(data["input_height"]), color_order=str(data["color_order"]),
                mean=_three_floats(data["mean"]), std=_three_floats(data["std"]), resize=str(data["resize"]),
                input_name=str(data["input_name"]), output_name=str(data["output_name"]),
                outputs=tuple(str(name) for name in data["outputs"]), output_meaning=str(data["output_meaning"]))
        except (TypeError, ValueError) as exc:
            raise JetracerError(f"the model contract of {source} is invalid: {exc}") from None
        problems = contract._problems()
        if problems:
            raise JetracerError(f"the model contract of {source} is invalid: {'; '.join(problems)}")
        return contract

    def _problems(self) -> list[str]:
        problems = []
        if not self.task:
            problems.append("task is empty")
        if self.color_order not in COLOR_ORDERS:
            problems.append(f"color_order {self.color_order!r} is none of {', '.join(COLOR_ORDERS)}")
        if self.resize not in RESIZE_POLICIES:
            problems.append(f"resize {self.resize!r} is none of {', '.join(RESIZE_POLICIES)}")
        if not all(s > 0 for s in self.std):
            problems.append(f"std {list(self.std)} must be positive")
        if not self.outputs or not self.input_name or not self.output_name:
            problems.append("outputs, input_name and output_name must not be empty")
        return problems

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height), the order OpenCV takes sizes in."""
        return self.input_width, self.input_height

    def replace(self, **changes: Any) -> ModelContract:
        """A copy with ``changes`` (validated like any contract)."""
        return ModelContract.from_dict({**self.as_dict(), **changes}, "the changed contract")

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists, not tuples): what model files store."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}

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
        from .model import read_checkpoint

        record = read_checkpoint(path)
    elif path.suffix in (".onnx", ".pt2"):
        try:
            record = (onnx_metadata if path.suffix == ".onnx" else package_metadata)(path)
        except (OSError, ValueError) as exc:
            raise JetracerError(f"cannot read the metadata of {path}: {exc}") from None
    else:
        raise JetracerError(f"{path.name} is no model file jetracer_trt knows (.onnx, .pt, .pth, .pt2, .engine, "
                            ".trt.pth)")
    return contract_from_record(record, path.name)
