"""TensorRT and torch2trt: what runs without libnvinfer (refusals, install messages, request checks, the layer
report) runs everywhere; building and running real engines needs TensorRT and a CUDA GPU and is skipped without."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from jetracer_trt import convert as convert_pkg
from jetracer_trt.config import default_model_path
from jetracer_trt.contract import ModelContract
from jetracer_trt.convert import ConvertRequest, ensure_engine
from jetracer_trt.convert import tensorrt_build, torch2trt_build
from jetracer_trt.engines import create_engine
from jetracer_trt.engines import sidecar as sidecars
from jetracer_trt.engines.tensorrt_engine import TensorRTEngine, describe_layers, import_tensorrt
from jetracer_trt.engines.torch2trt_engine import Torch2TRTEngine, import_torch2trt
from jetracer_trt.errors import JetracerError

ONNX = default_model_path()
CHECKPOINT = ONNX.with_suffix(".pt")
HERE = {"trt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7"}
DEFAULT = ModelContract.default()


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Importing tensorrt fails, as on a machine without it; this machine's facts are HERE."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(sidecars, "current_platform", lambda: dict(HERE))


def fake_engine(tmp_path: Path, backend="tensorrt", name="road.fp16.engine", source=ONNX, **changes) -> Path:
    """An engine file (not a real plan) with a sidecar as a build on HERE from ``source`` would write it."""
    engine = tmp_path / name
    engine.write_bytes(b"not a real plan")
    fields = {"backend": backend, **HERE, "precision": "fp16", "max_batch": 1, "source": str(source),
              "model_contract": DEFAULT.as_dict(), "source_sha256": sidecars.source_hash(source),
              "artifact_sha256": sidecars.source_hash(engine), **changes}
    sidecars.write_sidecar(engine, fields)
    return engine


# -- what runs without TensorRT -----------------------------------------------------------------------------------
def test_missing_tensorrt_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(JetracerError) as exc:
        import_tensorrt()
    assert "JetPack" in str(exc.value) and "pip install tensorrt" in str(exc.value)
    out = tmp_path / "road.fp16.engine"
    with pytest.raises(JetracerError, match="pip install tensorrt"):
        tensorrt_build.convert(ConvertRequest(source=ONNX, out=out, precision="fp16"))
    assert list(tmp_path.iterdir()) == []


def test_missing_torch2trt_says_where_it_comes_from(monkeypatch, tmp_path, no_tensorrt):
    monkeypatch.setitem(sys.modules, "torch2trt", None)
    with pytest.raises(JetracerError, match="github.com/NVIDIA-AI-IOT/torch2trt"):
        import_torch2trt()
    out = tmp_path / "road.fp16.trt.pth"
    with pytest.raises(JetracerError, match="github.com/NVIDIA-AI-IOT/torch2trt"):
        torch2trt_build.convert(ConvertRequest(source=CHECKPOINT, out=out, precision="fp16"))
    assert list(tmp_path.iterdir()) == []
    engine = fake_engine(tmp_path, backend="torch2trt", name="road.fp16.trt.pth")  # a valid sidecar: gets that far
    with pytest.raises(JetracerError, match="torch2trt is not importable"):
        Torch2TRTEngine(engine)


@pytest.mark.parametrize("change, reason", [
    ({"gpu_name": "NVIDIA H100", "compute_capability": "9.0"}, "built for another GPU"),
    ({"trt_version": "11.4.0.106"}, "built with TensorRT 11.4.0.106"),
    ({"source_sha256": "0" * 64}, "built from another model"),
    ({"format_version": 99}, "format version 99"),
])
def test_mismatched_engine_is_refused_before_tensorrt_is_imported(tmp_path, no_tensorrt, change, reason):
    engine = fake_engine(tmp_path, **change)
    with pytest.raises(JetracerError) as exc:
        create_engine("tensorrt", engine, max_batch=1, source=ONNX, threads=2)  # threads: not a TensorRT option
    message = str(exc.value)
    assert message.startswith(f"refusing to load {engine}") and reason in message
    assert message.endswith(f"--out {engine} --force") and "jetracer-trt convert --backend tensorrt" in message


def test_engine_without_sidecar_or_too_small_is_refused(tmp_path, no_tensorrt):
    engine = fake_engine(tmp_path)
    with pytest.raises(JetracerError, match="batches of up to 1, and 4 were asked for.*--max-batch 4"):
        TensorRTEngine(engine, max_batch=4)
    sidecars.sidecar_path(engine).unlink()
    with pytest.raises(JetracerError, match="has no sidecar"):
        TensorRTEngine(engine)
    with pytest.raises(JetracerError, match="engine not found"):
        TensorRTEngine(tmp_path / "missing.engine")


def test_a_matching_sidecar_gets_past_the_checks_to_tensorrt(tmp_path, no_tensorrt):
    with pytest.raises(JetracerError, match="TensorRT's Python package is not importable"):
        TensorRTEngine(fake_engine(tmp_path), source=ONNX)


def test_convert_keeps_an_engine_without_force(tmp_path, no_tensorrt):
    engine = fake_engine(tmp_path)
    with pytest.raises(JetracerError, match="already exists; pass --force"):
        tensorrt_build.convert(ConvertRequest(source=ONNX, out=engine, precision="fp16"))
    assert engine.read_bytes() == b"not a real plan"


@pytest.mark.parametrize("module, changes, reason", [
    (tensorrt_build, {"precision": "fp8"}, "converts to fp32 or fp16 or int8, not fp8"),
    (tensorrt_build, {"source": CHECKPOINT}, "converts an ONNX model"),
    (tensorrt_build, {"source": Path("missing.onnx")}, "model file not found"),
    (tensorrt_build, {"max_batch": 0}, "positive integer"),
    (tensorrt_build, {"workspace_mb": 0}, "at least 1 MB"),
    (tensorrt_build, {"out": "{tmp}/file/x.engine"}, "is not a folder"),
    (torch2trt_build, {"source": ONNX}, "converts a PyTorch checkpoint"),
    (torch2trt_build, {"source": Path("missing.pt")}, "model file not found"),
])
def test_bad_requests_are_refused_before_anything_is_imported(tmp_path, no_tensorrt, module, changes, reason):
    (tmp_path / "file").write_text("a file, not a folder")
    if "out" in changes:
        changes = {**changes, "out": Path(changes["out"].format(tmp=tmp_path))}
    request = ConvertRequest(**{"source": ONNX if module is tensorrt_build else CHECKPOINT,
                                "out": tmp_path / "x.engine", "precision": "fp32", **changes})
    with pytest.raises(JetracerError, match=reason):
        module.convert(request)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_layer_report_reads_tensorrt_10_and_11_inspector_json():
    trt10 = {"Layers": [
        {"Name": "conv1 + relu", "LayerType": "CaskConvolution",
         "Outputs": [{"Name": "a", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
        {"Name": "fc", "LayerType": "CaskGemm",
         "Outputs": [{"Name": "target", "Format/Datatype": "Row major linear FP32 format"}]},
        {"Name": "quant", "LayerType": "Reformat",
         "Outputs": [{"Name": "q", "Format/Datatype": "Four wide channel vectorized row major Int8 format"}]},
    ]}
    lines = describe_layers(json.dumps(trt10))
    assert lines[0] == "3 layers; by output precision: FP16 1, FP32 1, INT8 1"
    assert lines[1:] == ["conv1 + relu [CaskConvolution]: FP16", "fc [CaskGemm]: FP32", "quant [Reformat]: INT8"]
    trt11 = {"Layers": [
        {"Name": "conv1", "LayerType": "CaskConvolution", "Outputs": [{"DataType": "Half"}]},
        {"Name": "head", "LayerType": "CaskGemm", "Outputs": [{"DataType": "Float"}, {"DataType": "Half"}]}]}
    assert describe_layers(json.dumps(trt11)) == ["2 layers; by output precision: FP16 1, FP32 + FP16 1",
                                                  "conv1 [CaskConvolution]: FP16", "head [CaskGemm]: FP32 + FP16"]
    names_only = describe_layers(json.dumps({"Layers": ["conv1", "fc"]}))
    assert names_only[1] == "conv1: precision not recorded (build with --verbose)"
    assert describe_layers("not json") == ["the engine inspector gave no readable layer information"]


def test_parser_errors_name_the_node():
    class Error:
        def __init__(self, node, name, op):
            self._node, self._name, self._op = node, name, op

        def node(self):
            return self._node

        def node_name(self):
            return self._name

        def node_operator(self):
            return self._op

        def desc(self):
            return "unsupported"

    assert tensorrt_build.parser_error_text(Error(3, "/fc/Gemm", "Gemm")) == "/fc/Gemm (Gemm): unsupported"
    assert tensorrt_build.parser_error_text(Error(3, "", "Gemm")) == "node 3 (Gemm): unsupported"
    assert tensorrt_build.parser_error_text(Error(-1, "", "")) == "the model: unsupported"


def test_calibration_dataset_has_the_torch2trt_shape():
    dataset = torch2trt_build.CalibrationDataset(np.zeros((5, 224, 224, 3), np.uint8), DEFAULT)
    assert len(dataset) == 5
    with pytest.raises(IndexError):
        dataset[5]


# -- a stand-in TensorRT on a CUDA GPU ---------------------------------------------------------------------------------
# Where PyTorch has a GPU but TensorRT is not installed, this module plays the parts of the TensorRT Python API that
# jetracer_trt uses (the names themselves are checked against the real bindings elsewhere). Its "plan" is a small
# JSON; its execution context computes the tiny model of test_engine.py (the mean of channels 0 and 1 over the
# pixels) from the raw device addresses it is given, on the stream it is given, as TensorRT would. So the engine's
# buffers, contexts, CUDA graphs, copies and synchronisation, and convert's flow around the builder, run for real.
class _Members:
    def __init__(self, **members):
        self.__dict__.update(members)


class _DeviceArray:
    """Raw device memory as a tensor (the CUDA array interface), the way TensorRT sees the addresses it gets."""

    def __init__(self, address, shape, dtype):
        self.__cuda_array_interface__ = {"data": (address, False), "shape": tuple(shape), "version": 2,
                                         "typestr": {"FLOAT": "<f4", "HALF": "<f2"}[dtype]}


# what each output tensor of a stand-in plan computes from the (N, 3, 224, 224) input: ``target`` is the tiny model
# of test_engine.py, ``means`` the same under another name and ``pooled`` a (3, 2, 2) average pool: with both, a
# plan of two output tensors of different shapes, as a pose model's cmap and paf are
_STAND_IN_OUTPUTS = {
    "target": ((2,), lambda image: image[:, :2].float().mean(dim=(2, 3))),
    "means": ((2,), lambda image: image[:, :2].float().mean(dim=(2, 3))),
    "pooled": ((3, 2, 2), lambda image: __import__("torch").nn.functional.avg_pool2d(image.float(), 112)),
}


def _plan_outputs(plan):
    """The output tensor names of a stand-in plan, in the order the engine lists them."""
    return plan.get("outputs", ["target"])


class _Context:
    def __init__(self, plan):
        self.plan, self.addresses, self.batch, self.views = plan, {}, None, None

    def set_input_shape(self, name, shape):
        assert name == "image" and tuple(shape[1:]) == (3, 224, 224) and 1 <= shape[0] <= self.plan["max_batch"]
        self.batch = shape[0]
        return True

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle):
        import torch

        assert stream_handle == torch.cuda.current_stream().cuda_stream != torch.cuda.default_stream().cuda_stream
        if self.views is None:  # made at the first (regular) run, before any capture
            tensors = [("image", (3, 224, 224), "input_dtype")]
            tensors += [(name, _STAND_IN_OUTPUTS[name][0], "output_dtype") for name in _plan_outputs(self.plan)]
            self.views = {name: torch.as_tensor(_DeviceArray(self.addresses[name], (self.batch, *shape),
                                                             self.plan[dtype]), device="cuda")
                          for name, shape, dtype in tensors}
        image = self.views["image"]
        for name in _plan_outputs(self.plan):
            self.views[name].copy_(_STAND_IN_OUTPUTS[name][1](image).reshape(self.views[name].shape))
        return True


class _Engine:
    def __init__(self, plan):
        self.plan, self.names = plan, ["image", *_plan_outputs(plan)]
        self.num_io_tensors = len(self.names)

    def get_tensor_name(self, index):
        return self.names[index]

    def get_tensor_mode(self, name):
        return "INPUT" if name == "image" else "OUTPUT"

    def get_tensor_shape(self, name):
        return (-1, 3, 224, 224) if name == "image" else (-1, *_STAND_IN_OUTPUTS[name][0])

    def get_tensor_dtype(self, name):
        return self.plan["input_dtype" if name == "image" else "output_dtype"]

    def get_tensor_profile_shape(self, name, profile):
        return [(1, 3, 224, 224), (1, 3, 224, 224), (self.plan["max_batch"], 3, 224, 224)]

    def create_execution_context(self):
        return _Context(self.plan)

    def create_engine_inspector(self):
        layer = {"Name": "mean", "LayerType": "Reduce", "Outputs": [{"DataType": "Float"}]}
        return _Members(get_engine_information=lambda fmt: json.dumps({"Layers": [layer]}))


class _Config:
    def __init__(self, calls):
        self.calls, self.flags, self.profiles, self.profiling_verbosity = calls, {"TF32"}, [], None

    def set_memory_pool_limit(self, pool, size):
        self.calls["workspace"] = (pool, size)

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile.shapes)
        return 0

    def create_timing_cache(self, data):
        self.calls.setdefault("timing_cache_loaded", []).append(bytes(data))
        return _Members(serialize=lambda: bytes(data) + b"+")

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


class _Builder:
    def __init__(self, calls):
        self.calls = calls

    def create_network(self, flags=0):
        self.calls["network_flags"] = flags
        image = _Members(name="image", shape=(-1, 3, 224, 224))
        return _Members(num_inputs=1, num_outputs=1, get_input=lambda i: image)

    def create_builder_config(self):
        return _Config(self.calls)

    def create_optimization_profile(self):
        profile = _Members(shapes={})
        profile.set_shape = lambda name, *shapes: profile.shapes.update({name: [tuple(s) for s in shapes]})
        return profile

    def build_serialized_network(self, network, config):
        self.calls.update(flags=set(config.flags), profiles=config.profiles, verbosity=config.profiling_verbosity)
        max_batch = config.profiles[0]["image"][2][0]
        return json.dumps({"input_dtype": "FLOAT", "output_dtype": "FLOAT", "max_batch": max_batch}).encode()


def stand_in_tensorrt(version="10.3.0", fp16_flag=True):
    """A ``tensorrt`` module of the stand-in; ``calls`` records what the builder was told."""
    import types

    trt = types.ModuleType("tensorrt")
    calls = {}
    trt.__version__, trt.calls = version, calls
    trt.DataType = _Members(FLOAT="FLOAT", HALF="HALF")
    trt.TensorIOMode = _Members(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.LayerInformationFormat = _Members(JSON="JSON")
    trt.MemoryPoolType = _Members(WORKSPACE="WORKSPACE")
    trt.ProfilingVerbosity = _Members(DETAILED="DETAILED")
    trt.NetworkDefinitionCreationFlag = _Members(STRONGLY_TYPED=2)
    trt.BuilderFlag = _Members(TF32="TF32", **({"FP16": "FP16", "INT8": "INT8"} if fp16_flag else {}))
    trt.Logger = type("Logger", (), {"WARNING": 2, "INFO": 3, "__init__": lambda self, severity=2: None})
    trt.Runtime = lambda logger: _Members(deserialize_cuda_engine=lambda data: _Engine(json.loads(bytes(data))))
    trt.Builder = lambda logger: _Builder(calls)
    trt.OnnxParser = lambda network, logger: _Members(parse_from_file=lambda path: calls.update(parsed=path) or True,
                                                      num_errors=0)
    return trt


needs_cuda = pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def tiny_onnx(tmp_path):
    from test_engine import tiny_model

    return tiny_model(tmp_path / "tiny.onnx", contract=DEFAULT)


def tiny_reference(frames):
    from jetracer_trt.preprocess import Preprocessor

    pre = Preprocessor(DEFAULT)
    return np.stack([pre(f)[0].mean(axis=(1, 2))[:2] for f in frames])


# a model of two output tensors (the shape of a pose model's cmap and paf, with the stand-in's small ones)
TWO_TENSORS = DEFAULT.replace(outputs=["means", "pooled"], output_name="",
                              output_shapes={"means": [2], "pooled": [3, 2, 2]})


def two_tensor_reference(frames):
    from jetracer_trt.preprocess import Preprocessor

    staged = Preprocessor(TWO_TENSORS).batch(frames)
    return {"means": staged[:, :2].mean(axis=(2, 3)),
            "pooled": staged.reshape(len(frames), 3, 2, 112, 2, 112).mean(axis=(3, 5))}


def stand_in_plan(tmp_path, name, contract, outputs=None, dtype="FLOAT", max_batch=4):
    plan = tmp_path / name
    fields = {"input_dtype": dtype, "output_dtype": dtype, "max_batch": max_batch}
    plan.write_bytes(json.dumps({**fields, **({"outputs": outputs} if outputs else {})}).encode())
    sidecars.write_sidecar(plan, {"backend": "tensorrt", **sidecars.current_platform(), "precision": "fp16",
                                  "max_batch": max_batch, "source": "tiny.onnx", "source_sha256": "-",
                                  "model_contract": contract.as_dict(), "artifact_sha256": sidecars.source_hash(plan)})
    return plan


@needs_cuda
@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("dtype, tolerance", [("FLOAT", 1e-5), ("HALF", 2e-3)])
def test_engine_buffers_streams_and_graphs_with_a_stand_in(tmp_path, monkeypatch, graphs, dtype, tolerance):
    monkeypatch.setitem(sys.modules, "tensorrt", stand_in_tensorrt())
    plan = stand_in_plan(tmp_path, "tiny.engine", DEFAULT, dtype=dtype)
    frames = np.random.default_rng(0).integers(0, 256, (6, 224, 224, 3), dtype=np.uint8)
    expected = tiny_reference(frames)
    with TensorRTEngine(plan, max_batch=4, cuda_graphs=graphs) as engine:
        engine.warmup()
        assert engine.precision == "fp16" and engine.device.startswith("cuda:")
        for frame, want in zip(frames, expected, strict=True):  # a new frame each call: a stale graph input would show
            out = engine.infer(frame)
            assert out.dtype == np.float32
            np.testing.assert_allclose(out, want, atol=tolerance)
        np.testing.assert_allclose(engine.infer_batch(frames[:3]), expected[:3], atol=tolerance)
        np.testing.assert_allclose(engine.infer_batch(frames[2:6]), expected[2:6], atol=tolerance)
        np.testing.assert_allclose(engine.run_model(4), expected[2:6], atol=tolerance)  # staged frames, model only
        assert sorted(engine._runs) == [1, 3, 4]
        from test_torch_engine import check_staging_is_the_whole_preprocessing

        check_staging_is_the_whole_preprocessing(engine, frames)
        assert all((graph is not None) == graphs for _, graph in engine._runs.values())


@needs_cuda
@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("dtype, tolerance", [("FLOAT", 1e-5), ("HALF", 2e-3)])
def test_two_output_tensors_get_a_buffer_each_by_name(tmp_path, monkeypatch, graphs, dtype, tolerance):
    monkeypatch.setitem(sys.modules, "tensorrt", stand_in_tensorrt())
    plan = stand_in_plan(tmp_path, "two.engine", TWO_TENSORS, outputs=["pooled", "means"], dtype=dtype)  # not in
    frames = np.random.default_rng(2).integers(0, 256, (6, 224, 224, 3), dtype=np.uint8)   # the contract's order
    expected = two_tensor_reference(frames)
    with TensorRTEngine(plan, max_batch=4, cuda_graphs=graphs) as engine:
        engine.warmup()
        for i, frame in enumerate(frames):  # a new frame each call: a stale graph input would show
            out = engine.infer_tensors(frame)
            assert list(out) == ["means", "pooled"] and out["pooled"].shape == (3, 2, 2)
            assert all(value.dtype == np.float32 for value in out.values())
            for name in out:
                np.testing.assert_allclose(out[name], expected[name][i], atol=tolerance)
        batch = engine.infer_batch_tensors(frames[2:6])
        again = engine.run_model(4)  # the staged frames, model only
        for name in expected:
            np.testing.assert_allclose(batch[name], expected[name][2:6], atol=tolerance)
            np.testing.assert_allclose(again[name], expected[name][2:6], atol=tolerance)
        with pytest.raises(JetracerError, match="2 output tensors .means, pooled.: use infer_tensors"):
            engine.infer(frames[0])
    wrong = stand_in_plan(tmp_path, "wrong.engine", TWO_TENSORS, outputs=["pooled", "target"])
    with pytest.raises(JetracerError, match=r"gives outputs .*expected means \[N, 2\], pooled \[N, 3, 2, 2\]"):
        TensorRTEngine(wrong, max_batch=4)


@needs_cuda
def test_convert_flow_with_a_stand_in_builder(tmp_path, monkeypatch, tiny_onnx):
    trt = stand_in_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    out = tmp_path / "tiny.fp32.engine"
    request = ConvertRequest(source=tiny_onnx, out=out, precision="fp32", max_batch=2, verify_frames=16,
                             workspace_mb=256, verbose=True)
    result = tensorrt_build.convert(request)
    assert result.comparison.ok and result.comparison.frames == 16
    assert result.files == [out, sidecars.sidecar_path(out), tmp_path / tensorrt_build.TIMING_CACHE_NAME]
    assert "1 layers; by output precision: FP32 1" in result.notes
    calls = trt.calls
    assert calls["parsed"] == str(tiny_onnx) and calls["network_flags"] == 0
    assert calls["workspace"] == ("WORKSPACE", 256 << 20) and "TF32" not in calls["flags"]
    assert calls["profiles"] == [{"image": [(1, 3, 224, 224), (1, 3, 224, 224), (2, 3, 224, 224)]}]
    assert calls["verbosity"] == "DETAILED" and calls["timing_cache_loaded"] == [b""]
    side = sidecars.read_sidecar(out)
    assert side["verification"]["ok"] and side["max_batch"] == 2 and side["model_contract"] == DEFAULT.as_dict()
    assert side["source_sha256"] == sidecars.source_hash(tiny_onnx) and side["builder"]["workspace_mb"] == 256
    assert sorted(p.name for p in tmp_path.iterdir()) == [tensorrt_build.TIMING_CACHE_NAME, "tiny.fp32.engine",
                                                          "tiny.fp32.engine.json", "tiny.onnx"]
    with pytest.raises(JetracerError, match="already exists; pass --force"):
        tensorrt_build.convert(request)
    tensorrt_build.convert(ConvertRequest(**{**request.__dict__, "precision": "fp16", "force": True}))
    assert calls["timing_cache_loaded"] == [b"", b"+"]  # the cache the first build wrote is reused
    assert "FP16" in calls["flags"] and "TF32" in calls["flags"] and calls["network_flags"] == 0
    assert sidecars.read_sidecar(out)["precision"] == "fp16"


@needs_cuda
def test_int8_builds_strongly_typed_from_the_qdq_model(tmp_path, monkeypatch, tiny_onnx):
    import types

    trt = stand_in_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    qdq = types.ModuleType("jetracer_trt.convert.qdq")
    seen = {}

    def make_qdq_onnx(source_onnx, frames, contract, out):
        seen.update(source=source_onnx, frames=frames.shape, dtype=frames.dtype)
        out.write_bytes(Path(source_onnx).read_bytes())  # the stand-in computes the same either way
        return out

    qdq.make_qdq_onnx = make_qdq_onnx
    monkeypatch.setitem(sys.modules, "jetracer_trt.convert.qdq", qdq)
    out = tmp_path / "tiny.int8.engine"
    result = tensorrt_build.convert(ConvertRequest(source=tiny_onnx, out=out, precision="int8", verify_frames=16,
                                                   calib_frames=24))
    assert result.comparison.ok and seen == {"source": tiny_onnx, "frames": (24, 224, 224, 3), "dtype": np.uint8}
    assert trt.calls["network_flags"] == 1 << 2 and trt.calls["parsed"].endswith("qdq.onnx")
    assert sidecars.read_sidecar(out)["calibration"] == {"calib_dir": None, "calib_frames": 24}


def test_fp16_on_tensorrt_11_needs_modelopt_autocast(tmp_path, monkeypatch, tiny_onnx):
    monkeypatch.setitem(sys.modules, "tensorrt", stand_in_tensorrt(version="11.4.0", fp16_flag=False))
    for name in ("modelopt", "modelopt.onnx", "modelopt.onnx.autocast"):  # also when an earlier test imported it
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(sidecars, "current_platform", lambda: dict(HERE))
    request = ConvertRequest(source=tiny_onnx, out=tmp_path / "tiny.fp16.engine", precision="fp16", verify_frames=16)
    with pytest.raises(JetracerError, match=r"TensorRT 11 builds FP16 engines only from an FP16 ONNX.*\[quantize\]"):
        tensorrt_build.convert(request)
    assert not request.out.exists()


def stand_in_torch2trt(monkeypatch, tmp_path, forward, contract, output_names):
    """A torch2trt whose ``TRTModule`` runs ``forward`` (on the stand-in TensorRT), and a saved module of it for
    ``contract`` with ``output_names``, its sidecar beside it; returns the module's file."""
    import types

    import torch

    class TRTModule:
        def load_state_dict(self, state):
            self.engine = state["engine"]
            self.input_names, self.output_names = state["input_names"], state["output_names"]

        def __call__(self, x):
            assert torch.cuda.current_stream() != torch.cuda.default_stream()
            return forward(x)

    monkeypatch.setitem(sys.modules, "tensorrt", stand_in_tensorrt())
    monkeypatch.setitem(sys.modules, "torch2trt", types.SimpleNamespace(TRTModule=TRTModule))
    path = tmp_path / "tiny.fp32.trt.pth"
    torch.save({"engine": bytearray(b"plan"), "input_names": ["image"], "output_names": output_names}, path)
    sidecars.write_sidecar(path, {"backend": "torch2trt", **sidecars.current_platform(), "precision": "fp32",
                                  "max_batch": 2, "source": "tiny.pt", "source_sha256": "-",
                                  "model_contract": contract.as_dict(), "artifact_sha256": sidecars.source_hash(path)})
    return path


