"""How well a pose model finds people: PCK, the percentage of correct keypoints.

PCK@alpha (``pck``), as defined here (trt_pose reports none): the people a model finds in a frame (``parse_people``
on its maps, trt_pose's parser and thresholds) are matched one to one with the people of the labels, by the
assignment that makes the most keypoints correct (``scipy.optimize.linear_sum_assignment``); a labelled keypoint
that is visible (v = 2) is correct when the matched person has that keypoint within ``alpha`` times the size of
the labelled person's box, ``max(width, height)`` of the box around all of their keypoints (those outside the frame
or hidden included: the size of the whole figure, not of the part in view); a person the model missed gets none
right. PCK is correct / visible keypoints over all frames (each keypoint counts once, not each person or frame).
This is the bounding-box normaliser of Yang and Ramanan's PCK, not MPII's head-size PCKh or COCO's OKS.

No torch here: the model's maps come in as numpy arrays from any backend.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from .people import Person, parse_people
from .topology import PoseTopology

ALPHA = 0.1
VISIBLE = 2


@dataclass
class PckResult:
    """Correct and visible keypoint counts, per keypoint name and in all; ``pck`` is their ratio."""

    alpha: float
    correct: dict[str, int] = field(default_factory=dict)
    visible: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    people: int = 0          # labelled people with at least one visible keypoint
    found: int = 0           # people the model found

    @property
    def pck(self) -> float:
        total = sum(self.visible.values())
        return sum(self.correct.values()) / total if total else float("nan")

    def per_keypoint(self) -> dict[str, float]:
        return {name: self.correct[name] / n for name, n in self.visible.items() if n}

    def add(self, correct: np.ndarray, visible: np.ndarray, names: Sequence[str], found: int) -> None:
        """Counts one frame: ``correct`` and ``visible`` (P, C) booleans over its labelled people."""
        for c, name in enumerate(names):
            self.correct[name] = self.correct.get(name, 0) + int(correct[:, c].sum())
            self.visible[name] = self.visible.get(name, 0) + int(visible[:, c].sum())
        self.frames += 1
        self.people += int(visible.any(axis=1).sum())
        self.found += found

    def merge(self, other: PckResult) -> None:
        for name in other.visible:
            self.correct[name] = self.correct.get(name, 0) + other.correct[name]
            self.visible[name] = self.visible.get(name, 0) + other.visible[name]
        self.frames, self.people, self.found = (self.frames + other.frames, self.people + other.people,
                                                self.found + other.found)

    def as_dict(self) -> dict:
        return {"pck": self.pck, "alpha": self.alpha, "frames": self.frames, "people": self.people,
                "found": self.found, "visible_keypoints": sum(self.visible.values()),
                "per_keypoint": {name: round(value, 4) for name, value in self.per_keypoint().items()}}


def frame_correct(found: Sequence[Person], keypoints: np.ndarray, boxes: np.ndarray, names: Sequence[str],
                  alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """(correct, visible): (P, C) booleans for the labelled people ``keypoints`` (P, C, 3) with ``boxes`` (P, 4)
    of one frame, given the people the model ``found`` there (see the module docstring)."""
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(-1, len(names), 3)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    visible = keypoints[:, :, 2] == VISIBLE
    correct = np.zeros_like(visible)
    if not found or not visible.any():
        return correct, visible
    predicted = np.stack([person.as_array(tuple(names))[:, :2] for person in found])  # (Q, C, 2), NaN: not found
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])  # (P,)
    distance = np.linalg.norm(keypoints[:, None, :, :2] - predicted[None], axis=-1)  # (P, Q, C); NaN -> False below
    with np.errstate(invalid="ignore"):
        hits = (distance <= alpha * size[:, None, None]) & visible[:, None, :]
    rows, cols = linear_sum_assignment(hits.sum(axis=2), maximize=True)
    correct[rows] = hits[rows, cols]
    return correct, visible


def pck(frames_found: Iterable[Sequence[Person]], labels: Iterable[tuple[np.ndarray, np.ndarray]],
        names: Sequence[str], alpha: float = ALPHA) -> PckResult:
    """PCK over frames: the people found per frame and the (keypoints, boxes) labels of the same frames."""
    result = PckResult(alpha)
    for found, (keypoints, boxes) in zip(frames_found, labels, strict=True):
        correct, visible = frame_correct(found, keypoints, boxes, names, alpha)
        result.add(correct, visible, names, len(found))
    return result


def pck_of_maps(cmap: np.ndarray, paf: np.ndarray, labels: Sequence[tuple[np.ndarray, np.ndarray]],
                topology: PoseTopology, image_size: tuple[int, int], alpha: float = ALPHA) -> PckResult:
    """PCK of a batch of maps (N, C, H, W) against the labels of its N frames (``image_size``: (width, height) of
    the frames the labels' pixels are in). The maps are parsed frame by frame: OpenCV 5 dilates at most 128
    channels at once, a batch of 8 frames' confidence maps already 144."""
    found = [parse_people(cmap[i:i + 1], paf[i:i + 1], topology, image_size)[0] for i in range(len(cmap))]
    return pck(found, labels, topology.keypoints, alpha)


def evaluate_scenes(run: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], seeds: Sequence[int],
                    topology: PoseTopology, batch: int = 16, alpha: float = ALPHA) -> PckResult:
    """PCK of a model on the synthetic scenes of ``seeds``: ``run`` takes RGB uint8 frames (N, H, W, 3) and gives
    its (cmap, paf) for them."""
    from .data import render_scene

    result = PckResult(alpha)
    for start in range(0, len(seeds), batch):
        scenes = [render_scene(seed, topology) for seed in seeds[start:start + batch]]
        frames = np.stack([scene.image for scene in scenes])
        cmap, paf = run(frames)
        result.merge(pck_of_maps(cmap, paf, [(s.keypoints, s.boxes) for s in scenes], topology,
                                 (frames.shape[2], frames.shape[1]), alpha))
    return result


def evaluate_model(model, seeds: Sequence[int], batch: int = 16, alpha: float = ALPHA) -> PckResult:
    """PCK of a pose model file (``.onnx`` on ONNX Runtime on the CPU, FP32 or INT8, or a pose checkpoint on
    PyTorch) on the synthetic scenes of ``seeds``."""
    from ..contract import read_contract
    from ..verify import tensor_model_outputs

    contract = read_contract(model)

    def run(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = tensor_model_outputs(model, frames, contract, batch)
        return outputs["cmap"], outputs["paf"]

    return evaluate_scenes(run, seeds, contract.pose_topology(), batch, alpha)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jetracer_trt.pose.evaluate MODEL [--scenes N] [--first SEED]``: PCK@0.1 of a pose model on
    held-out synthetic scenes (by default the 1000 test scenes from ``data.TEST_SEEDS``), as one JSON object."""
    import argparse
    import json

    from .data import TEST_SEEDS

    parser = argparse.ArgumentParser(prog="python -m jetracer_trt.pose.evaluate", description=main.__doc__)
    parser.add_argument("model", help="a pose .onnx (FP32 or INT8) or pose checkpoint")
    parser.add_argument("--scenes", type=int, default=1000, help="how many scenes (default: 1000)")
    parser.add_argument("--first", type=int, default=TEST_SEEDS, help=f"the first scene seed (default: {TEST_SEEDS})")
    args = parser.parse_args(argv)
    result = evaluate_model(args.model, range(args.first, args.first + args.scenes))
    print(json.dumps({"model": args.model, "seeds": [args.first, args.first + args.scenes - 1], **result.as_dict()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
