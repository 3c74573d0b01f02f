"""The engine sidecar: written atomically, read back or refused clearly, and every mismatch named."""
import hashlib
import json
import os
import sys

import pytest

from jetracer_trt import __version__
from jetracer_trt.engines import sidecar as sidecars
from jetracer_trt.errors import JetracerError

HERE = {"trt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7"}


@pytest.fixture
def built(tmp_path):
    """(engine path, source path, sidecar dict) of an engine built on HERE from a source model."""
    source = tmp_path / "road.onnx"
    source.write_bytes(b"onnx model v1")
    engine = tmp_path / "road.fp16.engine"
    engine.write_bytes(b"plan bytes")
    fields = {"backend": "tensorrt", **HERE, "precision": "fp16", "max_batch": 8,
              "source": str(source), "source_sha256": sidecars.source_hash(source),
              "artifact_sha256": sidecars.source_hash(engine), "builder": {"workspace_mb": 1024}}
    sidecars.write_sidecar(engine, fields)
    return engine, source, sidecars.read_sidecar(engine)


def test_write_then_read_round_trips_and_adds_the_bookkeeping(built, tmp_path):
    engine, source, data = built
    assert sidecars.sidecar_path(engine) == tmp_path / "road.fp16.engine.json"
    assert data["format"] == sidecars.FORMAT and data["format_version"] == sidecars.FORMAT_VERSION
    assert data["jetracer_trt_version"] == __version__ and data["created"].endswith("+00:00")
    assert data["precision"] == "fp16" and data["builder"] == {"workspace_mb": 1024} and data["max_batch"] == 8
    assert sidecars.check_sidecar(data, **HERE, source_path=source, artifact_path=engine) == []


def test_paths_are_written_as_strings(tmp_path):
    engine = tmp_path / "e.engine"
    sidecars.write_sidecar(engine, {"source": tmp_path / "m.onnx"})
    assert sidecars.read_sidecar(engine)["source"] == str(tmp_path / "m.onnx")


def test_a_failed_write_leaves_the_old_sidecar_and_no_temporary_file(built, tmp_path, monkeypatch):
    engine, _, before = built
    with pytest.raises(TypeError):
        sidecars.write_sidecar(engine, {"not json": object()})

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)  # the rename at the end of the atomic write fails
    with pytest.raises(JetracerError, match="No space left"):
        sidecars.write_sidecar(engine, {"precision": "fp32"})
    monkeypatch.undo()
    assert sidecars.read_sidecar(engine) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["road.fp16.engine", "road.fp16.engine.json", "road.onnx"]


@pytest.mark.parametrize("content, reason", [(None, "has no sidecar"), ("{not json", "unreadable"),
                                             ("[1, 2]", "JSON list")])
def test_missing_or_corrupt_sidecar_says_how_to_rebuild(tmp_path, content, reason):
    engine = tmp_path / "road.fp16.engine"
    engine.write_bytes(b"plan")
    if content is not None:
        sidecars.sidecar_path(engine).write_text(content)
    with pytest.raises(JetracerError) as exc:
        sidecars.read_sidecar(engine)
    assert reason in str(exc.value)
    assert "jetracer-trt convert --backend tensorrt" in str(exc.value) and f"--out {engine} --force" in str(exc.value)


@pytest.mark.parametrize("change, expected", [
    ({"gpu_name": "NVIDIA H100"}, "built for another GPU: Orin (compute capability 8.7), this machine has NVIDIA H100"),
    ({"compute_capability": "9.0"}, "this machine has Orin (compute capability 9.0)"),
    ({"trt_version": "11.4.0"}, "built with TensorRT 10.3.0, this machine has TensorRT 11.4.0"),
])
def test_another_gpu_or_tensorrt_version_is_named(built, change, expected):
    engine, source, data = built
    problems = sidecars.check_sidecar(data, **{**HERE, **change}, source_path=source)
    assert len(problems) == 1 and expected in problems[0]


def test_a_changed_or_missing_source_model_is_named(built):
    engine, source, data = built
    source.write_bytes(b"onnx model v2 (retrained)")
    problems = sidecars.check_sidecar(data, **HERE, source_path=source)
    assert len(problems) == 1 and "built from another model" in problems[0] and str(source) in problems[0]
    source.unlink()
    problems = sidecars.check_sidecar(data, **HERE, source_path=source)
    assert len(problems) == 1 and "is not there" in problems[0]
    assert sidecars.check_sidecar(data, **HERE, source_path=None) == []  # not asked: not checked


