"""The small pose network, pose_small_resnet18_l2: its export gives the pose contract's outputs and names the
architecture, and the shipped models/pose_small.onnx follows the simulated walker in a closed loop."""
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from jetracer_trt.contract import POSE, pose_contract, read_contract
from jetracer_trt.pose import load_topology

TOPOLOGY = load_topology()
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "pose_small.onnx"


def test_the_small_checkpoint_exports_to_the_pose_contract_s_outputs(tmp_path):
    import onnxruntime

    from jetracer_trt.export import export_onnx
    from jetracer_trt.model import save_checkpoint
    from jetracer_trt.pose.checkpoint import make_pose_checkpoint
    from jetracer_trt.pose.network import SMALL_VARIANT, build_network

    torch.manual_seed(0)
    model = build_network(SMALL_VARIANT, TOPOLOGY).eval()
    save_checkpoint(make_pose_checkpoint(model, half=True, contract=pose_contract(TOPOLOGY), kind="best"),
                    tmp_path / "best.pt")
    export_onnx(tmp_path / "best.pt", tmp_path / "small.onnx", num_frames=16)
    proto = onnx.load(str(tmp_path / "small.onnx"))
    assert {p.key: p.value for p in proto.metadata_props}["architecture"] == SMALL_VARIANT
    assert read_contract(tmp_path / "small.onnx").task == POSE
    session = onnxruntime.InferenceSession(str(tmp_path / "small.onnx"), providers=["CPUExecutionProvider"])
    cmap, paf = session.run(["cmap", "paf"], {"image": np.zeros((2, 3, 224, 224), np.float32)})
    assert cmap.shape == (2, 18, 56, 56) and paf.shape == (2, 42, 56, 56)
    assert (tmp_path / "small.onnx").stat().st_size < 6e6


@pytest.mark.skipif(not SHIPPED.is_file(), reason="models/pose_small.onnx is not in this checkout")
def test_the_shipped_small_model_follows_the_walker_in_a_closed_loop():
    from jetracer_trt.engines import create_engine
    from jetracer_trt.follow import FollowMe
    from jetracer_trt.pose.estimator import PoseEstimator
    from jetracer_trt.safety import SafetyGovernor
    from jetracer_trt.sim import SimWorld, follow
    from jetracer_trt.sim.walker import WalkerSettings

    contract = read_contract(SHIPPED)
    assert contract.task == POSE and dict(contract.output_shapes) == {"cmap": (18, 56, 56), "paf": (42, 56, 56)}
    engine = create_engine("onnxruntime", str(SHIPPED), task=POSE)
    world = SimWorld(1001, walker=WalkerSettings.from_config(seed=1))
    m = follow(world, PoseEstimator(engine).people, FollowMe(), SafetyGovernor.from_config("sim"), 4.0)
    assert m["following_s"] > 3.5 and m["lost_events"] == 0 and m["collisions"] == 0
    assert m["distance_driven_m"] > 1.0  # it drove after the person, not stood still
