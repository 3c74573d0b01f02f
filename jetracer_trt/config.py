"""Defaults live in the YAML files of ``config/``; this module finds and reads them.

The same files serve a source checkout, an editable or wheel install (``share/jetracer_trt/config``) and a colcon
build on a ROS 2 install (found through ament_index when it is importable).
"""
from __future__ import annotations

import copy
import functools
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import JetracerError

PACKAGE = "jetracer_trt"


@functools.lru_cache(maxsize=1)
def share_dir() -> Path:
    """The folder holding ``config/``, ``models/`` and ``launch/``.

    Order: ``$JETRACER_TRT_SHARE``, the source tree beside this package, ``<prefix>/share/jetracer_trt``, then
    ament_index (a colcon install).
    """
    candidates = []
    if os.environ.get("JETRACER_TRT_SHARE"):
        candidates.append(Path(os.environ["JETRACER_TRT_SHARE"]))
    candidates.append(Path(__file__).resolve().parent.parent)
    candidates.append(Path(sys.prefix) / "share" / PACKAGE)
    for path in candidates:
        if (path / "config").is_dir():
            return path
    try:  # a ROS 2 install: colcon puts data files under the package's share directory
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - ament_index missing or package not indexed: fall through to the error
        pass
    raise JetracerError(
        "cannot find jetracer_trt's config/ folder; set JETRACER_TRT_SHARE to the folder that holds config/ and models/"
    )


@functools.lru_cache(maxsize=None)
def _load_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise JetracerError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise JetracerError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise JetracerError(f"config file {path} must hold a mapping at the top level")
    return data


def load_config(name: str) -> dict[str, Any]:
    """A fresh (deep-copied) dict of ``config/<name>.yaml``; callers may change it freely."""
    return copy.deepcopy(_load_yaml(str(share_dir() / "config" / f"{name}.yaml")))


def default_model_path(task: str = "road_following") -> Path:
    """The shipped ONNX model of ``task``: road following, or ``pose`` (the small pose network)."""
    return share_dir() / "models" / load_config("model")["default_pose_onnx" if task == "pose" else "default_onnx"]
