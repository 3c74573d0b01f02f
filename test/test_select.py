"""backend auto: TensorRT when a valid engine is present, then CUDA through PyTorch, then the CPU (INT8 if made);
and a file beside the model is used only when the SHA-256 it records says it was made from that model."""
import json
import logging
import shutil
import zipfile

import numpy as np
import pytest

from jetracer_trt.config import default_model_path
from jetracer_trt.engines import artifacts, create_engine, select
from jetracer_trt.engines.sidecar import source_hash

onnx = pytest.importorskip("onnx")

SHIPPED = default_model_path()
SHIPPED_INT8 = SHIPPED.with_name("road_following.int8.onnx")


def onnx_file(path, **props):
    """A minimal valid ONNX file whose ``metadata_props`` are ``props`` (all backend auto reads of it)."""
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    proto = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [value], [out]))
    for key, val in props.items():
        proto.metadata_props.add(key=key, value=val)
    onnx.save_model(proto, str(path))
    return path


def package_file(path, **metadata):
    """A zip laid out as an AOTInductor package, holding only its metadata JSON."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{path.stem}/data/aotinductor/model/abc.wrapper_metadata.json", json.dumps(metadata))
        archive.writestr(f"{path.stem}/archive_format", "pt2")
    return path


@pytest.fixture
def models(tmp_path):
    """A checkpoint and the ONNX model exported from it (recording its SHA-256)."""
    checkpoint = tmp_path / "road_following.pt"
    checkpoint.write_bytes(b"checkpoint v1")
    onnx_file(tmp_path / "road_following.onnx", checkpoint_sha256=source_hash(checkpoint))
    return tmp_path


def int8_of(models, source_sha256=None):
    """An INT8 ONNX beside ``models`` recording ``source_sha256`` (default: the model's own)."""
    model = models / "road_following.onnx"
    props = {"precision": "int8", "source_sha256": source_sha256 or source_hash(model)}
    return onnx_file(models / "road_following.int8.onnx", **props)


def machine(monkeypatch, gpu: bool, cuda: bool, engine_problems=()):
    asked = []
    monkeypatch.setattr(select, "has_nvidia_gpu", lambda: gpu)
    monkeypatch.setattr(select, "cuda_available", lambda: cuda)
    monkeypatch.setattr(select, "tensorrt_engine_problems",
                        lambda engine, source: asked.append(source) or list(engine_problems))
    return asked


def test_a_valid_tensorrt_engine_wins_and_int8_before_fp16(models, monkeypatch):
    asked = machine(monkeypatch, gpu=True, cuda=True)
    (models / "road_following.fp16.engine").write_bytes(b"plan")
    assert select.choose_backend(models / "road_following.onnx").model.name == "road_following.fp16.engine"
    (models / "road_following.int8.engine").write_bytes(b"plan")
    choice = select.choose_backend(models / "road_following.onnx")
    assert (choice.backend, choice.model.name) == ("tensorrt", "road_following.int8.engine")
    assert set(asked) == {models / "road_following.onnx"}  # always checked against the model


def test_an_engine_is_checked_against_the_model_even_when_the_model_is_missing(tmp_path, monkeypatch):
    asked = machine(monkeypatch, gpu=True, cuda=False, engine_problems=["the source model is not there"])
    (tmp_path / "road_following.fp16.engine").write_bytes(b"plan")
    choice = select.choose_backend(tmp_path / "road_following.onnx")
    assert asked == [tmp_path / "road_following.onnx"]  # not None, which would skip the check
    assert choice.model.name == "road_following.onnx" and "is not there" in choice.explain()


def test_a_stale_engine_is_passed_over_with_the_reason_then_cuda(models, monkeypatch):
    machine(monkeypatch, gpu=True, cuda=True, engine_problems=["built for Orin, this is Xavier"])
    (models / "road_following.fp16.engine").write_bytes(b"plan")
    choice = select.choose_backend(models / "road_following.onnx")
    assert (choice.backend, choice.model.name) == ("torch", "road_following.pt")
    assert "built for Orin" in choice.explain()
    package_file(models / "road_following.fp16.cuda.pt2",
                 jetracer_source_sha256=source_hash(models / "road_following.pt"))
    assert select.choose_backend(models / "road_following.onnx").model.name == "road_following.fp16.cuda.pt2"


def test_without_a_gpu_the_cpu_runs_int8_when_it_was_made_from_the_model(models, monkeypatch):
    machine(monkeypatch, gpu=False, cuda=False)
    (models / "road_following.fp16.engine").write_bytes(b"plan")  # ignored: no GPU
    choice = select.choose_backend(models / "road_following.onnx")
    assert (choice.backend, choice.model.name) == ("onnxruntime", "road_following.onnx")
    int8_of(models)
    choice = select.choose_backend(models / "road_following.onnx")
    assert (choice.backend, choice.model.name) == ("onnxruntime", "road_following.int8.onnx")
    assert choice.passed_over == []


def test_an_int8_model_made_from_another_model_is_passed_over_with_the_reason(models, monkeypatch, caplog):
    machine(monkeypatch, gpu=False, cuda=False)
    int8_of(models, source_sha256="0" * 64)
    with caplog.at_level(logging.WARNING, logger="jetracer_trt.engines"):
        choice = select.choose_backend(models / "road_following.onnx")
    assert (choice.backend, choice.model.name) == ("onnxruntime", "road_following.onnx")
    (reason,) = choice.passed_over
    assert "road_following.int8.onnx was made from another model than road_following.onnx" in reason
    assert "jetracer-trt convert --backend onnxruntime --precision int8" in reason and reason.endswith("--force")
    assert reason in choice.explain() and any(reason in r.getMessage() for r in caplog.records)


def test_an_int8_model_that_records_no_source_is_passed_over(models, monkeypatch):
    machine(monkeypatch, gpu=False, cuda=False)
    onnx_file(models / "road_following.int8.onnx", precision="int8")  # made before the record existed
    choice = select.choose_backend(models / "road_following.onnx")
    assert choice.model.name == "road_following.onnx"
    assert "records no source_sha256" in choice.explain() and choice.explain().endswith("--force")
    (models / "road_following.int8.onnx").write_bytes(b"\xff\xff not an onnx file")
    choice = select.choose_backend(models / "road_following.onnx")
    assert choice.model.name == "road_following.onnx" and "damaged" in choice.explain()


def test_the_checkpoint_runs_on_cuda_only_when_it_is_the_one_the_model_was_exported_from(models, monkeypatch):
    machine(monkeypatch, gpu=True, cuda=True)
    model = models / "road_following.onnx"
    int8_of(models)
    assert select.choose_backend(model).model.name == "road_following.pt"
    (models / "road_following.pt").write_bytes(b"checkpoint v2, retrained")
    choice = select.choose_backend(model)
    assert choice.model.name == "road_following.int8.onnx"  # the next candidate that does match
    assert "road_following.pt is not the checkpoint road_following.onnx was exported from" in choice.explain()
    assert f"jetracer-trt export --checkpoint {models / 'road_following.pt'} --out {model}" in choice.explain()
    onnx_file(model)  # an ONNX exported before it recorded its checkpoint
    choice = select.choose_backend(model)
    assert (choice.backend, choice.model.name) == ("onnxruntime", "road_following.onnx")
    assert "records no checkpoint_sha256" in choice.explain()


def test_a_package_compiled_from_another_checkpoint_is_passed_over(models, monkeypatch):
    machine(monkeypatch, gpu=True, cuda=True)
    package = package_file(models / "road_following.fp16.cuda.pt2", jetracer_source_sha256="1" * 64)
    choice = select.choose_backend(models / "road_following.onnx")
    assert (choice.backend, choice.model.name) == ("torch", "road_following.pt")
    (reason,) = choice.passed_over
    assert "was compiled from another checkpoint than the one road_following.onnx was exported from" in reason
    assert f"convert --backend torch --precision fp16 --model {models / 'road_following.pt'}" in reason
    package_file(package, jetracer_precision="fp16")  # no record
    assert "records no jetracer_source_sha256" in select.choose_backend(models / "road_following.onnx").explain()


@pytest.mark.parametrize("name, backend", [("m.fp16.engine", "tensorrt"), ("m.fp16.cuda.pt2", "torch"),
                                           ("m.int8.trt.pth", "torch2trt"), ("m.pt", "torch")])
def test_a_converted_file_names_its_backend(tmp_path, name, backend, monkeypatch):
    machine(monkeypatch, gpu=False, cuda=False)
    assert select.choose_backend(tmp_path / name).backend == backend


def test_the_metadata_reader_agrees_with_onnx(tmp_path):
    for path in (SHIPPED, SHIPPED_INT8):
        expected = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        assert artifacts.onnx_metadata(path) == expected
    truncated = tmp_path / "t.onnx"
    truncated.write_bytes(SHIPPED_INT8.read_bytes()[:1000])
    with pytest.raises(ValueError):
        artifacts.onnx_metadata(truncated)


# ---------------------------------------------------------------------------------------------------------------------
# The shipped models, and a real model whose head changed


def test_the_shipped_models_record_what_they_were_made_from(monkeypatch):
    meta = artifacts.onnx_metadata(SHIPPED)
    assert meta["checkpoint_sha256"] == source_hash(SHIPPED.with_name("road_following.pt"))
    assert artifacts.onnx_metadata(SHIPPED_INT8)["source_sha256"] == source_hash(SHIPPED)
    machine(monkeypatch, gpu=False, cuda=False)
    choice = select.choose_backend(SHIPPED)
    assert (choice.model, choice.passed_over) == (SHIPPED_INT8, [])
    machine(monkeypatch, gpu=True, cuda=True)
    choice = select.choose_backend(SHIPPED)
    assert (choice.model.name, choice.passed_over) == ("road_following.pt", [])


def mirrored_model(path):
    """The shipped FP32 model with its head changed so that every steering decision is mirrored (x negated)."""
    from onnx import numpy_helper

    proto = onnx.load(str(SHIPPED))
    for init in proto.graph.initializer:
        if init.name in ("fc.weight__fp16", "fc.bias__fp16"):
            values = numpy_helper.to_array(init).copy()
            values[0] = -values[0]
            init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save_model(proto, str(path))
    return path


def test_auto_drives_with_a_changed_model_not_the_old_int8_left_beside_it(tmp_path, monkeypatch):
    from jetracer_trt import verify

    machine(monkeypatch, gpu=False, cuda=False)
    model = mirrored_model(tmp_path / "road_following.onnx")
    shutil.copyfile(SHIPPED_INT8, tmp_path / "road_following.int8.onnx")  # made from the shipped model
    choice = select.choose_backend(model)
    assert (choice.backend, choice.model) == ("onnxruntime", model)
    assert "road_following.int8.onnx was made from another model" in choice.explain()

    frames = verify.verification_frames(None, 16)
    with create_engine("onnxruntime", SHIPPED_INT8, max_batch=8, providers=["CPUExecutionProvider"]) as old:
        before = verify.engine_outputs(old, frames)
    with create_engine("auto", model, max_batch=8) as engine:
        assert engine.model_path == model and "not used: road_following.int8.onnx" in engine.selection
        after = verify.engine_outputs(engine, frames)
    turning = np.abs(before[:, 0]) > 0.05
    assert turning.any()
    assert np.all(np.sign(after[turning, 0]) == -np.sign(before[turning, 0]))  # it steers the new way


def test_auto_takes_the_int8_model_beside_a_copy_of_its_source(tmp_path, monkeypatch):
    machine(monkeypatch, gpu=False, cuda=False)
    model = tmp_path / "road_following.onnx"
    shutil.copyfile(SHIPPED, model)
    shutil.copyfile(SHIPPED_INT8, tmp_path / "road_following.int8.onnx")
    choice = select.choose_backend(model)
    assert (choice.model.name, choice.passed_over) == ("road_following.int8.onnx", [])


def test_auto_on_this_machine_loads_an_engine_and_says_why(caplog):
    with caplog.at_level(logging.INFO, logger="jetracer_trt.engines"):
        engine = create_engine("auto", default_model_path())
    assert engine.name in ("onnxruntime", "torch", "tensorrt")
    assert any("backend auto picked" in r.getMessage() for r in caplog.records)
    if not select.has_nvidia_gpu():
        assert engine.model_path == SHIPPED_INT8 and "not used" not in engine.selection
