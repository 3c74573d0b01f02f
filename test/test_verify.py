"""verify.compare, the one definition of "agrees with the source": every output, the worst frame and the mean, at
every precision; and the shipped INT8 model agrees with the shipped FP32 model by it."""
from __future__ import annotations

import numpy as np
import pytest

from jetracer_trt import verify
from jetracer_trt.config import default_model_path
from jetracer_trt.errors import JetracerError

FRAMES = 64
NAMES = ("x", "y")  # the road-following contract's outputs


@pytest.fixture
def reference() -> np.ndarray:
    """(64, 2) targets spread over [-1, 1], as a road model gives."""
    return np.random.default_rng(0).uniform(-1, 1, (FRAMES, 2)).astype(np.float32)


def close(reference: np.ndarray, scale: float, seed: int = 1) -> np.ndarray:
    """``reference`` plus noise of up to ``scale`` on every output (a good conversion)."""
    return reference + np.random.default_rng(seed).uniform(-scale, scale, reference.shape).astype(np.float32)


@pytest.mark.parametrize("precision", list(verify.TOLERANCES))
def test_a_candidate_close_on_every_frame_passes(reference, precision):
    bounds = verify.TOLERANCES[precision]
    comparison = verify.compare(reference, close(reference, bounds.mean_abs), precision, NAMES)
    assert comparison.ok and comparison.failures == [], comparison.report()
    assert set(comparison.max_abs) == set(comparison.mean_abs) == {"x", "y"}


def test_int8_one_frame_off_by_0_6_fails_though_the_mean_is_small(reference):
    candidate = close(reference, 0.002)
    candidate[17, 0] += 0.6  # one frame steers the other way
    comparison = verify.compare(reference, candidate, "int8", NAMES)
    assert comparison.mean_abs["x"] < verify.TOLERANCES["int8"].mean_abs  # the mean alone would let it through
    assert not comparison.ok
    assert comparison.worst_frame["x"] == 17
    assert any(f.startswith("x max 6.0") and "(frame 17)" in f for f in comparison.failures), comparison.failures
    assert "FAIL" in comparison.report() and "frame 17" in comparison.report()


def test_int8_every_y_off_by_0_5_fails(reference):
    candidate = close(reference, 0.002)
    candidate[:, 1] += 0.5
    comparison = verify.compare(reference, candidate, "int8", NAMES)
    assert not comparison.ok
    assert {f.split()[0] for f in comparison.failures} == {"y"}  # x is fine; y breaks both bounds
    assert any(f.startswith("y max") for f in comparison.failures)
    assert any(f.startswith("y mean") for f in comparison.failures)


@pytest.mark.parametrize("precision", list(verify.TOLERANCES))
def test_a_steady_offset_below_the_worst_frame_bound_fails_on_the_mean(reference, precision):
    bounds = verify.TOLERANCES[precision]
    offset = (bounds.mean_abs + bounds.max_abs) / 2  # within the worst-frame bound, far over the mean bound
    candidate = reference.copy()
    candidate[:, 0] += offset
    comparison = verify.compare(reference, candidate, precision, NAMES)
    assert not comparison.ok and [f.split()[:2] for f in comparison.failures] == [["x", "mean"]]


@pytest.mark.parametrize("precision", list(verify.TOLERANCES))
def test_one_frame_over_the_worst_frame_bound_fails_at_every_precision(reference, precision):
    bounds = verify.TOLERANCES[precision]
    candidate = reference.copy()
    candidate[5, 1] += bounds.max_abs * 1.5
    comparison = verify.compare(reference, candidate, precision, NAMES)
    assert not comparison.ok and comparison.failures[0].startswith("y max")


def test_every_output_column_is_judged_and_named(reference):
    three = np.concatenate([reference, reference[:, :1]], axis=1)
    candidate = three.copy()
    candidate[:, 2] += 0.05
    comparison = verify.compare(three, candidate, "int8", NAMES)
    assert list(comparison.max_abs) == ["x", "y", "out2"] and not comparison.ok
    assert comparison.failures == [f"out2 mean {0.05:.2e} > 0.02"]


def test_unnamed_columns_are_numbered():
    comparison = verify.compare(np.zeros((4, 2)), np.full((4, 2), 0.5), "int8")
    assert list(comparison.max_abs) == ["out0", "out1"] and comparison.failures[0].startswith("out0 max")


def test_nan_or_inf_is_infinitely_wrong_and_bad_shapes_are_refused(reference):
    candidate = reference.copy()
    candidate[3, 0] = np.nan
    assert not verify.compare(reference, candidate, "int8").ok
    with pytest.raises(JetracerError, match="cannot be compared"):
        verify.compare(reference, reference[:10], "fp32")
    with pytest.raises(JetracerError, match="unknown precision"):
        verify.compare(reference, reference, "int4")


def test_the_table_bounds_every_precision_on_the_worst_frame_and_the_mean():
    assert set(verify.TOLERANCES) == {"fp32", "fp16", "int8"}
    for bounds in verify.TOLERANCES.values():
        assert 0 < bounds.mean_abs < bounds.max_abs and bounds.why
    assert verify.TOLERANCES["int8"].mean_abs == 0.02  # mean |dx| <= 0.02, the INT8 accuracy bar
    as_dict = verify.compare(np.zeros((4, 2)), np.zeros((4, 2)), "fp32", NAMES).as_dict()
    assert as_dict["ok"] and as_dict["failures"] == [] and as_dict["worst_frame"] == {"x": 0, "y": 0}


def test_the_shipped_int8_model_agrees_with_the_shipped_fp32_model():
    pytest.importorskip("onnxruntime")
    from jetracer_trt.engines import create_engine

    fp32 = default_model_path()
    frames = verify.verification_frames(None, 32)  # the frames every conversion verifies on without --calib
    with create_engine("onnxruntime", fp32.with_name("road_following.int8.onnx"), max_batch=8,
                       providers=["CPUExecutionProvider"]) as engine:
        candidate = verify.engine_outputs(engine, frames)
    comparison = verify.compare(verify.reference_outputs(fp32, frames), candidate, "int8", NAMES)
    assert comparison.ok, comparison.report()
    assert max(comparison.max_abs.values()) < verify.TOLERANCES["int8"].max_abs / 5  # far inside: not a near miss


def test_folder_frames_of_another_size_are_brought_to_the_first_ones(tmp_path):
    import cv2

    rng = np.random.default_rng(2)
    for i in range(verify.MIN_FRAMES):
        size = (80, 60) if i % 2 else (40, 30)  # a folder of photos from two cameras
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    frames = verify.verification_frames(tmp_path, verify.MIN_FRAMES)
    assert frames.shape == (verify.MIN_FRAMES, 30, 40, 3) and frames.dtype == np.uint8
