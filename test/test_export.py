"""ONNX export: verified against PyTorch, FP16-stored weights, names and dynamic batch, the model contract carried
from the checkpoint to the ONNX file and driven by, and refusals that write nothing.

Uses a freshly initialised ResNet18 saved like train's best.pt and a tiny dataset for --frames, so nothing here
depends on trained weights.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from jetracer_trt import export as export_mod  # noqa: E402
from jetracer_trt.cli import export as export_cli  # noqa: E402
from jetracer_trt.contract import ModelContract  # noqa: E402
from jetracer_trt.convert import pipeline  # noqa: E402
from jetracer_trt.dataset import DatasetWriter  # noqa: E402
from jetracer_trt.engines import create_engine  # noqa: E402
from jetracer_trt.errors import JetracerError  # noqa: E402
from jetracer_trt.model import build_model, load_checkpoint, make_checkpoint, save_checkpoint  # noqa: E402
from jetracer_trt.preprocess import Preprocessor  # noqa: E402


def run_cli(argv: list[str]) -> int:
    """The ``export`` verb as ``jetracer-trt export`` runs it."""
    parser = argparse.ArgumentParser()
    export_cli.register(parser.add_subparsers())
    args = parser.parse_args(["export", *argv])
    return args.func(args)


def _smooth_frame(rng: np.random.Generator) -> np.ndarray:
    """Camera-like: a low-frequency pattern upsampled, plus a little noise (not pure noise, which no camera sees)."""
    import cv2

    small = rng.integers(0, 256, (7, 7, 3), dtype=np.uint8)
    frame = cv2.resize(small, (224, 224), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    return np.clip(frame + rng.integers(-10, 11, frame.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("frames") / "d"
    rng = np.random.default_rng(0)
    with DatasetWriter(root) as writer:
        for _ in range(16):
            writer.append(_smooth_frame(rng), float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)))
    return root


DEFAULT = ModelContract.default()


def _checkpoint(path: Path, *, outputs: int = 2, half: bool = True, seed: int = 0, contract=DEFAULT, **meta) -> Path:
    torch.manual_seed(seed)
    model = build_model(weights="none", num_outputs=outputs)
    save_checkpoint(make_checkpoint(model, half=half, contract=contract, kind="best" if half else "last", epoch=1,
                                    **meta), path)
    return path


@pytest.fixture(scope="module")
def best_pt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, best_pt, frames_dir) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert run_cli(["--checkpoint", str(best_pt), "--out", str(out), "--frames", str(frames_dir)]) == 0
    return out


def test_export_names_dynamic_batch_and_fp16_storage(exported, capsys):
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "image" and out.name == "target"
    in_dims = inp.type.tensor_type.shape.dim
    out_dims = out.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and not in_dims[0].HasField("dim_value")  # dynamic batch
    assert [d.dim_value for d in in_dims[1:]] == [3, 224, 224]
    assert out_dims[0].dim_param and out_dims[1].dim_value == 2
    types = [init.data_type for init in proto.graph.initializer]
    fp16 = types.count(onnx.TensorProto.FLOAT16)
    assert fp16 >= 0.9 * len(types)
    assert sum(node.op_type == "Cast" for node in proto.graph.node) == fp16
    assert exported.stat().st_size < 24e6  # about half of the ~45 MB FP32 export
    assert not [p for p in exported.parent.iterdir() if p.name != exported.name]  # no temp file left


def test_exported_model_matches_torch_with_batch_8(exported, best_pt, frames_dir):
    from jetracer_trt.dataset import load_image, read_dataset

    model, _ = load_checkpoint(best_pt)
    frames = [load_image(s.image_path) for s in read_dataset(frames_dir)[0][:8]]
    batch = Preprocessor(DEFAULT).batch(frames)
    with torch.inference_mode():
        reference = model(torch.from_numpy(batch)).numpy()

    engine = create_engine("onnxruntime", exported, providers=["CPUExecutionProvider"])
    got = engine.session.run(None, {"image": batch})[0]  # the dynamic batch, straight through ONNX Runtime
    assert got.shape == (8, 2)
    assert np.abs(got - reference).max() <= 1e-4
    single = engine.infer(frames[3])  # the runtime's per-frame path
    assert single.shape == (2,) and np.abs(single - reference[3]).max() <= 1e-4


def test_corrupt_checkpoint_writes_nothing(tmp_path, best_pt, frames_dir):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(best_pt.read_bytes()[: 100_000])  # truncated
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(JetracerError, match="not a readable PyTorch checkpoint"):
        run_cli(["--checkpoint", str(bad), "--out", str(out), "--frames", str(frames_dir)])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(JetracerError, match="not a readable PyTorch checkpoint"):
        run_cli(["--checkpoint", str(garbage), "--out", str(out), "--frames", str(frames_dir)])
    with pytest.raises(JetracerError, match="not found"):
        run_cli(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out), "--frames", str(frames_dir)])
    assert not out.exists()


def test_wrong_head_or_architecture_is_refused(tmp_path, frames_dir):
    out = tmp_path / "m.onnx"
    three = _checkpoint(tmp_path / "three.pt", outputs=3)
    with pytest.raises(JetracerError, match="head with 3 outputs, but its road_following contract names 2"):
        export_mod.export_onnx(three, out, frames_dir=frames_dir)
    other = tmp_path / "other.pt"
    checkpoint = torch.load(_checkpoint(tmp_path / "tmp.pt"), weights_only=True)
    checkpoint["architecture"] = "resnet34"
    torch.save(checkpoint, other)
    with pytest.raises(JetracerError, match="resnet34"):
        export_mod.export_onnx(other, out, frames_dir=frames_dir)
    assert not out.exists()


def perturbed_reference(monkeypatch, column: int, offset: float) -> None:
    """The reference (PyTorch FP32) of every export off by ``offset`` on output ``column``."""
    real_reference = pipeline.reference_outputs

    def perturbed(source, frames):
        result = real_reference(source, frames)
        result[:, column] += offset
        return result

    monkeypatch.setattr(pipeline, "reference_outputs", perturbed)


def test_failed_verification_writes_nothing_and_names_the_output(tmp_path, best_pt, frames_dir, monkeypatch):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous model")
    perturbed_reference(monkeypatch, 0, 1e-3)  # x off by 10x the tolerance, y untouched
    with pytest.raises(JetracerError) as info:
        export_mod.export_onnx(best_pt, out, frames_dir=frames_dir, force=True)
    message = str(info.value)
    assert "ONNX Runtime (fp32) disagrees with the source model: x max 1.00e-03" in message
    assert "not written" in message
    y_error = float(message.split(", y max ")[1].split()[0])
    assert y_error <= 1e-4 and "y max" not in message.split("FAIL")[1]  # only x is named as failing
    assert out.read_bytes() == b"previous model"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # and no temp file is left


def test_a_steady_error_within_the_worst_frame_bound_is_refused_on_the_mean(tmp_path, best_pt, frames_dir,
                                                                           monkeypatch):
    perturbed_reference(monkeypatch, 1, 6e-5)  # every frame's y: under the FP32 worst-frame bound, over the mean's
    with pytest.raises(JetracerError, match=r"FAIL: y mean [56]\.\d+e-05 > 2e-05"):
        export_mod.export_onnx(best_pt, tmp_path / "m.onnx", frames_dir=frames_dir)
    assert list(tmp_path.iterdir()) == []


def test_the_onnx_model_records_the_checkpoint_it_was_exported_from_and_its_contract(exported, best_pt):
    from jetracer_trt.contract import read_contract
    from jetracer_trt.engines.artifacts import onnx_metadata
    from jetracer_trt.engines.sidecar import source_hash

    meta = onnx_metadata(exported)
    assert meta["checkpoint"] == best_pt.name and meta["checkpoint_sha256"] == source_hash(best_pt)
    assert {p.key: p.value for p in onnx.load(str(exported)).metadata_props} == meta
    assert read_contract(exported) == read_contract(best_pt) == DEFAULT


def test_an_existing_output_is_kept_without_force(tmp_path, best_pt):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"mine")
    with pytest.raises(JetracerError, match="already exists; pass --force"):
        run_cli(["--checkpoint", str(best_pt), "--out", str(out)])
    assert out.read_bytes() == b"mine"


def test_a_model_exported_at_160x160_with_its_own_normalization_drives_through_backend_auto(tmp_path, caplog):
    import logging

    from jetracer_trt.preprocess import resize
    from jetracer_trt.safety import SafetyGovernor
    from jetracer_trt.sim import SimWorld, drive
    from jetracer_trt.train import prepare_batch

    contract = DEFAULT.replace(input_width=160, input_height=160, mean=[0.4, 0.45, 0.5], std=[0.3, 0.25, 0.2])
    checkpoint = _checkpoint(tmp_path / "small.pt", contract=contract, seed=3)
    result = export_mod.export_onnx(checkpoint, num_frames=16)  # no --out: beside the checkpoint, as auto expects
    assert result.path == tmp_path / "small.onnx" and result.comparison.ok
    with caplog.at_level(logging.WARNING, logger="jetracer_trt"):
        engine = create_engine("auto", result.path, task="road_following", threads=1)
    assert "contract" not in caplog.text  # the file says how it was trained: nothing is assumed
    assert engine.contract == contract and (engine.height, engine.width) == (160, 160)

    world = SimWorld(1001)
    frame = world.observe()
    assert frame.shape == (224, 224, 3)  # the simulator's camera, not the model's input size
    engine.infer(frame)
    small = torch.from_numpy(resize(frame, contract.input_size, contract.resize)[None].copy())
    trained_on = prepare_batch(small, torch.zeros(1, 2), None, None, False, contract)[0].numpy()
    staged = engine.staged_input(1)
    atol = 2e-3 if engine.precision == "fp16" else 0  # a GPU may run the checkpoint in FP16
    np.testing.assert_allclose(staged, Preprocessor(contract)(frame), rtol=0, atol=atol)
    np.testing.assert_allclose(staged, trained_on, rtol=0, atol=atol)  # what training fed the network

    world.cfg["eval"]["min_mean_speed_mps"] = 10.0  # ends the untrained model's run after a couple of seconds
    metrics = drive(world, engine.infer, SafetyGovernor.from_config("sim"), laps=1)
    assert metrics["frames"] > 30 and metrics["inference_ms"]["p50"] > 0


def test_bare_state_dict_and_fp32_checkpoint_load(tmp_path):
    torch.manual_seed(1)
    model = build_model(weights="none")
    torch.save(model.state_dict(), tmp_path / "bare.pth")  # what the original JetRacer notebooks saved
    loaded, data = load_checkpoint(tmp_path / "bare.pth")
    assert data["architecture"] == "resnet18"
    assert torch.equal(loaded.fc.weight, model.fc.weight)
    fp32 = _checkpoint(tmp_path / "last.pt", half=False, seed=1)
    loaded, data = load_checkpoint(fp32)
    assert data["weights_dtype"] == "float32" and torch.equal(loaded.fc.weight, model.fc.weight)


def test_fp16_storage_is_lossless():
    from onnx import helper, numpy_helper

    exact = np.array([0.5, -2.0, 1024.0, 0.0], dtype=np.float32)
    inexact = np.array([0.1, 1.0], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])], "g",
        [], [helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(exact[:2], "a"), numpy_helper.from_array(inexact, "b")],
    )
    proto = helper.make_model(graph)
    assert export_mod.store_fp16_initializers(proto) == (1, 1)
    inits = {i.name: i for i in proto.graph.initializer}
    assert inits["a" + export_mod.FP16_SUFFIX].data_type == onnx.TensorProto.FLOAT16
    assert inits["b"].data_type == onnx.TensorProto.FLOAT
    assert proto.graph.node[0].op_type == "Cast" and proto.graph.node[0].output[0] == "a"
    onnx.checker.check_model(proto)


def test_cli_default_opset_matches_core():
    assert export_cli.DEFAULT_OPSET == export_mod.DEFAULT_OPSET == 17


def test_cli_help_states_the_fp32_tolerance():
    import re

    from jetracer_trt.verify import TOLERANCES

    parser = argparse.ArgumentParser()
    export_cli.register(parser.add_subparsers())
    text = " ".join(parser._subparsers._group_actions[0].choices["export"].description.split())
    found = re.search(r"within ([\d.e-]+) on the worst frame and ([\d.e-]+) on average", text)
    assert found and (float(found[1]), float(found[2])) == (TOLERANCES["fp32"].max_abs, TOLERANCES["fp32"].mean_abs)
