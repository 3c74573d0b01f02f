"""A frame in, the people in it out: a pose model on any inference engine, then trt_pose's parser.

``PoseEstimator(create_engine(backend, model, task=POSE)).people(frame)`` runs the model on one RGB frame of any
size (the engine resizes it to the model's input by the contract), parses its ``cmap`` and ``paf`` with
``parse_people`` and gives each person's keypoints in that frame's own pixels: the model's input is the whole frame
stretched (``preprocess.resize``), so a map position in [0, 1] of the map's width and height is that fraction of the
frame's width and height.

People with fewer than ``min_keypoints`` keypoints are dropped: the parser also reports fragments, peaks that no
link joined to a body (on the shipped model's test scenes nearly all of one to four keypoints,
models/POSE_MODEL_CARD.md), and a behaviour that follows someone must not follow one of those.

No torch here: the engine decides what runs the model.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..contract import POSE
from ..errors import JetracerError
from ..preprocess import check_frame
from .people import Person, parse_people
from .topology import PoseTopology

DEFAULT_MIN_KEYPOINTS = 5


class PoseEstimator:
    """``people(frame)``: the engine's pose model, then the parser; ``last_model_ms`` and ``last_parse_ms`` time
    the last call's two steps."""

    def __init__(self, engine, topology: PoseTopology | None = None, min_keypoints: int = DEFAULT_MIN_KEYPOINTS,
                 **parse_options: Any) -> None:
        """``engine``: an ``InferenceEngine`` of a pose model (``create_engine(..., task=POSE)``). ``topology``:
        what the maps' channels are (default: the one the model's contract carries). ``min_keypoints``: people
        with fewer keypoints are left out (0 keeps every fragment). ``parse_options``: ``parse_objects``'s
        thresholds and limits (``cmap_threshold``, ``link_threshold``, ...)."""
        contract = engine.contract
        if contract.task != POSE or not contract.tensor_outputs:
            raise JetracerError(f"a pose estimator needs a {POSE} model with cmap and paf outputs, and this is a "
                                f"{contract.task} model (outputs {', '.join(contract.outputs)})")
        if isinstance(min_keypoints, bool) or not isinstance(min_keypoints, int) or min_keypoints < 0:
            raise JetracerError(f"min_keypoints must be a whole number >= 0, got {min_keypoints!r}")
        self.engine = engine
        self.topology = topology or contract.pose_topology()
        self.topology.check_maps(contract.output_shape("cmap")[0], contract.output_shape("paf")[0],
                                 f"the maps of {engine.model_path or 'the model'}")
        self.min_keypoints = min_keypoints
        self.parse_options = parse_options
        self.last_model_ms = 0.0  # the engine's model step of the last call (InferenceEngine.last_model_ms)
        self.last_parse_ms = 0.0  # parsing the last call's maps into people

    def people(self, frame: np.ndarray) -> list[Person]:
        """The people in the RGB uint8 (H, W, 3) ``frame``, keypoints in its pixels, in the parser's order; those
        with fewer than ``min_keypoints`` keypoints left out."""
        check_frame(frame)
        maps = self.engine.infer_tensors(frame)
        self.last_model_ms = self.engine.last_model_ms
        start = time.perf_counter()
        found = parse_people(maps["cmap"][None], maps["paf"][None], self.topology, (frame.shape[1], frame.shape[0]),
                             **self.parse_options)[0]
        kept = [person for person in found if len(person.keypoints) >= self.min_keypoints]
        self.last_parse_ms = (time.perf_counter() - start) * 1e3
        return kept
