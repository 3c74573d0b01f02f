"""``jetracer-trt convert``: the ONNX Runtime INT8 route end to end on the shipped model, its refusals (nothing
written, nothing lost), the calibration/verification frame split, the CLI's output and help, and ModelOpt's Q/DQ
ONNX for TensorRT where ModelOpt is installed.

The end-to-end conversion calibrates on 32 and verifies on 32 other frames of a small simulator-made dataset (about
10 s on 2 cores); the refusal tests stop before any quantization.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
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
from jetracer_trt.engines.sidecar import source_hash  # noqa: E402
from jetracer_trt.convert import ConvertRequest, ConvertResult  # noqa: E402
from jetracer_trt.convert import calibration, onnxruntime_int8, qdq  # noqa: E402
from jetracer_trt.dataset import DatasetWriter  # noqa: E402
from jetracer_trt.engines import create_engine  # noqa: E402
from jetracer_trt.errors import JetracerError  # noqa: E402

SHIPPED = default_model_path()
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
    """The CLI run once with --json: (path, parsed JSON, stdout)."""
    out = tmp_path_factory.mktemp("int8") / "road_following.int8.onnx"
    stdout = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(stdout):
        rc = run_cli(["--backend", "onnxruntime", "--precision", "int8", "--out", str(out), "--calib", str(calib_dir),
                      "--calib-frames", str(CALIB), "--verify-frames", str(VERIFY), "--json"])
    assert rc == 0
    print(f"ONNX Runtime INT8 conversion, {CALIB} + {VERIFY} frames: {time.perf_counter() - start:.1f} s")
    return out, json.loads(stdout.getvalue()), stdout.getvalue()


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
    assert out.is_file() and not list(out.parent.glob(".*tmp*"))


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
    assert meta["architecture"] == "resnet18"  # the source's own metadata is kept, its checkpoint's SHA-256 too
    assert meta["checkpoint_sha256"] == source_hash(SHIPPED.with_suffix(".pt"))
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
    real_reference = onnxruntime_int8.reference_outputs

    def one_frame_off(source, frames):
        outputs = real_reference(source, frames)
        outputs[3, 0] += 0.6  # the mean |dx| stays small; the worst frame does not
        return outputs

    monkeypatch.setattr(onnxruntime_int8, "reference_outputs", one_frame_off)
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
    with pytest.raises(JetracerError, match="quantizes an FP32 .onnx model"):
        onnxruntime_int8.convert(ConvertRequest(source=SHIPPED.with_suffix(".pt"), out=tmp_path / "m.onnx",
                                                precision="int8"))
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
# Calibration frames


def test_calibration_and_verification_frames_are_disjoint(calib_dir):
    frames = calibration.split_frames(calib_dir, CALIB, VERIFY)
    assert frames.disjoint and not frames.notes
    assert len(frames.calibration) == CALIB and len(frames.verification) == VERIFY
    seen = {f.tobytes() for f in frames.calibration}
    assert not any(f.tobytes() in seen for f in frames.verification)
    batch = calibration.normalized_batch(frames.calibration[:3])
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == np.float32
    reader = calibration.FrameBatches(frames.calibration, "image", batch=8)
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


# ---------------------------------------------------------------------------------------------------------------------
# CLI text output and help


def test_text_output_names_file_error_and_time(tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.int8.onnx"
    comparison = verify.compare(np.zeros((4, 2), np.float32), np.full((4, 2), 0.01, np.float32), "int8")

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
        qdq.make_qdq_onnx(SHIPPED, frames, tmp_path / "m.qdq.onnx")
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
    out = qdq.make_qdq_onnx(SHIPPED, frames.calibration, tmp_path / "road_following.qdq.onnx")
    proto = onnx.load(str(out))
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    assert ops["Conv"] == 20 and qdq.convs_without_qdq(proto) == []
    assert ops["QuantizeLinear"] >= 20 and ops["DequantizeLinear"] >= 20
    assert {p.key: p.value for p in proto.metadata_props}["precision"] == "int8"
    with create_engine("onnxruntime", out, providers=["CPUExecutionProvider"], max_batch=8) as engine:
        got = verify.engine_outputs(engine, frames.verification)
    comparison = verify.compare(verify.reference_outputs(SHIPPED, frames.verification), got, "int8")
    assert comparison.ok, comparison.report()
