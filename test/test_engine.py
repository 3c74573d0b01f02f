import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from jetracer_trt.config import default_model_path
from jetracer_trt.contract import CONTRACT_KEY, ModelContract
from jetracer_trt.engines import create_engine
from jetracer_trt.errors import JetracerError
from jetracer_trt.preprocess import Preprocessor

DEFAULT = ModelContract.default()


def tiny_model(path, hw=None, outputs=2, contract=None):
    """image [N,3,H,W] -> mean over pixels -> first `outputs` channels (a model with a chosen I/O shape); its file
    carries ``contract`` when given (its input size then sets H, W), else no contract (H, W default 224)."""
    hw = hw or ((contract.input_height, contract.input_width) if contract else (224, 224))
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["target"])]
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v])
             for n, v in (("starts", 0), ("ends", outputs), ("axes", 1))]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, *hw])],
        [helper.make_tensor_value_info("target", TensorProto.FLOAT, ["N", outputs])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if contract is not None:
        model.metadata_props.add(key=CONTRACT_KEY, value=contract.to_json())
    onnx.save(model, path)
    return path


def test_preprocessor_matches_the_formula_and_reuses_its_buffer():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    pre = Preprocessor(DEFAULT)
    out = pre(frame)
    expected = ((frame / 255.0 - np.array(DEFAULT.mean)) / np.array(DEFAULT.std)).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert np.shares_memory(pre(frame), pre.output) and np.shares_memory(out, pre.output)  # no per-frame allocation
    small = pre(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))  # other sizes are resized
    assert small.shape == (1, 3, 224, 224)


@pytest.mark.parametrize("bad", [np.zeros((224, 224), np.uint8), np.zeros((224, 224, 3), np.float32),
                                 np.zeros((0, 224, 3), np.uint8), "not an image"])
def test_preprocessor_rejects_malformed_frames(bad):
    with pytest.raises(JetracerError):
        Preprocessor(DEFAULT)(bad)


def test_onnxruntime_engine_runs_the_shipped_model():
    engine = create_engine("onnxruntime", default_model_path())
    engine.warmup()
    out = engine.infer(np.full((224, 224, 3), 128, np.uint8))
    assert out.shape == (2,) and np.all(np.abs(out) <= 1.5)
    assert engine.last_model_ms > 0


def test_engine_output_is_the_model_applied_to_the_shared_preprocessing(tmp_path):
    engine = create_engine("onnxruntime", tiny_model(tmp_path / "tiny.onnx", contract=DEFAULT))
    frame = np.random.default_rng(1).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    expected = Preprocessor(DEFAULT)(frame)[0].mean(axis=(1, 2))[:2]
    np.testing.assert_allclose(engine.infer(frame), expected, atol=1e-5)


def test_the_engine_runs_the_model_by_the_contract_its_file_carries(tmp_path):
    contract = DEFAULT.replace(input_width=160, input_height=120, mean=[0.3, 0.4, 0.5], std=[0.1, 0.2, 0.3])
    engine = create_engine("onnxruntime", tiny_model(tmp_path / "small.onnx", contract=contract))
    assert engine.contract == contract and (engine.height, engine.width) == (120, 160)
    frame = np.random.default_rng(4).integers(0, 256, (224, 224, 3), dtype=np.uint8)  # a simulator-sized frame
    out = engine.infer(frame)
    staged = engine.staged_input(1)
    np.testing.assert_array_equal(staged, Preprocessor(contract)(frame))  # resized and normalized by the contract
    np.testing.assert_allclose(out, staged[0].mean(axis=(1, 2))[:2], atol=1e-5)


def test_a_model_without_a_contract_runs_with_the_default_and_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="jetracer_trt"):
        engine = create_engine("onnxruntime", tiny_model(tmp_path / "foreign.onnx"))
    assert engine.contract == DEFAULT and "foreign.onnx carries no model contract" in caplog.text


def test_a_model_of_another_task_is_refused_when_a_task_is_asked_for(tmp_path):
    pose = DEFAULT.replace(task="pose", output_meaning="a keypoint")
    path = tiny_model(tmp_path / "pose.onnx", contract=pose)
    assert create_engine("onnxruntime", path).contract.task == "pose"  # tools that take any task still load it
    with pytest.raises(JetracerError, match="pose.onnx is a pose model, and a road_following model is needed"):
        create_engine("auto", path, task="road_following")


def test_wrong_input_or_output_shape_is_a_clear_error(tmp_path):
    with pytest.raises(JetracerError, match=r"expected one input of shape \[N, 3, 224, 224\]"):
        create_engine("onnxruntime", tiny_model(tmp_path / "in.onnx", hw=(64, 64), contract=DEFAULT))
    with pytest.raises(JetracerError, match=r"expected one output of shape \[N, 2\]"):
        create_engine("onnxruntime", tiny_model(tmp_path / "out.onnx", outputs=3))


def test_missing_corrupt_model_and_unknown_backend(tmp_path):
    with pytest.raises(JetracerError, match="not found"):
        create_engine("onnxruntime", tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(JetracerError, match="cannot load ONNX model"):
        create_engine("onnxruntime", tmp_path / "bad.onnx")
    with pytest.raises(JetracerError, match="unknown inference backend"):
        create_engine("tensorflow", tmp_path / "bad.onnx")


def test_per_frame_path_allocates_nothing_after_warmup():
    import tracemalloc

    engine = create_engine("onnxruntime", default_model_path(), max_batch=2)
    engine.warmup(iterations=1)
    frames = np.random.default_rng(2).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    for _ in range(3):  # first calls at each size make their IO binding
        engine.infer(frames[0]), engine.infer_batch(frames)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(20):
        engine.infer(frames[0])
        engine.infer_batch(frames)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak - base < 50_000  # a frame is 150 kB and its tensor 600 kB: any per-call buffer would show


def test_batches_agree_with_single_frames_and_run_model_reuses_the_staged_input(tmp_path):
    engine = create_engine("onnxruntime", default_model_path(), max_batch=4)
    frames = np.random.default_rng(3).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    batch = engine.infer_batch(frames).copy()
    singles = np.stack([engine.infer(f).copy() for f in frames])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    engine.infer_batch(frames[:3])
    np.testing.assert_allclose(engine.run_model(3), batch[:3], atol=1e-5)
    with pytest.raises(JetracerError, match="batches of 1 to 4"):
        engine.infer_batch(np.zeros((5, 224, 224, 3), np.uint8))


def test_onnx_runtime_runs_an_exported_model_where_onnx_is_not_installed(monkeypatch):
    # a ROS 2 install gets onnxruntime but not onnx (a training dependency); the shipped model has no precision entry
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    engine = create_engine("onnxruntime", default_model_path())
    assert engine.precision == "fp32"
    assert np.isfinite(engine.infer(np.zeros((224, 224, 3), np.uint8))).all()
