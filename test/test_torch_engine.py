"""The torch backend (CPU eager FP32; CUDA FP16, CUDA graphs, AOTInductor), its GPU frame stager and
``convert --backend torch``. CUDA tests skip without a GPU."""
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jetracer_trt import verify  # noqa: E402
from jetracer_trt.contract import ModelContract  # noqa: E402
from jetracer_trt.convert import ConvertRequest  # noqa: E402
from jetracer_trt.convert import torch_aot  # noqa: E402
from jetracer_trt.engines import create_engine  # noqa: E402
from jetracer_trt.engines.cuda_stage import CudaFrameStager  # noqa: E402
from jetracer_trt.engines.torch_engine import TorchEngine  # noqa: E402
from jetracer_trt.errors import JetracerError  # noqa: E402
from jetracer_trt.preprocess import Preprocessor  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"
CHECKPOINT = MODELS / "road_following.pt"
ONNX_MODEL = MODELS / "road_following.onnx"
DEFAULT = ModelContract.default()
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def frames():
    return verify.verification_frames(None, 16)


@pytest.fixture(scope="module")
def cpu_engine():
    with TorchEngine(CHECKPOINT, max_batch=4, device="cpu") as engine:
        yield engine


@pytest.fixture(scope="module")
def reference(frames):
    """ONNX Runtime FP32 on the shipped ONNX model: the reference every torch path is held to."""
    with create_engine("onnxruntime", ONNX_MODEL, max_batch=4, providers=["CPUExecutionProvider"]) as engine:
        return verify.engine_outputs(engine, frames)


# -- CPU: PyTorch eager FP32 ---------------------------------------------------------------------------------------


def check_staging_is_the_whole_preprocessing(engine, frames):
    """After the staging step alone the model's input holds the contract's preprocessing of the new frames, and the
    model step (``run_model``) computes on them: the work ``model only`` times is the same on every backend."""
    engine.infer_batch(frames[:2])
    engine.preprocess.stage(frames[2:4], 2)
    expected = Preprocessor(engine.contract, max_batch=2)
    expected.stage(frames[2:4], 2)
    np.testing.assert_allclose(engine.staged_input(2), expected.output, rtol=0,
                               atol=2e-3 if engine.precision == "fp16" else 1e-6)
    np.testing.assert_allclose(engine.run_model(2), engine.infer_batch(frames[2:4]), rtol=0, atol=1e-6)


def test_cpu_staging_is_the_whole_preprocessing(cpu_engine, frames):
    check_staging_is_the_whole_preprocessing(cpu_engine, frames)


def test_a_jetracer_notebook_state_dict_drives_through_backend_auto(tmp_path, caplog):
    import logging

    import torchvision

    from jetracer_trt.sim import SimWorld

    notebook = torchvision.models.resnet18(weights=None)
    notebook.fc = torch.nn.Linear(512, 2)  # what the JetRacer road-following notebook trains and saves
    path = tmp_path / "road_following_model.pth"
    torch.save(notebook.state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="jetracer_trt"):
        engine = create_engine("auto", path, task="road_following", threads=1)
    assert engine.name == "torch" and engine.contract == DEFAULT
    assert "road_following_model.pth carries no model contract" in caplog.text
    world = SimWorld(1001)
    for _ in range(3):
        x, y = engine.infer(world.observe())
        world.step(float(np.clip(x, -1, 1)), 0.3)
    assert world.stats.frames >= 3


def test_cpu_eager_fp32_agrees_with_onnxruntime(cpu_engine, frames, reference):
    assert cpu_engine.describe() == "torch fp32 on cpu"
    out = verify.engine_outputs(cpu_engine, frames)
    assert np.abs(out - reference).max() <= 1e-4
    assert np.abs(reference).max() > 0.05  # the frames make the model say something: agreement is not trivial


def test_infer_batch_equals_per_frame_infer(cpu_engine, frames):
    batch = cpu_engine.infer_batch(frames[:4]).copy()
    single = np.stack([cpu_engine.infer(f).copy() for f in frames[:4]])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    assert not np.allclose(batch[0], batch[1])  # different frames, different outputs