@needs_cuda
def test_torch2trt_engine_streams_and_copies_with_a_stand_in(tmp_path, monkeypatch):
    path = stand_in_torch2trt(monkeypatch, tmp_path, _STAND_IN_OUTPUTS["target"][1], DEFAULT, ["target"])
    frames = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    with create_engine("torch2trt", path, max_batch=2) as engine:
        np.testing.assert_allclose(engine.infer_batch(frames), tiny_reference(frames), atol=1e-5)
        np.testing.assert_allclose(engine.infer(frames[1]), tiny_reference(frames)[1], atol=1e-5)


@needs_cuda
def test_torch2trt_engine_matches_two_outputs_by_name(tmp_path, monkeypatch):
    def forward(x):  # in the order of its output_names, not the contract's
        return _STAND_IN_OUTPUTS["pooled"][1](x), _STAND_IN_OUTPUTS["means"][1](x)

    path = stand_in_torch2trt(monkeypatch, tmp_path, forward, TWO_TENSORS, ["pooled", "means"])
    frames = np.random.default_rng(3).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    expected = two_tensor_reference(frames)
    with create_engine("torch2trt", path, max_batch=2) as engine:
        out = engine.infer_batch_tensors(frames)
        for name in expected:
            np.testing.assert_allclose(out[name], expected[name], atol=1e-5)


