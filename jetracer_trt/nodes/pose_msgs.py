"""People as the inference node publishes them, built as plain arrays (no ROS here: the node only fills messages).

``people_array``: ``(people, keypoints, 3)`` float32 of (x, y, score) per keypoint in the topology's order, image
pixels, NaN where a keypoint was not found: the data of ``pose/people`` (std_msgs/Float32MultiArray, row-major, its
layout's dimensions labelled ``PEOPLE_DIMS`` with their sizes and strides, ``layout_dims``).

``drawing``: per person the keypoints found and the links whose two keypoints were both found (``limb_segments``),
as pixel positions, with colours: the RViz markers' sphere and line lists and the annotated image
(``draw_people``) are both drawn from it.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..pose.people import Person
from ..pose.topology import PoseTopology

PEOPLE_DIMS = ("people", "keypoints", "x_y_score")
KEYPOINT_COLOUR = (255, 64, 64)   # RGB
LIMB_COLOUR = (64, 255, 64)
FOLLOWED_COLOUR = (255, 220, 0)   # the person follow-me follows


def people_array(people: Sequence[Person], topology: PoseTopology) -> np.ndarray:
    """``(len(people), keypoints, 3)`` float32: (x, y, score) per keypoint, NaN for those not found."""
    array = np.full((len(people), topology.num_keypoints, 3), np.nan, dtype=np.float32)
    for row, person in zip(array, people, strict=True):
        row[:] = person.as_array(topology.keypoints)
    return array


def layout_dims(shape: tuple[int, ...]) -> list[tuple[str, int, int]]:
    """(label, size, stride) per dimension of a row-major array of ``shape``, as std_msgs/MultiArrayDimension
    wants them (stride: the number of elements one step of this dimension and all below it spans)."""
    dims, stride = [], 1
    for label, size in reversed(list(zip(PEOPLE_DIMS, shape, strict=True))):
        stride *= size
        dims.append((label, int(size), int(stride)))
    return dims[::-1]


def limb_segments(array: np.ndarray, topology: PoseTopology) -> list[np.ndarray]:
    """Per person of ``people_array``'s ``array``, a ``(links found, 2, 2)`` array of the (x, y) end points of each
    link whose two keypoints were found."""
    skeleton = np.array(topology.skeleton, dtype=np.intp).reshape(-1, 2)
    segments = []
    for person in array:
        ends = person[skeleton][:, :, :2]  # (links, 2, 2)
        segments.append(ends[np.isfinite(ends).all(axis=(1, 2))])
    return segments


def drawing(array: np.ndarray, topology: PoseTopology, followed: int = -1
            ) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int, int]]]:
    """What to draw of each person: (keypoints found as (n, 2) x, y; limbs as ``limb_segments``; the limbs' RGB
    colour, ``FOLLOWED_COLOUR`` for the ``followed`` person's index)."""
    return [(person[np.isfinite(person).all(axis=1)][:, :2], segments,
             FOLLOWED_COLOUR if index == followed else LIMB_COLOUR)
            for index, (person, segments) in enumerate(zip(array, limb_segments(array, topology), strict=True))]


def draw_people(frame: np.ndarray, array: np.ndarray, topology: PoseTopology, followed: int = -1) -> np.ndarray:
    """A copy of the RGB ``frame`` with each person's limbs and keypoints drawn (``drawing``)."""
    image = np.ascontiguousarray(frame).copy()
    for keypoints, segments, colour in drawing(array, topology, followed):
        for (ax, ay), (bx, by) in segments:
            cv2.line(image, (int(ax), int(ay)), (int(bx), int(by)), colour, 2, cv2.LINE_AA)
        for x, y in keypoints:
            cv2.circle(image, (int(x), int(y)), 3, KEYPOINT_COLOUR, -1, cv2.LINE_AA)
    return image
