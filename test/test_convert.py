"""``jetracer-trt convert``: the one pipeline (refusals that write and lose nothing, the default output name that
``backend auto`` finds, the result's contract checked, the atomic write), the ONNX Runtime INT8 route end to end on
the shipped model, the calibration/verification frame split, the CLI's output and help, and ModelOpt's Q/DQ ONNX
for TensorRT where ModelOpt is installed.

The end-to-end conversion calibrates on 32 and verifies on 32 other frames of a small simulator-made dataset (about
10 s on 2 cores); the refusal tests stop before any quantization.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from jetracer_trt import convert as convert_pkg  # noqa: E402
from jetracer_trt import verify  # noqa: E402
from jetracer_trt.cli import convert as convert_cli  # noqa: E402
from jetracer_trt.config import default_model_path  # noqa: E402
from jetracer_trt.contract import ModelContract, read_contract  # noqa: E402
from jetracer_trt.convert import ConvertRequest, ConvertResult  # noqa: E402
from jetracer_trt.convert import calibration, onnxruntime_int8, pipeline, qdq  # noqa: E402
from jetracer_trt.dataset import DatasetWriter  # noqa: E402
from jetracer_trt.engines import create_engine, select  # noqa: E402
from jetracer_trt.engines import sidecar as sidecars  # noqa: E402
from jetracer_trt.engines.sidecar import source_hash  # noqa: E402
from jetracer_trt.errors import JetracerError  # noqa: E402
from jetracer_trt.preprocess import Preprocessor  # noqa: E402

SHIPPED = default_model_path()
CHECKPOINT = SHIPPED.with_suffix(".pt")
DEFAULT = ModelContract.default()
CALIB, VERIFY = 32, 32


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="jetracer-trt")
    convert_cli.register(root.add_subparsers())
    return root


def run_cli(argv: list[str]) -> int:
    """The ``convert`` verb as ``jetracer-trt convert`` runs it."""
    args = parser().parse_args(["convert", *argv])
    return args.func(args)


def _dataset(root: Path, frames: np.ndarray) -> Path:
    with DatasetWriter(root) as writer:
        for frame in frames:
            writer.append(frame, 0.0, 0.0)
    return root


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    """64 simulator frames of a plain and a randomized track (seeds below 1000), stored as a dataset."""
    return _dataset(tmp_path_factory.mktemp("calib") / "data", verify.verification_frames(None, CALIB + VERIFY))


@pytest.fixture(scope="module")
def converted(tmp_path_factory, calib_dir):
    """The CLI run once with --json and no --out, on a copy of the shipped model: (path, parsed JSON, stdout)."""
    model = tmp_path_factory.mktemp("int8") / "road_following.onnx"
    shutil.copyfile(SHIPPED, model)
    stdout = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(stdout):
        rc = run_cli(["--backend", "onnxruntime", "--precision", "int8", "--model", str(model), "--calib",
                      str(calib_dir), "--calib-frames", str(CALIB), "--verify-frames", str(VERIFY), "--json"])
    assert rc == 0
    print(f"ONNX Runtime INT8 conversion, {CALIB} + {VERIFY} frames: {time.perf_counter() - start:.1f} s")
    return model.with_name("road_following.int8.onnx"), json.loads(stdout.getvalue()), stdout.getvalue()


# ---------------------------------------------------------------------------------------------------------------------
# The INT8 route end to end


def test_cli_json_is_one_object_describing_the_verified_file(converted):
    out, result, stdout = converted
    assert stdout.count("\n") == 1 and stdout.strip().startswith("{")  # nothing but the one object
    assert result["path"] == str(out) and result["files"] == [str(out)]
    assert result["backend"] == "onnxruntime" and result["precision"] == "int8"
    check = result["verification"]
    assert check["ok"] and check["frames"] == VERIFY and check["precision"] == "int8"
    assert 0 < check["mean_abs"]["x"] <= 0.02  # quantized, so not bit-exact, but within the INT8 tolerance
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["road_following.int8.onnx",
                                                                                "road_following.onnx"]


def test_without_out_the_result_is_where_backend_auto_finds_it(converted, monkeypatch):
    out, _, _ = converted
    monkeypatch.setattr(select, "has_nvidia_gpu", lambda: False)
    choice = select.choose_backend(out.with_name("road_following.onnx"))
    assert (choice.backend, choice.model, choice.passed_over) == ("onnxruntime", out, [])


def test_int8_model_is_quantized_operators_with_fp32_head_and_records_its_calibration(converted):
    out, _, _ = converted
    proto = onnx.load(str(out))
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    assert ops["QLinearConv"] == 20 and ops["Conv"] == 0 and ops["Cast"] == 0  # every conv, FP16 weights folded
    assert ops["QLinearAdd"] == 8 and ops["Gemm"] == 1  # the 512 -> 2 head stays FP32 on purpose
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["precision"] == "int8"
    assert meta["calibration_method"] == onnxruntime_int8.CALIBRATION_METHOD
    assert meta["calibration_frames"] == str(CALIB)
    assert meta["source_sha256"] == source_hash(SHIPPED)  # backend auto runs it only beside this very model
    assert read_contract(out) == read_contract(SHIPPED) == DEFAULT  # and by the source's contract
    assert meta["checkpoint_sha256"] == source_hash(CHECKPOINT)  # the source's own records are kept
    lines = onnxruntime_int8.layer_precisions(proto)
    assert any(line.startswith("QLinearConv") and line.endswith(" int8") for line in lines)
    assert any(line.startswith("Gemm") and line.endswith(" fp32") for line in lines)


def test_onnxruntime_engine_runs_the_int8_model_as_int8(converted, calib_dir):
    out, _, _ = converted
    frames = verify.verification_frames(calib_dir, 16)
    with create_engine("onnxruntime", out, providers=["CPUExecutionProvider"], max_batch=8) as engine:
        assert engine.precision == "int8"
        got = verify.engine_outputs(engine, frames)
    comparison = verify.compare(verify.reference_outputs(SHIPPED, frames), got, "int8")
    assert comparison.ok, comparison.report()


# ---------------------------------------------------------------------------------------------------------------------
# Refusals: a clear error, and nothing written or lost


def test_one_frame_far_off_fails_verification_and_writes_nothing(tmp_path, calib_dir, monkeypatch):
    real_reference = pipeline.reference_outputs

    def one_frame_off(source, frames):
        outputs = real_reference(source, frames)
        outputs[3, 0] += 0.6  # the mean |dx| stays small; the worst frame does not
        return outputs

    monkeypatch.setattr(pipeline, "reference_outputs", one_frame_off)
    out = tmp_path / "m.int8.onnx"
    request = ConvertRequest(source=SHIPPED, out=out, precision="int8", calib_dir=calib_dir, calib_frames=16,
                             verify_frames=48)  # over 48 frames, 0.6 on one is a mean |dx| of 0.0125
    with pytest.raises(JetracerError, match=r"disagrees with the source model: x max .*FAIL: x max 6\.\d+e-01 > "
                                            r"0\.1 \(frame 3\).* was not written"):
        convert_pkg.convert("onnxruntime", request)
    assert list(tmp_path.iterdir()) == []  # neither the model nor a temporary file


def test_existing_output_is_kept_without_force(tmp_path):
    out = tmp_path / "m.int8.onnx"
    out.write_bytes(b"precious")
    with pytest.raises(JetracerError, match="already exists; pass --force"):
        run_cli(["--backend", "onnxruntime", "--precision", "int8", "--out", str(out)])
    with pytest.raises(JetracerError, match="already exists; pass --force"):  # the route checks too
        onnxruntime_int8.convert(ConvertRequest(source=SHIPPED, out=out, precision="int8"))
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("precision, message", [
    ("fp32", "already is the ONNX Runtime model"),
    ("fp16", "fp16 is for GPUs: use --backend tensorrt"),
])
def test_onnxruntime_converts_to_int8_only(tmp_path, precision, message):
    with pytest.raises(JetracerError, match=message):
        run_cli(["--backend", "onnxruntime", "--precision", precision, "--out", str(tmp_path / "m.onnx")])
    assert list(tmp_path.iterdir()) == []


def test_torch2trt_only_with_tensorrt(tmp_path):
    with pytest.raises(JetracerError, match="--via torch2trt works only with --backend tensorrt"):
        run_cli(["--backend", "onnxruntime", "--via", "torch2trt", "--precision", "int8",
                 "--out", str(tmp_path / "m.onnx")])


def test_bad_inputs(tmp_path):
    base = ["--backend", "onnxruntime", "--precision", "int8"]
    with pytest.raises(JetracerError, match="model file not found"):
        run_cli([*base, "--model", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "m.onnx")])
    with pytest.raises(JetracerError, match="is not a folder"):
        run_cli([*base, "--calib", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.onnx")])
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(JetracerError, match="not a folder"):
        run_cli([*base, "--out", str(blocker / "m.onnx")])
    with pytest.raises(JetracerError, match="is a folder"):
        run_cli([*base, "--out", str(tmp_path)])
    with pytest.raises(JetracerError, match="--calib-frames must be a positive integer"):
        run_cli([*base, "--calib-frames", "0", "--out", str(tmp_path / "m.onnx")])
    with pytest.raises(JetracerError, match="--backend onnxruntime converts an FP32 .onnx model"):
        onnxruntime_int8.convert(ConvertRequest(source=CHECKPOINT, out=tmp_path / "m.onnx", precision="int8"))
    with pytest.raises(JetracerError, match="is the source model"):
        onnxruntime_int8.convert(ConvertRequest(source=SHIPPED, out=SHIPPED, precision="int8", force=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_empty_calibration_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(JetracerError, match="not a jetracer_trt dataset"):
        run_cli(["--backend", "onnxruntime", "--precision", "int8", "--calib", str(empty),
                 "--out", str(tmp_path / "m.onnx")])
    assert not (tmp_path / "m.onnx").exists()


def test_route_not_built_yet_is_a_clear_error(tmp_path, monkeypatch):
    def missing(backend, request, via=None):
        raise ModuleNotFoundError("No module named 'jetracer_trt.convert.tensorrt_build'",
                                  name="jetracer_trt.convert.tensorrt_build")

    monkeypatch.setattr(convert_pkg, "convert", missing)
    with pytest.raises(JetracerError, match="--backend tensorrt is not available"):
        run_cli(["--backend", "tensorrt", "--precision", "fp16", "--out", str(tmp_path / "m.engine")])


# ---------------------------------------------------------------------------------------------------------------------
# The pipeline every route shares


def route_modules():
    """(route, a source it converts, an output name it writes) of every conversion route and of export."""
    from jetracer_trt import export
    from jetracer_trt.convert import tensorrt_build, torch2trt_build, torch_aot

    return [(onnxruntime_int8.ROUTE, SHIPPED, "m.int8.onnx"), (tensorrt_build.ROUTE, SHIPPED, "m.fp16.engine"),
            (torch_aot.ROUTE, CHECKPOINT, "m.fp32.cpu.pt2"), (torch2trt_build.ROUTE, CHECKPOINT, "m.fp16.trt.pth"),
            (export.OnnxExport(), CHECKPOINT, "m.onnx")]


@pytest.mark.parametrize("index", range(5))
def test_every_route_keeps_an_existing_output_without_force(tmp_path, index):
    route, source, name = route_modules()[index]
    out = tmp_path / name
    out.write_bytes(b"precious")
    with pytest.raises(JetracerError, match="already exists; pass --force to replace it"):
        route.convert(ConvertRequest(source=source, precision=route.precisions[-1], out=out))
    with pytest.raises(JetracerError, match="is the source model"):
        route.convert(ConvertRequest(source=source, precision=route.precisions[-1], out=source, force=True))
    assert out.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_the_default_output_is_the_name_backend_auto_looks_for():
    from jetracer_trt.engines.artifacts import converted_path

    routes = {route.command: route for route, _, _ in route_modules()}
    assert routes["--backend onnxruntime"].default_out(SHIPPED, "int8") == SHIPPED.with_name("road_following.int8.onnx")
    for precision in ("int8", "fp16", "fp32"):  # the engines select.choose_backend tries, in its order
        assert routes["--backend tensorrt"].default_out(SHIPPED, precision) == \
            converted_path(SHIPPED, "tensorrt", precision)
    device = "cuda" if select.cuda_available() else "cpu"
    assert routes["--backend torch"].default_out(CHECKPOINT, "fp16").name == f"road_following.fp16.{device}.pt2"
    assert routes["export"].default_out(CHECKPOINT, "fp32") == SHIPPED  # the .onnx beside its checkpoint


class _CopyRoute(pipeline.Route):
    """A route whose build copies ``result`` to OUT: a stand-in for a build that forgot to record the contract."""

    command, backend, what, precisions, sources = "--test", "onnxruntime", "the copy", ("fp32",), (".onnx",)

    def __init__(self, result: Path) -> None:
        self.result = result

    def build(self, request, contract, frames, out, work):
        shutil.copyfile(self.result, out)
        return pipeline.Build()


def test_a_result_that_does_not_carry_the_sources_contract_is_refused(tmp_path):
    from test_engine import tiny_model

    source = tiny_model(tmp_path / "m.onnx", contract=DEFAULT)
    out = tmp_path / "m.copy.onnx"
    request = ConvertRequest(source=source, precision="fp32", out=out, verify_frames=16)
    result = _CopyRoute(source).convert(request)  # the same model: it passes
    assert result.comparison.ok and out.is_file() and result.files == [out]
    out.unlink()
    with pytest.raises(JetracerError, match="loads as fp32 with contract .*160x224.*not as the fp32 model of "
                                            ".*224x224.* was not written"):
        _CopyRoute(tiny_model(tmp_path / "other.onnx", contract=DEFAULT.replace(input_width=160))).convert(request)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "other.onnx"]


def test_staging_moves_the_result_and_its_sidecar_in_place_or_neither(tmp_path):
    out = tmp_path / "road_following.fp32.engine"
    with pytest.raises(RuntimeError):
        with pipeline._staged(out, with_sidecar=True) as (tmp, work):
            tmp.write_bytes(b"new plan")
            sidecars.write_sidecar(tmp, {"precision": "fp32"})
            raise RuntimeError("verification failed")
    assert list(tmp_path.iterdir()) == []
    with pipeline._staged(out, with_sidecar=True) as (tmp, work):
        assert tmp.name == out.name and tmp.parent == work and work.parent == tmp_path
        tmp.write_bytes(b"new plan")
        sidecars.write_sidecar(tmp, {"precision": "fp32"})
        (work / "scratch.onnx").write_bytes(b"intermediate")
    assert out.read_bytes() == b"new plan" and sidecars.read_sidecar(out)["precision"] == "fp32"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, out.name + ".json"]


def test_staging_syncs_both_files_before_the_renames_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_replace = os.replace
    monkeypatch.setattr(pipeline, "fsync_file", lambda p: events.append(("file", os.path.basename(p))))
    monkeypatch.setattr(pipeline, "fsync_dir", lambda p: events.append(("dir", str(p))))
    monkeypatch.setattr(pipeline.os, "replace", lambda a, b: (events.append(("rename", os.path.basename(b))),
                                                             real_replace(a, b)))
    out = tmp_path / "road_following.fp32.engine"
    with pipeline._staged(out, with_sidecar=True) as (tmp, _):
        tmp.write_bytes(b"plan")
        sidecars.write_sidecar(tmp, {"precision": "fp32"})
    assert [e[0] for e in events][-5:] == ["file", "file", "rename", "rename", "dir"]
    assert events[-3:-1] == [("rename", out.name), ("rename", out.name + ".json")]  # the engine first
    assert events[-1] == ("dir", str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------------
# Calibration frames


def test_calibration_and_verification_frames_are_disjoint(calib_dir):
    frames = calibration.split_frames(calib_dir, CALIB, VERIFY)
    assert frames.disjoint and not frames.notes
    assert len(frames.calibration) == CALIB and len(frames.verification) == VERIFY
    seen = {f.tobytes() for f in frames.calibration}
    assert not any(f.tobytes() in seen for f in frames.verification)
    small = DEFAULT.replace(input_width=96, input_height=64)
    reader = calibration.FrameBatches(frames.calibration, "image", small, batch=8)
    np.testing.assert_array_equal(reader.get_next()["image"], Preprocessor(small).batch(frames.calibration[:8]))
    reader.rewind()
    sizes = []
    while (item := reader.get_next()) is not None:
        sizes.append(len(item["image"]))
    assert sizes == [8, 8, 8, 8]


def test_fewer_frames_than_asked_shrinks_both_sets(calib_dir, tmp_path):
    frames = calibration.split_frames(calib_dir, 64, 64)  # the dataset has 64 frames, not 128
    assert frames.disjoint and len(frames.calibration) + len(frames.verification) == 64
    assert len(frames.verification) >= verify.MIN_FRAMES and frames.notes
    small = _dataset(tmp_path / "small", verify.verification_frames(calib_dir, 20))
    frames = calibration.split_frames(small, 16, 16)
    assert not frames.disjoint and "verified on the calibration frames" in frames.notes[0]
    with pytest.raises(JetracerError, match="at least 16 frames"):
        calibration.split_frames(calib_dir, 8, 16)
    only = calibration.split_frames(calib_dir, 0, 16)  # a route that does not calibrate
    assert len(only.calibration) == 0 and len(only.verification) == 16 and only.disjoint


# ---------------------------------------------------------------------------------------------------------------------
# CLI text output and help


def test_text_output_names_file_error_and_time(tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.int8.onnx"
    comparison = verify.compare(np.zeros((4, 2), np.float32), np.full((4, 2), 0.01, np.float32), "int8",
                                DEFAULT.outputs)

    def fake(backend, request, via=None):
        out.write_bytes(b"x" * 2_000_000)
        return ConvertResult(path=request.out, backend=backend, precision=request.precision, comparison=comparison,
                             seconds=12.34, files=[request.out], notes=["QLinearConv  /conv1  int8"])

    monkeypatch.setattr(convert_pkg, "convert", fake)
    assert run_cli(["--backend", "onnxruntime", "--precision", "int8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out} (onnxruntime int8, 2.0 MB)" in text
    assert "x max 1.00e-02 mean 1.00e-02" in text and "pass" in text
    assert "QLinearConv  /conv1  int8" in text and "took 12.3 s" in text


def test_help_explains_each_backend_and_precision():
    sub = parser()._subparsers._group_actions[0].choices["convert"]
    text = sub.format_help()
    for phrase in ("Jetson", "--backend tensorrt --precision fp16", "--backend tensorrt --precision int8",
                   "--backend onnxruntime --precision int8", "laptop", "CUDA GPU without TensorRT",
                   "--backend torch", "--calib", "--verify-frames", "--via", "--force", "--json", "--verbose"):
        assert phrase in text, phrase


def test_help_states_the_tolerance_table():
    import re

    text = convert_cli.DESCRIPTION.replace("\n", " ")
    stated = {m[0]: (float(m[1]), float(m[2])) for m in re.findall(r"(fp32|fp16|int8) ([\d.e-]+) / ([\d.e-]+)", text)}
    assert stated == {p: (b.max_abs, b.mean_abs) for p, b in verify.TOLERANCES.items()}
    assert "worst frame" in text and "every output" in text


def test_cli_defaults_match_the_package():
    assert convert_cli.BACKENDS == convert_pkg.BACKENDS
    request = ConvertRequest(source=Path("a"), out=Path("b"), precision="int8")
    assert convert_cli.DEFAULT_CALIB_FRAMES == request.calib_frames
    assert convert_cli.DEFAULT_VERIFY_FRAMES == request.verify_frames
    assert convert_cli.DEFAULT_WORKSPACE_MB == request.workspace_mb
    assert convert_cli.default_source("onnxruntime", None) == SHIPPED
    assert convert_cli.default_source("tensorrt", None) == SHIPPED
    assert convert_cli.default_source("torch", None) == SHIPPED.with_suffix(".pt")
    assert convert_cli.default_source("tensorrt", "torch2trt") == SHIPPED.with_suffix(".pt")


# ---------------------------------------------------------------------------------------------------------------------
# Q/DQ ONNX for TensorRT (ModelOpt)


def test_qdq_without_modelopt_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "modelopt", None)  # makes `import modelopt...` fail
    monkeypatch.setitem(sys.modules, "modelopt.onnx", None)
    monkeypatch.setitem(sys.modules, "modelopt.onnx.quantization", None)
    frames = np.zeros((2, 224, 224, 3), np.uint8)
    with pytest.raises(JetracerError, match=r"\[quantize\]"):
        qdq.make_qdq_onnx(SHIPPED, frames, DEFAULT, tmp_path / "m.qdq.onnx")
    assert list(tmp_path.iterdir()) == []


def test_convs_without_qdq_finds_an_unquantized_conv():
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s"], ["xd"]),
        helper.make_node("QuantizeLinear", ["w", "s"], ["wq"]),
        helper.make_node("DequantizeLinear", ["wq", "s"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["y1"], name="quantized"),
        helper.make_node("Conv", ["y1", "w"], ["y2"], name="plain"),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 2, 2]) for n in ("x", "y2")]
    proto = helper.make_model(helper.make_graph(nodes, "g", [io[0]], [io[1]], [w, scale]))
    assert qdq.convs_without_qdq(proto) == ["plain"]


def test_modelopt_qdq_onnx_has_qdq_around_every_conv_and_runs_on_onnxruntime(tmp_path, calib_dir):
    pytest.importorskip("modelopt.onnx.quantization")
    frames = calibration.split_frames(calib_dir, CALIB, VERIFY)
    out = qdq.make_qdq_onnx(SHIPPED, frames.calibration, DEFAULT, tmp_path / "road_following.qdq.onnx")
    proto = onnx.load(str(out))
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    assert ops["Conv"] == 20 and qdq.convs_without_qdq(proto) == []
    assert ops["QuantizeLinear"] >= 20 and ops["DequantizeLinear"] >= 20
    assert {p.key: p.value for p in proto.metadata_props}["precision"] == "int8"
    with create_engine("onnxruntime", out, providers=["CPUExecutionProvider"], max_batch=8) as engine:
        got = verify.engine_outputs(engine, frames.verification)
    comparison = verify.compare(verify.reference_outputs(SHIPPED, frames.verification), got, "int8")
    assert comparison.ok, comparison.report()


def test_modelopts_patches_of_onnx_runtime_are_undone_after_a_qdq_build():
    from onnxruntime.quantization import calibrate

    from jetracer_trt.convert.qdq import ort_quantization_left_as_found

    original_method, original_factory = calibrate.MinMaxCalibrater.collect_data, calibrate.create_calibrator
    with ort_quantization_left_as_found():  # what ModelOpt's quantize() does to the process
        calibrate.MinMaxCalibrater.collect_data = lambda self, reader: None
        calibrate.create_calibrator = lambda *a, **k: None
    assert calibrate.MinMaxCalibrater.collect_data is original_method
    assert calibrate.create_calibrator is original_factory