def test_an_engine_that_is_not_the_one_described_is_named(built):
    engine, source, data = built
    engine.write_bytes(b"another plan")
    problems = sidecars.check_sidecar(data, **HERE, source_path=source, artifact_path=engine)
    assert len(problems) == 1 and "do not belong together" in problems[0]


@pytest.mark.parametrize("change, expected", [
    ({"format_version": 2}, "format version 2"),
    ({"format_version": "1"}, "format version '1'"),
    ({"format": "something.else"}, "not a jetracer_trt engine sidecar"),
    ({"precision": "int4"}, "precision 'int4'"),
    ({"max_batch": 0}, "max_batch 0"),
])
def test_unknown_format_or_values_are_named(built, change, expected):
    _, source, data = built
    problems = sidecars.check_sidecar({**data, **change}, **HERE, source_path=source)
    assert len(problems) == 1 and expected in problems[0]


def test_missing_fields_are_named(built):
    _, source, data = built
    del data["source_sha256"], data["gpu_name"]
    problems = sidecars.check_sidecar(data, **HERE, source_path=source)
    assert problems == ["the sidecar lacks gpu_name, source_sha256"]


def test_every_problem_is_listed_at_once(built):
    _, source, data = built
    source.write_bytes(b"changed")
    problems = sidecars.check_sidecar(data, trt_version="11.0", gpu_name="X", compute_capability="9.0",
                                      source_path=source)
    assert len(problems) == 3


def test_source_hash_is_the_sha256_of_the_bytes_and_follows_changes(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"a" * 3_000_000)  # more than one read chunk
    first = sidecars.source_hash(model)
    assert first == hashlib.sha256(b"a" * 3_000_000).hexdigest()
    model.write_bytes(b"a" * 2_999_999 + b"b")
    assert sidecars.source_hash(model) != first
    with pytest.raises(JetracerError, match="cannot read"):
        sidecars.source_hash(tmp_path / "missing.onnx")


def test_rebuild_command_repeats_how_the_engine_was_made(built):
    engine, source, data = built
    assert sidecars.rebuild_command(engine, data) == (
        f"jetracer-trt convert --backend tensorrt --precision fp16 --model {source} --max-batch 8 "
        f"--out {engine} --force")
    int8 = {**data, "backend": "torch2trt", "precision": "int8", "max_batch": 1, "calibration": {"calib_dir": "data"}}
    assert sidecars.rebuild_command(engine, int8) == (
        f"jetracer-trt convert --backend tensorrt --via torch2trt --precision int8 --model {source} --calib data "
        f"--out {engine} --force")
    assert "--precision <fp32|fp16|int8> --model <model.onnx>" in sidecars.rebuild_command(engine, None)


def test_refusal_message_lists_problems_and_the_command(built):
    engine, _, data = built
    message = sidecars.refusal_message(engine, ["problem one", "problem two"], data)
    assert message.startswith(f"refusing to load {engine}: problem one; problem two. Rebuild it")
    assert message.endswith("--force")


def test_checked_sidecar_refuses_a_larger_batch_than_built_and_asks_for_it(built, monkeypatch):
    engine, source, _ = built
    monkeypatch.setattr(sidecars, "current_platform", lambda: dict(HERE))
    assert sidecars.checked_sidecar(engine, backend="tensorrt", max_batch=8, source=source)["max_batch"] == 8
    with pytest.raises(JetracerError, match="batches of up to 8, and 16 were asked for.*--max-batch 16"):
        sidecars.checked_sidecar(engine, backend="tensorrt", max_batch=16, source=source)
    with pytest.raises(JetracerError, match="is a tensorrt engine, not a torch2trt one"):
        sidecars.checked_sidecar(engine, backend="torch2trt", max_batch=1, source=source)
    with pytest.raises(JetracerError, match="engine not found"):
        sidecars.checked_sidecar(engine.with_name("nope.engine"), backend="tensorrt", max_batch=1, source=None)


def test_current_platform_says_how_to_install_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(JetracerError) as exc:
        sidecars.current_platform()
    assert "pip install tensorrt" in str(exc.value) and "JetPack" in str(exc.value)


def test_the_sidecar_is_plain_json(built):
    engine, _, _ = built
    assert isinstance(json.loads(sidecars.sidecar_path(engine).read_text()), dict)
    assert not any(name.startswith(".") for name in os.listdir(engine.parent))
