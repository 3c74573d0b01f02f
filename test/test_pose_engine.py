"""Pose models through every inference engine: cmap and paf by name from preallocated buffers (ONNX Runtime, PyTorch
on the CPU and, where there is a GPU, PyTorch FP16 with CUDA graphs), the same maps on every backend; and the
conversion pipeline verifying a pose result through its own engine. The network is a random-weight one exported in a
fixture: no test here needs the trained model file."""
import tracemalloc

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from jetracer_trt import verify
from jetracer_trt.config import default_model_path
from jetracer_trt.contract import CONTRACT_KEY, POSE, pose_contract
from jetracer_trt.convert.pipeline import Build, ConvertRequest, Route
from jetracer_trt.engines import create_engine
from jetracer_trt.errors import JetracerError
from jetracer_trt.export import export_onnx
from jetracer_trt.model import save_checkpoint
from jetracer_trt.pose import load_topology
from jetracer_trt.pose.checkpoint import make_pose_checkpoint
from jetracer_trt.pose.data import render_scene
from jetracer_trt.pose.network import build_pose_network

TOPOLOGY = load_topology()
CONTRACT = pose_contract(TOPOLOGY)
SHAPES = {"cmap": (18, 56, 56), "paf": (42, 56, 56)}
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def pose_files(tmp_path_factory):
    """A random-weight pose network as our checkpoint, as trt_pose's bare state dict, and exported to ONNX."""
    folder = tmp_path_factory.mktemp("pose_engine")
    torch.manual_seed(1)
    network = build_pose_network(TOPOLOGY).eval()
    checkpoint = folder / "pose.pt"
    save_checkpoint(make_pose_checkpoint(network, half=True, contract=CONTRACT), checkpoint)
    trt_pose = folder / "resnet18_baseline_att_224x224_A.pth"
    network.load_state_dict({k: v.float() for k, v in torch.load(checkpoint)["state_dict"].items()})
    torch.save(network.state_dict(), trt_pose)  # the same (FP16-exact) weights, as trt_pose's training saves them
    onnx_path = export_onnx(checkpoint, folder / "pose.onnx", num_frames=16).path
    return {"checkpoint": checkpoint, "trt_pose": trt_pose, "onnx": onnx_path}


@pytest.fixture(scope="module")
def frames():
    return np.stack([render_scene(seed).image for seed in range(3_000_000, 3_000_006)])


@pytest.fixture(scope="module")
def reference(pose_files, frames):
    """ONNX Runtime FP32 on the exported model: what every other backend is held to."""
    return verify.reference_outputs(pose_files["onnx"], frames)


@pytest.mark.parametrize("backend, file", [("onnxruntime", "onnx"), ("torch", "checkpoint"), ("torch", "trt_pose")])
def test_every_cpu_backend_gives_the_maps_by_name(pose_files, frames, reference, backend, file):
    with create_engine(backend, pose_files[file], task=POSE, max_batch=4, device="cpu",
                       providers=["CPUExecutionProvider"]) as engine:
        assert engine.contract == CONTRACT
        single = engine.infer_tensors(frames[0])
        assert {name: value.shape for name, value in single.items()} == SHAPES
        assert all(value.dtype == np.float32 for value in single.values()) and engine.last_model_ms > 0
        singles = {name: value.copy() for name, value in single.items()}
        batch = engine.infer_batch_tensors(frames[:4])
        assert {name: value.shape for name, value in batch.items()} == {k: (4, *v) for k, v in SHAPES.items()}
        for name in SHAPES:
            np.testing.assert_allclose(batch[name][0], singles[name], atol=1e-5)
        engine.infer_batch_tensors(frames[2:5])
        rerun = {name: value.copy() for name, value in engine.run_model(3).items()}  # model only, on the frames
        outputs = verify.engine_outputs(engine, frames)  # staged last
    for name in SHAPES:
        np.testing.assert_allclose(rerun[name], reference[name][2:5], atol=1e-4)
    comparison = verify.compare(reference, outputs, "fp32", tolerances=verify.POSE_TOLERANCES)
    assert comparison.ok, comparison.report()