def _check_run_model_reruns_the_last_staged_frames(engine, frames):
    """run_model(2) after restaging slot 0 alone gives slot 0's new frame and slot 1's old one, both at batch 2
    (outputs are compared at one batch size: GPU kernels may round differently at another)."""
    first = engine.infer_batch(frames[:2]).copy()
    second = engine.infer_batch(frames[2:4]).copy()
    engine.infer(frames[0])  # restages slot 0 only
    again = engine.run_model(2).copy()
    np.testing.assert_allclose(again[0], first[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(again[1], second[1], rtol=0, atol=1e-6)
    assert np.abs(first - second).max() > 1e-3 and engine.last_model_ms > 0


def test_run_model_reruns_the_last_staged_frames(cpu_engine, frames):
    _check_run_model_reruns_the_last_staged_frames(cpu_engine, frames)


def test_output_buffer_is_reused(cpu_engine, frames):
    a = cpu_engine.infer(frames[0])
    b = cpu_engine.infer(frames[1])
    assert np.shares_memory(a, b)


def test_create_engine_routes_to_torch(frames):
    with create_engine("torch", CHECKPOINT, device="cpu", threads=1, spin=False) as engine:  # spin: not torch's
        assert isinstance(engine, TorchEngine) and engine.precision == "fp32" and engine.device == "cpu"


@pytest.mark.parametrize("options, message", [
    ({"device": "cpu", "precision": "fp16"}, "FP16 only on a CUDA GPU"),
    ({"precision": "int8"}, "onnxruntime.*tensorrt"),
    ({"precision": "fp8"}, "unknown precision"),
    ({"device": "tpu"}, "unknown device|cpu or cuda"),
])
def test_unsupported_options_are_clear_errors(options, message):
    with pytest.raises(JetracerError, match=message):
        TorchEngine(CHECKPOINT, **options)


def test_missing_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(JetracerError, match="not found"):
        TorchEngine(tmp_path / "missing.pt", device="cpu")
    with pytest.raises(JetracerError, match=r"checkpoint.*or an AOTInductor package"):
        TorchEngine(ONNX_MODEL, device="cpu")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(JetracerError, match="not a readable PyTorch checkpoint"):
        TorchEngine(tmp_path / "bad.pt", device="cpu")
    (tmp_path / "bad.pt2").write_bytes(b"not a package")
    with pytest.raises(JetracerError, match="cannot load AOTInductor package"):
        TorchEngine(tmp_path / "bad.pt2", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(JetracerError, match="no CUDA GPU"):
        TorchEngine(CHECKPOINT, device="cuda")


# -- the frame stager ----------------------------------------------------------------------------------------------


def _mixed_frames_and_reference():
    """Three frames (one of another size, resized) and what the CPU Preprocessor makes of them."""
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(2)]
    frames.append(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    pre = Preprocessor(DEFAULT, max_batch=4)
    for i, frame in enumerate(frames):
        pre.write(frame, i)
    return frames, pre


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda_only)])
def test_stager_arithmetic_equals_preprocessor(device):
    frames, pre = _mixed_frames_and_reference()
    stager = CudaFrameStager(DEFAULT, 4, dtype=torch.float32, device=device)
    stager.load(frames, 3)
    out = stager.upload(3)
    assert out.data_ptr() == stager.input.data_ptr() and out.shape == (3, 3, 224, 224)
    np.testing.assert_allclose(stager.input[:3].cpu().numpy(), pre.output[:3], rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda_only)])
def test_stager_fp16_channels_last_is_the_fp32_result_rounded_once(device):
    frames, pre = _mixed_frames_and_reference()
    stager = CudaFrameStager(DEFAULT, 4, dtype=torch.float16, device=device, channels_last=True)
    assert stager.input.is_contiguous(memory_format=torch.channels_last)
    assert stager.host.is_pinned() == (device == "cuda")
    stager.load(frames, 3)
    stager.upload(3)
    expected = torch.from_numpy(pre.output[:3]).half()
    # a value a hair from a rounding boundary may round the other way after a one-ulp float32 difference
    np.testing.assert_allclose(stager.input[:3].float().cpu().numpy(), expected.float().numpy(), rtol=0, atol=2e-3)


def test_stager_rejects_bad_frames_and_counts():
    stager = CudaFrameStager(DEFAULT, 2, dtype=torch.float32, device="cpu")
    with pytest.raises(JetracerError, match="RGB uint8"):
        stager.load([np.zeros((224, 224, 3), np.float32)], 1)
    with pytest.raises(JetracerError, match="1 to 2 frames"):
        stager.load([np.zeros((224, 224, 3), np.uint8)] * 3, 3)
    with pytest.raises(JetracerError, match="1 to 2 frames"):
        stager.upload(0)


# -- convert --backend torch: what is refused before compiling -----------------------------------------------------


@pytest.mark.parametrize("precision, out_name, message", [
    ("int8", "m.pt2", "onnxruntime.*tensorrt"),
    ("fp32", "m.onnx", "should end in .pt2"),
])
def test_convert_refuses_bad_requests(tmp_path, precision, out_name, message):
    with pytest.raises(JetracerError, match=message):
        torch_aot.convert(ConvertRequest(source=CHECKPOINT, out=tmp_path / out_name, precision=precision))


