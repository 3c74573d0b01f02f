"""Pose models out of PyTorch: our checkpoints and trt_pose's weights export to ONNX with two outputs, cmap and paf,
carrying the pose contract and its topology; they convert to INT8 for ONNX Runtime on the CPU; every conversion is
judged per output with the pose tolerances, through the engine of its route (ONNX Runtime, an AOTInductor package)."""
import json

import numpy as np
import pytest
import torch

from jetracer_trt import verify
from jetracer_trt.contract import POSE, ModelContract, pose_contract, read_contract
from jetracer_trt.convert import ConvertRequest, convert
from jetracer_trt.errors import JetracerError
from jetracer_trt.export import export_onnx
from jetracer_trt.model import build_model, make_checkpoint, save_checkpoint
from jetracer_trt.pose import load_topology, topology_from_category
from jetracer_trt.pose.checkpoint import make_pose_checkpoint
from jetracer_trt.pose.data import render_scene
from jetracer_trt.pose.network import build_pose_network

TOPOLOGY = load_topology()
FRAMES = 16


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return build_pose_network(TOPOLOGY).eval()


@pytest.fixture(scope="module")
def checkpoint(network, tmp_path_factory):
    path = tmp_path_factory.mktemp("pose") / "best.pt"
    save_checkpoint(make_pose_checkpoint(network, half=True, contract=pose_contract(TOPOLOGY), kind="best", epoch=3),
                    path)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint):
    return export_onnx(checkpoint, checkpoint.with_name("pose.onnx"), num_frames=FRAMES)


def test_a_pose_checkpoint_exports_to_onnx_with_cmap_and_paf_outputs(exported, checkpoint):
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(exported.path))
    assert [o.name for o in proto.graph.output] == ["cmap", "paf"]
    dims = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output]
    assert dims == [["batch", 18, 56, 56], ["batch", 42, 56, 56]]
    contract = read_contract(exported.path)
    assert contract == read_contract(checkpoint) and contract.task == POSE
    assert contract.pose_topology().skeleton == TOPOLOGY.skeleton
    assert set(exported.comparison.max_abs) == {"cmap", "paf"} and exported.comparison.ok
    assert exported.comparison.rule.endswith(f"{verify.POSE_TOLERANCES['fp32'].mean_abs:g}")
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    cmap, paf = session.run(None, {"image": np.zeros((3, 3, 224, 224), np.float32)})
    assert cmap.shape == (3, 18, 56, 56) and paf.shape == (3, 42, 56, 56)


def test_trt_pose_weights_export_with_the_topology_given(network, tmp_path):
    weights = tmp_path / "resnet18_baseline_att_224x224_A_epoch_249.pth"
    torch.save(network.state_dict(), weights)  # what trt_pose's training script writes
    result = export_onnx(weights, tmp_path / "trt_pose.onnx", num_frames=FRAMES)  # found to be a pose model
    assert read_contract(result.path) == pose_contract(TOPOLOGY)
    assert read_contract(weights) == pose_contract(TOPOLOGY)
    hands = topology_from_category({"name": "hands", "keypoints": ["a", "b"], "skeleton": [[1, 2]]}, "hands.json")
    with pytest.raises(JetracerError, match="does not fit the topology hands.json"):
        export_onnx(weights, tmp_path / "hands.onnx", num_frames=FRAMES, topology=hands)
    assert not (tmp_path / "hands.onnx").exists()


def test_a_road_checkpoint_is_not_a_pose_one(tmp_path):
    road = tmp_path / "road.pt"
    save_checkpoint(make_checkpoint(build_model(), half=True, contract=ModelContract.default()), road)
    with pytest.raises(JetracerError, match="not a trt_pose checkpoint"):
        export_onnx(road, tmp_path / "road.onnx", task=POSE)
    with pytest.raises(JetracerError, match="--topology is for pose checkpoints"):
        export_onnx(road, tmp_path / "road.onnx", topology=TOPOLOGY)


