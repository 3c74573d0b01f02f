"""PoseEstimator: a frame of any size -> the people in it, keypoints in that frame's pixels, fragments below
min_keypoints left out, both steps timed. An engine stand-in gives hand-drawn maps with a known answer; one test runs
a real (random-weight) pose model through ONNX Runtime."""
import sys

import numpy as np
import pytest

from jetracer_trt.contract import ModelContract, pose_contract
from jetracer_trt.errors import JetracerError
from jetracer_trt.pose import PoseEstimator, load_topology, parse_people, topology_from_category
from jetracer_trt.pose.synthetic import draw_maps, people_in_a_row

TOPOLOGY = load_topology()


class DrawnMapsEngine:
    """An engine of the pose contract whose model 'sees' the people given: their hand-drawn maps, whatever the
    frame."""

    def __init__(self, people):
        self.contract, self.model_path, self.last_model_ms = pose_contract(TOPOLOGY), None, 0.0
        cmap, paf = draw_maps(people, TOPOLOGY)
        self.maps = {"cmap": cmap[0], "paf": paf[0]}
        self.frames = []

    def infer_tensors(self, frame):
        self.frames.append(frame.shape)
        self.last_model_ms = 12.5
        return self.maps


def test_people_come_in_the_frame_s_own_pixels():
    truth = people_in_a_row(2, TOPOLOGY, height=0.8, top=0.1)
    estimator = PoseEstimator(DrawnMapsEngine(truth))
    width, height = 640, 480
    people = estimator.people(np.zeros((height, width, 3), np.uint8))
    assert len(people) == 2 and estimator.engine.frames == [(480, 640, 3)]
    for person, drawn in zip(sorted(people, key=lambda p: p.keypoints["neck"].x), truth, strict=True):
        assert len(person.keypoints) == 18
        np.testing.assert_allclose(person.as_array(TOPOLOGY.keypoints)[:, :2], drawn * (width, height),
                                   atol=0.5 * width / 56)
    assert estimator.last_model_ms == 12.5 and 0 < estimator.last_parse_ms < 1000


def test_fragments_below_min_keypoints_are_left_out():
    truth = people_in_a_row(3, TOPOLOGY)
    keep = [TOPOLOGY.keypoints.index(name) for name in ("nose", "neck", "left_eye", "right_eye")]
    fragment = np.full_like(truth[2], np.nan)
    fragment[keep] = truth[2, keep]  # four linked keypoints: a head, no body
    truth[2] = fragment
    engine = DrawnMapsEngine(truth)
    frame = np.zeros((224, 224, 3), np.uint8)
    counts = sorted(len(p.keypoints) for p in PoseEstimator(engine).people(frame))
    assert counts == [18, 18]  # the default, 5, drops the four-keypoint head
    assert sorted(len(p.keypoints) for p in PoseEstimator(engine, min_keypoints=4).people(frame)) == [4, 18, 18]
    everything = PoseEstimator(engine, min_keypoints=0).people(frame)
    cmap, paf = draw_maps(truth, TOPOLOGY)
    assert everything == parse_people(cmap, paf, TOPOLOGY, (224, 224))[0]


def test_parse_options_reach_the_parser():
    engine = DrawnMapsEngine(people_in_a_row(2, TOPOLOGY))
    frame = np.zeros((224, 224, 3), np.uint8)
    assert len(PoseEstimator(engine).people(frame)) == 2
    assert PoseEstimator(engine, cmap_threshold=1.5).people(frame) == []  # no bump is that high


def test_a_road_model_a_bad_setting_and_a_bad_frame_are_refused():
    road = DrawnMapsEngine(people_in_a_row(1, TOPOLOGY))
    road.contract = ModelContract.default()
    with pytest.raises(JetracerError, match="needs a pose model with cmap and paf outputs"):
        PoseEstimator(road)
    engine = DrawnMapsEngine(people_in_a_row(1, TOPOLOGY))
    for bad in (-1, 2.5, True):
        with pytest.raises(JetracerError, match="min_keypoints must be a whole number"):
            PoseEstimator(engine, min_keypoints=bad)
    hands = topology_from_category({"name": "hands", "keypoints": ["a", "b"], "skeleton": [[1, 2]]}, "hands.json")
    with pytest.raises(JetracerError, match="does not fit the topology hands.json"):
        PoseEstimator(engine, topology=hands)
    with pytest.raises(JetracerError, match="RGB uint8 frame"):
        PoseEstimator(engine).people(np.zeros((224, 224), np.uint8))


def test_a_real_model_through_onnx_runtime(tmp_path):
    import torch

    from jetracer_trt.contract import POSE
    from jetracer_trt.engines import create_engine
    from jetracer_trt.export import export_onnx
    from jetracer_trt.model import save_checkpoint
    from jetracer_trt.pose.checkpoint import make_pose_checkpoint
    from jetracer_trt.pose.data import render_scene
    from jetracer_trt.pose.network import build_pose_network

    torch.manual_seed(2)
    checkpoint = tmp_path / "pose.pt"
    save_checkpoint(make_pose_checkpoint(build_pose_network(TOPOLOGY), half=True, contract=pose_contract(TOPOLOGY)),
                    checkpoint)
    model = export_onnx(checkpoint, tmp_path / "pose.onnx", num_frames=16).path
    engine = create_engine("onnxruntime", model, task=POSE)
    estimator = PoseEstimator(engine, min_keypoints=0)
    frame = render_scene(5).image
    people = estimator.people(frame)
    maps = {name: value.copy() for name, value in engine.infer_tensors(frame).items()}
    assert people == parse_people(maps["cmap"][None], maps["paf"][None], TOPOLOGY, (224, 224))[0]
    assert estimator.last_model_ms > 0 and estimator.last_parse_ms > 0


def test_the_estimator_imports_no_torch():
    import subprocess

    code = "import sys, jetracer_trt.pose.estimator; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
