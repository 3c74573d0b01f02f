"""Which keypoints a pose model finds and which pairs of them it links: trt_pose's topology, read from its JSON.

A topology file is a COCO keypoint category, as trt_pose publishes it (``config/human_pose.json``: COCO's 17
keypoints plus ``neck``, 21 links): ``{"name": ..., "keypoints": [names], "skeleton": [[a, b], ...]}`` with
``a`` and ``b`` numbering keypoints from 1. Link ``k`` joins keypoints ``a - 1`` and ``b - 1``; its part affinity
field is the pair of paf channels ``2k`` (the row, y, component) and ``2k + 1`` (the column, x, component).

``PoseTopology.links`` is what trt_pose calls ``topology`` (``trt_pose.coco.coco_category_to_topology``): an int32
``(K, 4)`` array of rows ``[2k, 2k + 1, a - 1, b - 1]``, so code written for trt_pose (its ``DrawObjects``, say)
takes it unchanged.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import JetracerError

HUMAN_POSE_FILE = "human_pose.json"


@dataclass(frozen=True)
class PoseTopology:
    """Keypoint names and links (0-based keypoint index pairs, in file order), and the file they came from."""

    name: str
    keypoints: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    source: str

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def num_links(self) -> int:
        return len(self.skeleton)

    @property
    def paf_channels(self) -> int:
        """Two part-affinity channels per link."""
        return 2 * len(self.skeleton)

    @functools.cached_property
    def links(self) -> np.ndarray:
        """trt_pose's ``(K, 4)`` int32 topology array (read-only): paf row channel, paf column channel, a, b."""
        rows = [(2 * k, 2 * k + 1, a, b) for k, (a, b) in enumerate(self.skeleton)]
        array = np.array(rows, dtype=np.int32).reshape(len(rows), 4)
        array.flags.writeable = False
        return array

    def check_maps(self, cmap_channels: int, paf_channels: int, what: str) -> None:
        """JetracerError naming ``what`` (a checkpoint, an engine's outputs) when its confidence maps or part
        affinity fields do not have one channel per keypoint and two per link of this topology."""
        problems = []
        if cmap_channels != self.num_keypoints:
            problems.append(f"cmap has {cmap_channels} channels, the topology has {self.num_keypoints} keypoints")
        if paf_channels != self.paf_channels:
            problems.append(f"paf has {paf_channels} channels, the topology's {self.num_links} links need "
                            f"{self.paf_channels}")
        if problems:
            raise JetracerError(f"{what} does not fit the topology {self.source}: {'; '.join(problems)}")


def default_topology_path() -> Path:
    """trt_pose's human topology, shipped as ``config/human_pose.json``."""
    from ..config import share_dir  # the config module reads YAML: imported only where the shared folder is needed

    return share_dir() / "config" / HUMAN_POSE_FILE


def load_topology(path: str | os.PathLike | None = None) -> PoseTopology:
    """The topology of a trt_pose-style JSON file (default: ``config/human_pose.json``); JetracerError naming the
    file and what is wrong with it."""
    path = Path(path) if path is not None else default_topology_path()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise JetracerError(f"topology file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise JetracerError(f"cannot read topology file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise JetracerError(f"topology file {path} is not valid JSON: {exc}") from None
    return topology_from_category(data, str(path))


def topology_from_category(category: Mapping[str, Any], source: str) -> PoseTopology:
    """The topology a COCO keypoint category describes (``keypoints`` names, 1-based ``skeleton`` pairs)."""
    if not isinstance(category, Mapping):
        raise JetracerError(f"topology {source} must be a JSON object with keypoints and skeleton")
    keypoints = category.get("keypoints")
    if not isinstance(keypoints, list) or not keypoints or not all(isinstance(k, str) and k for k in keypoints):
        raise JetracerError(f"topology {source}: 'keypoints' must be a non-empty list of names")
    if len(set(keypoints)) != len(keypoints):
        repeated = sorted({k for k in keypoints if keypoints.count(k) > 1})
        raise JetracerError(f"topology {source}: keypoint names repeat ({', '.join(repeated)})")
    skeleton = category.get("skeleton")
    if not isinstance(skeleton, list) or not skeleton:
        raise JetracerError(f"topology {source}: 'skeleton' must be a non-empty list of [a, b] keypoint numbers")
    links = []
    for k, pair in enumerate(skeleton):
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
            raise JetracerError(f"topology {source}: skeleton entry {k} is {pair!r}, not a pair of keypoint numbers")
        a, b = pair
        if not (1 <= a <= len(keypoints) and 1 <= b <= len(keypoints)):
            raise JetracerError(f"topology {source}: skeleton entry {k} {pair} names a keypoint outside "
                                f"1..{len(keypoints)} (keypoints are numbered from 1)")
        if a == b:
            raise JetracerError(f"topology {source}: skeleton entry {k} links keypoint {a} to itself")
        links.append((a - 1, b - 1))
    name = category.get("name", "pose")
    return PoseTopology(name=str(name), keypoints=tuple(keypoints), skeleton=tuple(links), source=source)


def links_array(topology: PoseTopology | Any) -> np.ndarray:
    """trt_pose's ``(K, 4)`` int32 topology array from a PoseTopology or from that array itself (a numpy array, a
    list, or trt_pose's own torch tensor)."""
    if isinstance(topology, PoseTopology):
        return topology.links
    if hasattr(topology, "detach"):  # trt_pose's topology is a torch tensor
        topology = topology.detach().cpu().numpy()
    array = np.asarray(topology)
    if array.ndim != 2 or array.shape[1] != 4 or not np.issubdtype(array.dtype, np.integer) or (array < 0).any():
        raise JetracerError(f"a topology must be a PoseTopology or a (K, 4) array of non-negative integers "
                            f"(paf row, paf column, part a, part b), not {array.dtype} {array.shape}")
    return array.astype(np.int32, copy=False)