# -- ensure_engine: build when missing or stale (the inference node's build_engine) ---------------------------------
@pytest.fixture
def gpu_machine(monkeypatch, tmp_path):
    """A machine with an NVIDIA GPU and TensorRT (this machine's facts are HERE) and a model in ``tmp_path``; every
    conversion asked for is recorded instead of run. Returns (model, requests)."""
    from jetracer_trt.engines import select

    monkeypatch.setattr(select, "has_nvidia_gpu", lambda: True)
    monkeypatch.setattr(sidecars, "current_platform", lambda: dict(HERE))
    requests = []

    def fake_convert(backend, request, via=None):
        requests.append((backend, request))
        return convert_pkg.ConvertResult(request.out, backend, request.precision, _passing(), 1.0)

    monkeypatch.setattr(convert_pkg, "convert", fake_convert)
    model = tmp_path / "road.onnx"
    model.write_bytes(b"the fp32 model")
    return model, requests


def _passing():
    from jetracer_trt.verify import compare

    return compare(np.zeros((4, 2)), np.zeros((4, 2)), "fp16", DEFAULT.outputs)


def test_ensure_engine_uses_an_engine_that_is_up_to_date(gpu_machine, tmp_path):
    model, requests = gpu_machine
    engine = fake_engine(tmp_path, source=model)
    status = ensure_engine(model, "fp16")
    assert (status.path, status.built, requests) == (engine, False, [])
    assert "road.fp16.engine is up to date" in status.reason


