"""Hand-made confidence maps and part affinity fields of people placed at known keypoints: maps with a known answer,
for checking the parser and timing it without a network.

People are ``(P, C, 2)`` arrays of normalised ``(x, y)`` in [0, 1] of the image, NaN where a keypoint is missing.
Each keypoint is a Gaussian bump (the largest where people's bumps overlap); each link of a person with both ends
present is a band ``limb_width`` pixels either side of the segment holding its unit direction, paf channel ``2k``
the row (y) component and ``2k + 1`` the column (x) one, averaged where people's bands overlap.
"""
from __future__ import annotations

import numpy as np

from .topology import PoseTopology

# one standing person, facing the camera (so their left is on the image's right), in a 1 x 1 box: (x, y)
HUMAN_FIGURE = {
    "nose": (0.50, 0.08), "left_eye": (0.56, 0.05), "right_eye": (0.44, 0.05), "left_ear": (0.63, 0.07),
    "right_ear": (0.37, 0.07), "neck": (0.50, 0.20), "left_shoulder": (0.75, 0.22), "right_shoulder": (0.25, 0.22),
    "left_elbow": (0.85, 0.40), "right_elbow": (0.15, 0.40), "left_wrist": (0.90, 0.56), "right_wrist": (0.10, 0.56),
    "left_hip": (0.65, 0.58), "right_hip": (0.35, 0.58), "left_knee": (0.67, 0.78), "right_knee": (0.33, 0.78),
    "left_ankle": (0.68, 0.97), "right_ankle": (0.32, 0.97),
}


def people_in_a_row(count: int, topology: PoseTopology, height: float = 0.7, top: float = 0.15,
                    jitter: float = 0.002, seed: int = 0) -> np.ndarray:
    """``count`` people of the human figure side by side across the image, each ``height`` tall, feet level, each
    keypoint moved by up to ``jitter`` at random (seeded): drawn exactly on a pixel border, a bump would have two
    equal top pixels, two peaks."""
    figure = np.array([HUMAN_FIGURE.get(name, (np.nan, np.nan)) for name in topology.keypoints], dtype=np.float64)
    slot = 1.0 / count
    size = min(height, 0.9 * slot)
    people = np.empty((count, topology.num_keypoints, 2))
    for p in range(count):
        people[p, :, 0] = (p + 0.5) * slot + (figure[:, 0] - 0.5) * size
        people[p, :, 1] = top + height - size + figure[:, 1] * size
    return people + np.random.default_rng(seed).uniform(-jitter, jitter, people.shape)


def draw_maps(people: np.ndarray, topology: PoseTopology, map_size: tuple[int, int] = (56, 56),
              sigma: float = 1.0, limb_width: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(cmap (1, C, H, W), paf (1, 2K, H, W))`` float32 for ``people``; ``map_size`` is (height, width), sigma
    and limb_width in map pixels."""
    h, w = map_size
    people = np.asarray(people, dtype=np.float64).reshape(-1, topology.num_keypoints, 2)
    ys, xs = np.mgrid[0:h, 0:w] + 0.5  # pixel centres
    cmap = np.zeros((topology.num_keypoints, h, w))
    paf = np.zeros((topology.num_links, 2, h, w))
    bands = np.zeros((topology.num_links, h, w))
    for person in people:
        at = person * (w, h)  # map coordinates (x, y)
        for c, (x, y) in enumerate(at):
            if np.isfinite(x) and np.isfinite(y):
                cmap[c] = np.maximum(cmap[c], np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2)))
        for k, (a, b) in enumerate(topology.skeleton):
            if not (np.isfinite(at[a]).all() and np.isfinite(at[b]).all()):
                continue
            direction = at[b] - at[a]
            length = float(np.hypot(*direction))
            if length == 0:
                continue
            unit = direction / length
            along = (xs - at[a][0]) * unit[0] + (ys - at[a][1]) * unit[1]
            across = np.abs((xs - at[a][0]) * unit[1] - (ys - at[a][1]) * unit[0])
            band = (along >= -limb_width) & (along <= length + limb_width) & (across <= limb_width)
            paf[k, 0] += band * unit[1]
            paf[k, 1] += band * unit[0]
            bands[k] += band
    paf /= np.maximum(bands, 1)[:, None]
    return cmap[None].astype(np.float32), paf.reshape(1, 2 * topology.num_links, h, w).astype(np.float32)