def test_results_are_views_of_reused_buffers_and_calls_allocate_nothing(pose_files, frames):
    engine = create_engine("onnxruntime", pose_files["onnx"], task=POSE, max_batch=2)
    engine.warmup(iterations=1)
    first = engine.infer_tensors(frames[0])
    second = engine.infer_tensors(frames[1])
    assert first is second and np.shares_memory(first["cmap"], engine.infer_batch_tensors(frames[:2])["cmap"])
    for _ in range(2):  # the first calls at each size make their IO binding
        engine.infer_tensors(frames[0]), engine.infer_batch_tensors(frames[:2])
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(5):
        engine.infer_tensors(frames[0])
        engine.infer_batch_tensors(frames[:2])
        engine.run_model(2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak - base < 50_000  # a frame's maps are 750 kB: any per-call output buffer would show


def test_the_column_calls_refuse_a_pose_model_and_the_tensor_calls_take_a_road_one(pose_files, frames):
    engine = create_engine("onnxruntime", pose_files["onnx"], task=POSE)
    with pytest.raises(JetracerError, match=r"2 output tensors \(cmap, paf\): use infer_tensors"):
        engine.infer(frames[0])
    with pytest.raises(JetracerError, match=r"use infer_batch_tensors"):
        engine.infer_batch(frames[:1])
    with pytest.raises(JetracerError, match="batches of 1 to 1"):
        engine.infer_batch_tensors(frames[:2])
    road = create_engine("onnxruntime", default_model_path())
    target = road.infer(frames[0]).copy()
    assert list(road.infer_tensors(frames[0])) == ["target"]
    np.testing.assert_array_equal(road.infer_tensors(frames[0])["target"], target)


def test_a_model_whose_outputs_are_not_the_contract_s_is_refused(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["cmap"]), helper.make_node("Identity", ["image"], ["heat"])],
        "wrong", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3, 224, 224]) for name in ("cmap", "heat")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key=CONTRACT_KEY, value=CONTRACT.to_json())
    onnx.save(model, tmp_path / "wrong.onnx")
    with pytest.raises(JetracerError, match=r"expected 2 outputs: cmap \[N, 18, 56, 56\], paf \[N, 42, 56, 56\]"):
        create_engine("onnxruntime", tmp_path / "wrong.onnx")


class CheckpointCopy(Route):
    """A route whose result is the checkpoint itself, run by the torch engine: the pipeline's own steps alone."""

    command, backend, what = "--test", "torch", "the copied checkpoint"
    precisions, sources, source_kind = ("fp32",), (".pt",), "a checkpoint"

    def build(self, request, contract, frames, out, work):
        out.write_bytes(request.source.read_bytes())
        return Build()

    def load_options(self, request):
        return {"device": "cpu"}


def test_the_pipeline_verifies_a_pose_result_through_its_own_engine(pose_files, tmp_path):
    out = tmp_path / "copy.pt"
    result = CheckpointCopy().convert(ConvertRequest(source=pose_files["checkpoint"], precision="fp32", out=out,
                                                     verify_frames=16, max_batch=4))
    assert result.comparison.ok and set(result.comparison.max_abs) == {"cmap", "paf"}
    assert result.comparison.max_abs["cmap"] == 0 and out.is_file()  # the same engine on the same file


@cuda_only
def test_cuda_fp16_with_graphs_agrees_with_onnxruntime_and_allocates_nothing(pose_files, frames, reference):
    with create_engine("torch", pose_files["checkpoint"], task=POSE, max_batch=2, device="cuda",
                       precision="fp16") as engine:
        engine.warmup()
        for _ in range(3):  # eager runs of each size, then its graph is captured and replayed
            engine.infer_tensors(frames[0]), engine.infer_batch_tensors(frames[:2])
        assert sorted(engine._graphs) == [1, 2]
        comparison = verify.compare(reference, verify.engine_outputs(engine, frames), "fp16",
                                    tolerances=verify.POSE_TOLERANCES)
        assert comparison.ok, comparison.report()
        from test_torch_engine import check_calls_allocate_no_cuda_memory

        check_calls_allocate_no_cuda_memory(engine.infer_tensors, frames, calls=20)