def test_ensure_engine_builds_a_missing_engine_beside_the_model(gpu_machine, tmp_path):
    model, requests = gpu_machine
    status = ensure_engine(model, "fp16", max_batch=2)
    ((backend, request),) = requests
    assert backend == "tensorrt" and request.out == tmp_path / "road.fp16.engine" and not request.force
    assert (request.source, request.precision, request.max_batch) == (model, "fp16", 2)
    assert status.built and status.path == tmp_path / "road.fp16.engine" and "because it is missing" in status.reason


@pytest.mark.parametrize("change, why", [({"trt_version": "11.4.0"}, "built with TensorRT 11.4.0"),
                                         ({"source_sha256": "0" * 64}, "built from another model")])
def test_ensure_engine_rebuilds_a_stale_engine(gpu_machine, tmp_path, change, why):
    model, requests = gpu_machine
    fake_engine(tmp_path, source=model, **change)
    status = ensure_engine(model, "fp16")
    ((_, request),) = requests
    assert request.force and status.built and why in status.reason  # replacing our own stale engine is the point


def test_ensure_engine_leaves_a_file_it_did_not_write_alone(gpu_machine, tmp_path):
    model, requests = gpu_machine
    (tmp_path / "road.fp16.engine").write_bytes(b"someone's plan, no sidecar")
    status = ensure_engine(model, "fp16")
    assert status.path is None and requests == [] and "without a sidecar" in status.reason
    assert (tmp_path / "road.fp16.engine").read_bytes() == b"someone's plan, no sidecar"


