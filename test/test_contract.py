"""The model contract: one type, written into every kind of model file, read back from it at load; the default of
config/model.yaml, with a warning, for a file that carries none; refused clearly when invalid or of another task."""
import json
import logging
import zipfile

import numpy as np
import pytest

from jetracer_trt.contract import CONTRACT_KEY, ModelContract, contract_from_record, read_contract
from jetracer_trt.engines import sidecar as sidecars
from jetracer_trt.errors import JetracerError
from jetracer_trt.preprocess import Preprocessor, normalization, resize

DEFAULT = ModelContract.default()
SMALL = DEFAULT.replace(input_width=160, input_height=120, mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0])


def test_the_default_is_config_model_yaml():
    from jetracer_trt.config import load_config

    cfg = load_config("model")
    assert (DEFAULT.task, DEFAULT.input_size, DEFAULT.color_order, DEFAULT.resize) == \
        ("road_following", (224, 224), "RGB", "area")
    assert list(DEFAULT.mean) == cfg["mean"] and list(DEFAULT.std) == cfg["std"]
    assert DEFAULT.outputs == ("x", "y") and (DEFAULT.input_name, DEFAULT.output_name) == ("image", "target")


def test_a_contract_round_trips_through_json():
    assert ModelContract.from_dict(json.loads(SMALL.to_json()), "test") == SMALL
    assert contract_from_record({CONTRACT_KEY: SMALL.to_json()}, "m.onnx") == SMALL  # ONNX metadata: a string
    assert contract_from_record({CONTRACT_KEY: SMALL.as_dict()}, "m.pt") == SMALL    # checkpoint, sidecar: a dict


def test_a_record_without_a_contract_gets_the_default_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="jetracer_trt.contract"):
        assert contract_from_record({"precision": "int8"}, "foreign.onnx") == DEFAULT
    (record,) = caplog.records
    assert "foreign.onnx carries no model contract" in record.getMessage() and "224x224" in record.getMessage()


@pytest.mark.parametrize("change, message", [
    ({"input_width": 0}, "not a positive integer"),
    ({"input_height": 1.5}, "not a positive integer"),
    ({"mean": [0.5, 0.5]}, "three finite numbers"),
    ({"std": [0.2, 0.0, 0.2]}, "must be positive"),
    ({"color_order": "BGR"}, "color_order 'BGR'"),
    ({"resize": "crop"}, "resize 'crop'"),
    ({"outputs": []}, "must not be empty"),
])
def test_an_invalid_contract_is_a_clear_error(change, message):
    with pytest.raises(JetracerError, match=f"contract of m.onnx is invalid: .*{message}"):
        ModelContract.from_dict({**DEFAULT.as_dict(), **change}, "m.onnx")


def test_missing_fields_and_bad_json_are_named():
    data = DEFAULT.as_dict()
    del data["std"], data["task"]
    with pytest.raises(JetracerError, match="contract of m.onnx lacks task, std"):
        ModelContract.from_dict(data, "m.onnx")
    with pytest.raises(JetracerError, match="not valid JSON"):
        contract_from_record({CONTRACT_KEY: "{not json"}, "m.onnx")


def test_a_model_of_another_task_is_refused():
    pose = DEFAULT.replace(task="pose", outputs=["nose_x", "nose_y"], output_meaning="keypoints")
    DEFAULT.require_task("road_following", "m.onnx")
    with pytest.raises(JetracerError, match="m.onnx is a pose model, and a road_following model is needed here"):
        pose.require_task("road_following", "m.onnx")


def test_preprocessing_follows_the_contract():
    frame = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = Preprocessor(SMALL)(frame)
    assert out.shape == (1, 3, 120, 160)
    small = resize(frame, SMALL.input_size, SMALL.resize)
    assert small.shape == (120, 160, 3) and resize(small, SMALL.input_size) is small  # the right size: untouched
    expected = ((small / 255.0 - np.array(SMALL.mean)) / np.array(SMALL.std)).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    scale, bias = normalization(SMALL)
    np.testing.assert_allclose(scale, 1 / (255 * np.array(SMALL.std)), rtol=1e-6)


# -- read back from every kind of file ----------------------------------------------------------------------------


def test_read_from_an_onnx_file(tmp_path):
    onnx = pytest.importorskip("onnx")
    from test_engine import tiny_model

    path = tiny_model(tmp_path / "m.onnx", contract=SMALL)
    assert read_contract(path) == SMALL
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(path))
    assert read_contract(path) == DEFAULT  # none recorded: the default


def test_read_from_a_package_and_a_sidecar(tmp_path):
    package = tmp_path / "m.fp16.cuda.pt2"
    with zipfile.ZipFile(package, "w") as archive:
        metadata = json.dumps({CONTRACT_KEY: SMALL.to_json()})
        archive.writestr("m/data/aotinductor/model/x.wrapper_metadata.json", metadata)
    assert read_contract(package) == SMALL
    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"plan")
    sidecars.write_sidecar(engine, {CONTRACT_KEY: SMALL.as_dict()})
    assert read_contract(engine) == SMALL


def test_read_from_checkpoints_new_old_and_bare(tmp_path, caplog):
    torch = pytest.importorskip("torch")
    from jetracer_trt.model import build_model, make_checkpoint, save_checkpoint

    model = build_model()
    save_checkpoint(make_checkpoint(model, half=True, contract=SMALL), tmp_path / "new.pt")
    assert read_contract(tmp_path / "new.pt") == SMALL
    old = {"format": "jetracer_trt.checkpoint", "architecture": "resnet18", "input_width": 160, "input_height": 120,
           "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1.0], "outputs": ["x", "y"], "state_dict": model.state_dict()}
    torch.save(old, tmp_path / "old.pt")  # written before checkpoints carried model_contract
    with caplog.at_level(logging.WARNING, logger="jetracer_trt"):
        assert read_contract(tmp_path / "old.pt") == SMALL
    assert not caplog.records  # the file says what it needs: no warning
    torch.save(model.state_dict(), tmp_path / "road_following_model.pth")  # a JetRacer notebook's
    with caplog.at_level(logging.WARNING, logger="jetracer_trt"):
        assert read_contract(tmp_path / "road_following_model.pth") == DEFAULT
    assert "road_following_model.pth carries no model contract" in caplog.text


def test_unknown_or_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(JetracerError, match="model file not found"):
        read_contract(tmp_path / "missing.onnx")
    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(JetracerError, match="no model file jetracer_trt knows"):
        read_contract(tmp_path / "m.tflite")
    (tmp_path / "bad.onnx").write_bytes(b"\xff\xff\xff")
    with pytest.raises(JetracerError, match="cannot read the metadata of"):
        read_contract(tmp_path / "bad.onnx")
