"""backend auto: TensorRT when a valid engine is present, then CUDA through PyTorch, then the CPU (INT8 if made)."""
import logging

import pytest

from jetracer_trt.config import default_model_path
from jetracer_trt.engines import create_engine, select


@pytest.fixture
def models(tmp_path):
    for name in ("road_following.onnx", "road_following.pt"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def machine(monkeypatch, gpu: bool, cuda: bool, engine_problems=()):
    monkeypatch.setattr(select, "has_nvidia_gpu", lambda: gpu)
    monkeypatch.setattr(select, "cuda_available", lambda: cuda)
    monkeypatch.setattr(select, "tensorrt_engine_problems", lambda engine, source: list(engine_problems))


def test_a_valid_tensorrt_engine_wins_and_int8_before_fp16(models, monkeypatch):
    machine(monkeypatch, gpu=True, cuda=True)
    (models / "road_following.fp16.engine").write_bytes(b"plan")
    assert select.choose_backend(models / "road_following.onnx").model.name == "road_following.fp16.engine"
    (models / "road_following.int8.engine").write_bytes(b"plan")
    choice = select.choose_backend(models / "road_following.onnx")
    assert (choice.backend, choice.model.name) == ("tensorrt", "road_following.int8.engine")


def test_a_stale_engine_is_passed_over_with_the_reason_then_cuda(models, monkeypatch):
    machine(monkeypatch, gpu=True, cuda=True, engine_problems=["built for Orin, this is Xavier"])
    (models / "road_following.fp16.engine").write_bytes(b"plan")
    choice = select.choose_backend(models / "road_following.onnx")
    assert (choice.backend, choice.model.name) == ("torch", "road_following.pt")
    assert "built for Orin" in choice.explain()
    (models / "road_following.fp16.cuda.pt2").write_bytes(b"aot")  # a compiled package starts faster
    assert select.choose_backend(models / "road_following.onnx").model.name == "road_following.fp16.cuda.pt2"


def test_without_a_gpu_the_cpu_runs_int8_when_it_was_made(models, monkeypatch):
    machine(monkeypatch, gpu=False, cuda=False)
    (models / "road_following.fp16.engine").write_bytes(b"plan")  # ignored: no GPU
    choice = select.choose_backend(models / "road_following.onnx")
    assert (choice.backend, choice.model.name) == ("onnxruntime", "road_following.onnx")
    (models / "road_following.int8.onnx").write_bytes(b"q")
    choice = select.choose_backend(models / "road_following.onnx")
    assert (choice.backend, choice.model.name) == ("onnxruntime", "road_following.int8.onnx")


@pytest.mark.parametrize("name, backend", [("m.fp16.engine", "tensorrt"), ("m.fp16.cuda.pt2", "torch"),
                                           ("m.int8.trt.pth", "torch2trt")])
def test_a_converted_file_names_its_backend(tmp_path, name, backend, monkeypatch):
    machine(monkeypatch, gpu=False, cuda=False)
    assert select.choose_backend(tmp_path / name).backend == backend


def test_auto_on_this_machine_loads_an_engine_and_says_why(caplog):
    with caplog.at_level(logging.INFO, logger="jetracer_trt.engines"):
        engine = create_engine("auto", default_model_path())
    assert engine.name in ("onnxruntime", "torch", "tensorrt")
    assert any("backend auto picked" in r.getMessage() for r in caplog.records)