def test_ensure_engine_says_why_it_cannot_build(gpu_machine, monkeypatch):
    from jetracer_trt.engines import select

    model, requests = gpu_machine

    def failing(backend, request, via=None):
        raise JetracerError("TensorRT's ONNX parser rejected road.onnx")

    monkeypatch.setattr(convert_pkg, "convert", failing)
    status = ensure_engine(model, "fp16")
    assert status.path is None and "building road.fp16.engine failed: TensorRT's ONNX parser" in status.reason
    monkeypatch.setattr(sidecars, "current_platform", _no_tensorrt)
    status = ensure_engine(model, "fp16")
    assert status.path is None and "cannot build a TensorRT engine here: TensorRT's Python package" in status.reason
    monkeypatch.setattr(select, "has_nvidia_gpu", lambda: False)
    status = ensure_engine(model, "fp16")
    assert status.path is None and "no NVIDIA GPU" in status.reason


def _no_tensorrt():
    raise JetracerError("TensorRT's Python package is not importable (No module named 'tensorrt'); "
                        + sidecars.TENSORRT_INSTALL_HINT)


@needs_cuda
def test_ensure_engine_builds_verifies_and_then_reuses_with_a_stand_in(tmp_path, monkeypatch, tiny_onnx):
    monkeypatch.setitem(sys.modules, "tensorrt", stand_in_tensorrt())
    first = ensure_engine(tiny_onnx, "fp32")
    assert first.built and first.path == tmp_path / "tiny.fp32.engine"
    assert sidecars.read_sidecar(first.path)["verification"]["ok"]
    again = ensure_engine(tiny_onnx, "fp32")
    assert (again.path, again.built) == (first.path, False)
    with create_engine("auto", tiny_onnx) as engine:  # backend auto now takes it
        assert engine.name == "tensorrt" and engine.model_path == first.path