def test_int8_for_onnx_runtime_on_the_cpu_is_verified_per_output(exported):
    out = exported.path.with_name("pose.int8.onnx")
    result = convert("onnxruntime", ConvertRequest(source=exported.path, precision="int8", out=out,
                                                   calib_frames=16, verify_frames=16))
    assert result.comparison.ok and set(result.comparison.mean_abs) == {"cmap", "paf"}
    bounds = verify.POSE_TOLERANCES["int8"]
    assert result.comparison.rule == f"every output: max |diff| <= {bounds.max_abs:g}, mean <= {bounds.mean_abs:g}"
    assert verify.onnx_precision(out) == "int8" and read_contract(out) == read_contract(exported.path)
    frames = np.stack([render_scene(seed).image for seed in range(4)])
    outputs = verify.tensor_model_outputs(out, frames)
    assert outputs["cmap"].shape == (4, 18, 56, 56) and outputs["paf"].shape == (4, 42, 56, 56)


def test_the_torch_route_packages_a_pose_checkpoint_verified_per_output(checkpoint, tmp_path):
    from jetracer_trt.engines import create_engine

    out = tmp_path / "pose.fp32.cpu.pt2"
    result = convert("torch", ConvertRequest(source=checkpoint, precision="fp32", out=out, verify_frames=16))
    assert result.comparison.ok and set(result.comparison.max_abs) == {"cmap", "paf"} and out.is_file()
    with create_engine("torch", out, task=POSE, device="cpu") as engine:
        maps = engine.infer_tensors(render_scene(0).image)
        assert maps["cmap"].shape == (18, 56, 56) and maps["paf"].shape == (42, 56, 56)


def test_pose_outputs_are_compared_element_by_element_per_output():
    rng = np.random.default_rng(0)
    reference = {"cmap": rng.random((8, 18, 56, 56)), "paf": rng.random((8, 42, 56, 56))}
    close = {name: value + 1e-4 for name, value in reference.items()}
    assert verify.compare(reference, close, "fp16", tolerances=verify.POSE_TOLERANCES).ok
    off = {name: value.copy() for name, value in close.items()}
    off["paf"][5, 7, 20, 30] += 0.5  # one element of one frame
    comparison = verify.compare(reference, off, "fp16", tolerances=verify.POSE_TOLERANCES)
    assert not comparison.ok and comparison.worst_frame["paf"] == 5
    assert comparison.failures == [f"paf max 5.00e-01 > {verify.POSE_TOLERANCES['fp16'].max_abs:g} (frame 5)"]
    with pytest.raises(JetracerError, match="cannot be compared"):
        verify.compare(reference, {"cmap": reference["cmap"]}, "fp32", tolerances=verify.POSE_TOLERANCES)
    assert verify.tolerances_for(POSE) is verify.POSE_TOLERANCES
    assert verify.tolerances_for("road_following") is verify.TOLERANCES


def test_the_pose_contract_carries_its_maps_and_topology_and_road_contracts_read_as_before():
    contract = pose_contract(TOPOLOGY)
    data = json.loads(contract.to_json())
    assert data["outputs"] == ["cmap", "paf"] and "output_name" not in data
    assert data["output_shapes"] == {"cmap": [18, 56, 56], "paf": [42, 56, 56]}
    assert data["topology"]["skeleton"][0] == [16, 14]  # trt_pose's 1-based pairs, as in human_pose.json
    assert ModelContract.from_dict(data, "m.onnx") == contract and contract.output_tensors == ("cmap", "paf")
    road = ModelContract.default()
    assert set(road.as_dict()) == {"task", "input_width", "input_height", "color_order", "mean", "std", "resize",
                                   "input_name", "output_name", "outputs", "output_meaning"}
    assert road.output_tensors == ("target",) and not road.tensor_outputs
    bad = {**data, "output_shapes": {"cmap": [17, 56, 56], "paf": [42, 56, 56]}}
    with pytest.raises(JetracerError, match="cmap has 17 channels, the topology has 18 keypoints"):
        ModelContract.from_dict(bad, "m.onnx")


def test_the_export_command_takes_task_and_topology(checkpoint, tmp_path, capsys):
    from jetracer_trt.cli.main import main

    out = tmp_path / "cli.onnx"
    assert main(["export", "--task", "pose", "--checkpoint", str(checkpoint), "--out", str(out),
                 "--topology", str(TOPOLOGY.source)]) == 0
    printed = capsys.readouterr().out
    assert "cmap max" in printed and "paf max" in printed and out.is_file()
    assert main(["export", "--task", "road_following", "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path / "x.onnx"), "--topology", str(TOPOLOGY.source)]) == 2
    assert "--topology is for pose checkpoints" in capsys.readouterr().err
