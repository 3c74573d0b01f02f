"""People from the parser's trt_pose-style arrays: per person, each keypoint found as (x, y, score) in image pixels.

A keypoint's ``x`` and ``y`` are its refined position scaled to the image (``x = normalized_x * width``; pixel
``i`` of the image spans ``[i, i + 1)``), as trt_pose's ``DrawObjects`` places it before rounding. Its ``score`` is
the confidence map's value at the map pixel that position falls in (the peak's own pixel unless the refinement
moved it over half a pixel).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .parse import as_maps, parse_objects
from .topology import PoseTopology


@dataclass(frozen=True)
class Keypoint:
    x: float
    y: float
    score: float


@dataclass(frozen=True)
class Person:
    """The keypoints found for one person, by name, in the topology's order; absent keypoints are left out."""

    keypoints: dict[str, Keypoint]

    def as_array(self, names: tuple[str, ...]) -> np.ndarray:
        """``(len(names), 3)`` float array of (x, y, score) rows, NaN for the keypoints not found."""
        rows = [(p.x, p.y, p.score) if (p := self.keypoints.get(name)) else (np.nan,) * 3 for name in names]
        return np.array(rows, dtype=np.float64).reshape(len(names), 3)


def people_from_objects(object_counts: Any, objects: Any, normalized_peaks: Any, cmap: Any,
                        topology: PoseTopology, image_size: tuple[int, int]) -> list[list[Person]]:
    """Per image of the batch, its people (in ``objects`` order) from ``parse_objects``'s three arrays and the
    confidence maps they came from; ``image_size`` is the (width, height) of the image the coordinates are for."""
    cmap = as_maps(cmap, "cmap")
    object_counts = np.asarray(object_counts)
    objects = np.asarray(objects)
    normalized_peaks = np.asarray(normalized_peaks)
    width, height = image_size
    _, _, map_h, map_w = cmap.shape
    image, person, part = np.nonzero(objects >= 0)
    keep = person < object_counts[image]
    image, person, part = image[keep], person[keep], part[keep]
    yx = normalized_peaks[image, part, objects[image, person, part]].astype(np.float64)
    found = np.isfinite(yx).all(axis=1)
    image, person, part, yx = image[found], person[found], part[found], yx[found]
    row = np.clip((yx[:, 0] * map_h).astype(np.intp), 0, map_h - 1)
    col = np.clip((yx[:, 1] * map_w).astype(np.intp), 0, map_w - 1)
    scores = cmap[image, part, row, col]
    people: list[list[dict[str, Keypoint]]] = [[{} for _ in range(int(count))] for count in object_counts]
    for n, p, c, (y, x), score in zip(image.tolist(), person.tolist(), part.tolist(), yx.tolist(), scores.tolist(),
                                      strict=True):
        people[n][p][topology.keypoints[c]] = Keypoint(x=x * width, y=y * height, score=score)
    return [[Person(keypoints) for keypoints in image_people] for image_people in people]


def parse_people(cmap: Any, paf: Any, topology: PoseTopology, image_size: tuple[int, int],
                 **parse_options: Any) -> list[list[Person]]:
    """``parse_objects`` (``parse_options`` are its thresholds and limits) then ``people_from_objects``."""
    cmap = as_maps(cmap, "cmap")
    return people_from_objects(*parse_objects(cmap, paf, topology, **parse_options), cmap, topology, image_size)