# -- real engines: TensorRT and a CUDA GPU --------------------------------------------------------------------------
def needs_gpu_tensorrt():
    pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")


@pytest.fixture(scope="module")
def fp32_engine(tmp_path_factory):
    """A verified FP32 engine of the shipped model for batches of 1 to 2, built with --verbose."""
    needs_gpu_tensorrt()
    out = tmp_path_factory.mktemp("trt") / "road.fp32.engine"
    result = tensorrt_build.convert(ConvertRequest(source=ONNX, out=out, precision="fp32", max_batch=2,
                                                   verify_frames=32, verbose=True))
    return result


def test_fp32_engine_matches_the_source_and_lists_its_layers(fp32_engine):
    result = fp32_engine
    assert result.comparison.ok and result.comparison.precision == "fp32"
    assert result.path.is_file() and sidecars.read_sidecar(result.path)["verification"]["ok"]
    assert any("layers; by output precision: FP32" in note for note in result.notes)
    assert (result.path.parent / tensorrt_build.TIMING_CACHE_NAME).is_file()


def test_engine_runs_batches_with_and_without_cuda_graphs(fp32_engine):
    from jetracer_trt.verify import compare, reference_outputs, verification_frames

    frames = verification_frames(None, 16)
    reference = reference_outputs(ONNX, frames)
    for graphs in (True, False):
        with create_engine("tensorrt", fp32_engine.path, max_batch=2, cuda_graphs=graphs, source=ONNX) as engine:
            engine.warmup()
            single = np.stack([engine.infer(f).copy() for f in frames])
            assert compare(reference, single, "fp32").ok
            pairs = np.concatenate([engine.infer_batch(frames[i:i + 2]).copy() for i in range(0, 16, 2)])
            assert compare(reference, pairs, "fp32").ok