def test_convert_refuses_an_onnx_source_and_an_existing_output(tmp_path):
    with pytest.raises(JetracerError, match="checkpoint"):
        torch_aot.convert(ConvertRequest(source=ONNX_MODEL, out=tmp_path / "m.pt2", precision="fp32"))
    existing = tmp_path / "m.pt2"
    existing.write_bytes(b"keep me")
    with pytest.raises(JetracerError, match="--force"):
        torch_aot.convert(ConvertRequest(source=CHECKPOINT, out=existing, precision="fp32"))
    assert existing.read_bytes() == b"keep me"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_convert_fp16_without_a_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(JetracerError, match="needs a CUDA GPU"):
        torch_aot.convert(ConvertRequest(source=CHECKPOINT, out=tmp_path / "m.pt2", precision="fp16"))
    assert not list(tmp_path.iterdir())


# -- CUDA ----------------------------------------------------------------------------------------------------------


@cuda_only
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_cuda_engine_agrees_with_fp32_reference(frames, reference, precision):
    with TorchEngine(CHECKPOINT, max_batch=4, precision=precision) as engine:
        assert engine.device.startswith("cuda:") and engine.precision == precision
        engine.warmup()
        comparison = verify.compare(reference, verify.engine_outputs(engine, frames), precision)
        assert comparison.ok, comparison.report()


@cuda_only
@pytest.mark.parametrize("graphs", [False, True])
def test_cuda_staging_is_the_whole_preprocessing(frames, graphs):
    with TorchEngine(CHECKPOINT, max_batch=2, cuda_graphs=graphs) as engine:
        engine.warmup()
        check_staging_is_the_whole_preprocessing(engine, frames)


@cuda_only
def test_cuda_graph_replay_equals_eager(frames):
    outputs = {}
    for graphs in (False, True):
        with TorchEngine(CHECKPOINT, max_batch=4, cuda_graphs=graphs) as engine:
            engine.warmup()
            assert bool(engine._graphs) == graphs and (not graphs or set(engine._graphs) == {1, 4})
            outputs[graphs] = (verify.engine_outputs(engine, frames),
                               np.stack([engine.infer(f).copy() for f in frames[:3]]))
    np.testing.assert_allclose(outputs[True][0], outputs[False][0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(outputs[True][1], outputs[False][1], rtol=0, atol=1e-6)


@cuda_only
def test_cuda_run_model_replays_the_last_staged_frames(frames):
    with TorchEngine(CHECKPOINT, max_batch=4) as engine:
        engine.warmup()
        for _ in range(3):  # the first runs of batch 2 are eager; then its graph is captured and replayed
            _check_run_model_reruns_the_last_staged_frames(engine, frames)
        assert 2 in engine._graphs


@cuda_only
def test_cuda_infer_does_not_grow_allocated_memory(frames):
    with TorchEngine(CHECKPOINT, max_batch=1) as engine:
        engine.warmup()
        check_calls_allocate_no_cuda_memory(engine.infer, frames)


def check_calls_allocate_no_cuda_memory(call, frames, calls=100):
    """``call(frame)`` over ``frames``, ``calls`` times, leaves PyTorch's allocated CUDA memory as it was."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for i in range(calls):
        call(frames[i % len(frames)])
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before


@cuda_only
def test_convert_fp16_package_is_verified_and_loads(tmp_path, frames, reference):
    out = tmp_path / "road_following.fp16.cuda.pt2"
    result = torch_aot.convert(ConvertRequest(source=CHECKPOINT, out=out, precision="fp16", verify_frames=16,
                                              max_batch=4))
    assert result.path == out and out.is_file() and result.comparison.ok
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary left behind
    with TorchEngine(out, max_batch=4) as engine:
        assert engine.precision == "fp16" and engine.device.startswith("cuda:")
        engine.warmup()
        assert verify.compare(reference, verify.engine_outputs(engine, frames), "fp16").ok
        staged = engine.infer_batch(frames[:4]).copy()
        np.testing.assert_allclose(engine.run_model(4), staged, atol=1e-6)
    with pytest.raises(JetracerError, match="fp16 package, not fp32"):
        TorchEngine(out, precision="fp32")
    with pytest.raises(JetracerError, match="compiled for cuda, not cpu"):
        TorchEngine(out, device="cpu")
    with pytest.raises(JetracerError, match="--force"):
        torch_aot.convert(ConvertRequest(source=CHECKPOINT, out=out, precision="fp16"))



def test_package_check_runs_in_a_child_and_reports_its_error(tmp_path):
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a package")
    request = ConvertRequest(source=CHECKPOINT, precision="fp32", out=bad)
    with pytest.raises(JetracerError, match="failed: cannot load AOTInductor package"):
        torch_aot.ROUTE.run_result(request, bad, np.zeros((1, 224, 224, 3), np.uint8))


def test_a_crashing_child_is_a_clear_error():
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    with pytest.raises(JetracerError, match=r"loading crashed \(SIGSEGV\).*nothing was written"):
        torch_aot.run_child(crash, "loading")


def test_a_stuck_child_is_stopped_with_a_clear_error():
    stuck = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(JetracerError, match=r"loading had not finished after 1 s.*nothing was written"):
        torch_aot.run_child(stuck, "loading", timeout_s=1)