def test_real_engine_with_a_mismatched_sidecar_is_refused(fp32_engine, tmp_path):
    import shutil

    engine = tmp_path / "copy.engine"
    shutil.copy(fp32_engine.path, engine)
    data = sidecars.read_sidecar(fp32_engine.path)
    sidecars.write_sidecar(engine, {**data, "gpu_name": "Some Other GPU"})
    with pytest.raises(JetracerError, match="built for another GPU"):
        TensorRTEngine(engine)
    with pytest.raises(JetracerError, match="already exists; pass --force"):
        tensorrt_build.convert(ConvertRequest(source=ONNX, out=fp32_engine.path, precision="fp32"))


def test_fp16_engine_matches_the_source(tmp_path):
    needs_gpu_tensorrt()
    result = tensorrt_build.convert(ConvertRequest(source=ONNX, out=tmp_path / "road.fp16.engine", precision="fp16",
                                                   verify_frames=32))
    assert result.comparison.ok
    with create_engine("tensorrt", result.path, source=ONNX) as engine:
        assert engine.precision == "fp16" and engine.infer(np.zeros((224, 224, 3), np.uint8)).shape == (2,)


def test_torch2trt_fp16_module_matches_the_checkpoint(tmp_path):
    needs_gpu_tensorrt()
    pytest.importorskip("torch2trt")
    result = torch2trt_build.convert(ConvertRequest(source=CHECKPOINT, out=tmp_path / "road.fp16.trt.pth",
                                                    precision="fp16", verify_frames=32))
    assert result.comparison.ok
    with create_engine("torch2trt", result.path, source=CHECKPOINT) as engine:
        assert engine.precision == "fp16" and engine.infer(np.zeros((224, 224, 3), np.uint8)).shape == (2,)
