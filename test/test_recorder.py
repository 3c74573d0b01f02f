"""Recording on the car: frames paired with the command in effect at capture, clicks, rate limit, disk errors."""
import errno
import os

import numpy as np
import pytest

from jetracer_trt.control import ControlParams, compute_command, target_from_steering
from jetracer_trt import recorder as recorder_module
from jetracer_trt.dataset import DatasetWriter, read_dataset
from jetracer_trt.errors import JetracerError
from jetracer_trt.recorder import LatencyFigures, Recorder

FRAME = np.full((224, 224, 3), 90, np.uint8)


@pytest.fixture
def params():
    return ControlParams.from_config({"steering_gain": 0.8, "steering_offset": -0.1}, profile="car")


def recorder(tmp_path, params, **kw):
    return Recorder(DatasetWriter(tmp_path / "d"), params, calibration_id="cal123", session="s1", **kw)


def test_the_label_is_the_target_the_law_steers_to_with_that_steering(params):
    for steering in (-0.9, -0.3, 0.0, 0.25, 0.7):
        x, y = target_from_steering(steering, params, -0.12)
        assert compute_command(x, y, params)[0] == pytest.approx(steering) and y == -0.12
    assert target_from_steering(5.0, params, 0.0)[0] == 1.0  # beyond the law's reach: clamped


def test_a_frame_gets_the_command_in_effect_at_its_capture(tmp_path, params):
    rec = recorder(tmp_path, params, max_rate_hz=0)
    rec.recording = True
    rec.on_command(10.00, 0.1, 0.2, "manual")
    rec.on_command(10.05, 0.5, 0.3, "manual")
    assert rec.on_frame(10.04, FRAME)  # the 10.00 command was in effect, not the later one
    assert rec.on_frame(10.20, FRAME) is False and rec.counts["too_old"] == 1  # 0.15 s after the last command
    samples, _ = read_dataset(tmp_path / "d")
    (sample,) = samples
    assert sample.meta["steering"] == 0.1 and sample.meta["throttle"] == 0.2 and sample.meta["command_stamp"] == 10.0
    assert sample.meta["source"] == "teleop" and sample.meta["mode"] == "manual"
    assert sample.meta["calibration"] == "cal123" and sample.meta["stamp"] == 10.04
    assert sample.x == pytest.approx(target_from_steering(0.1, params, -0.12)[0])


def test_nothing_is_recorded_while_paused_and_the_rate_is_limited(tmp_path, params):
    rec = recorder(tmp_path, params, max_rate_hz=10)
    for k in range(30):
        rec.on_command(k / 30, 0.0, 0.2, "autopilot")
        rec.on_frame(k / 30, FRAME)
    assert rec.counts["written"] == 0
    rec.recording = True
    for k in range(30, 60):
        rec.on_command(k / 30, 0.0, 0.2, "autopilot")
        rec.on_frame(k / 30, FRAME)
    assert rec.counts["written"] == 10 and rec.counts["rate_limited"] == 20
    samples, _ = read_dataset(tmp_path / "d")
    assert {s.meta["source"] for s in samples} == {"autopilot"}


def test_a_click_is_recorded_even_when_drive_recording_is_off(tmp_path, params):
    rec = recorder(tmp_path, params)
    assert rec.label_click(3.0, FRAME, 0.25, -0.5)
    (sample,), _ = read_dataset(tmp_path / "d")
    assert (sample.x, sample.y, sample.meta["source"]) == (0.25, -0.5, "click")


def test_a_full_disk_is_reported_nothing_is_lost_and_recording_resumes(tmp_path, params, monkeypatch):
    rec = recorder(tmp_path, params, max_rate_hz=0)
    rec.recording = True
    rec.on_command(0.0, 0.0, 0.2, "manual")
    assert rec.on_frame(0.01, FRAME)
    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    assert rec.on_frame(0.02, FRAME) is False
    assert rec.counts["errors"] == 1 and "No space left" in rec.last_error
    monkeypatch.setattr(os, "write", real_write)
    assert rec.on_frame(0.03, FRAME) and rec.last_error is None
    samples, corrupt = read_dataset(tmp_path / "d")
    assert len(samples) == 2 and corrupt == 0


def test_undo_removes_this_sessions_last_sample_crash_safely(tmp_path, params):
    rec = recorder(tmp_path, params)
    rec.label_click(1.0, FRAME, 0.1, 0.0)
    rec.label_click(2.0, FRAME, 0.2, 0.0)
    assert rec.undo() is not None and rec.counts["written"] == 1
    samples, corrupt = read_dataset(tmp_path / "d")
    assert [s.x for s in samples] == [0.1] and corrupt == 0
    assert rec.undo() is not None and rec.undo() is None  # nothing of this session left
    assert read_dataset(tmp_path / "d")[0] == []


def test_a_car_standing_still_is_not_recorded(tmp_path, params):
    rec = recorder(tmp_path, params, max_rate_hz=0)
    rec.recording = True
    rec.on_command(1.0, 0.3, 0.0, "manual")  # steering, but the deadman holds the throttle at 0
    assert rec.on_frame(1.01, FRAME) is False and rec.counts["standing"] == 1
    rec.on_command(1.02, 0.3, 0.2, "manual")
    assert rec.on_frame(1.03, FRAME)


def test_remove_takes_any_sample_out_and_a_session_sample_out_of_the_counts_and_undo(tmp_path, params):
    with DatasetWriter(tmp_path / "d") as writer:
        older = writer.append(FRAME, 0.0, 0.0)  # another session's
    rec = recorder(tmp_path, params)
    assert rec.label_click(1.0, FRAME, 0.1, 0.1) and rec.label_click(2.0, FRAME, 0.2, 0.2)
    first = rec._written[0]
    rec.remove(first)
    rec.remove(older)
    assert rec.counts["written"] == 1 and rec.counts["undone"] == 0
    assert [s.x for s in read_dataset(tmp_path / "d")[0]] == [0.2]
    assert rec.undo() is not None and rec.undo() is None  # the removed one is not undone a second time
    assert rec.counts["written"] == 0 and read_dataset(tmp_path / "d") == ([], 0)
    rec.writer, rec.writer_error = None, "cannot record into /media/usb: not mounted"
    with pytest.raises(JetracerError, match="not mounted"):
        rec.remove(older)


def test_latency_figures_are_medians_of_recent_frames(monkeypatch):
    monkeypatch.setattr(recorder_module, "LATENCY_FRAMES", 5)
    figures = LatencyFigures("capture_to_command", "capture_to_web")
    assert figures.figures() == {"capture_to_command": None, "capture_to_web": None}
    for ms in (100.0, 10.0, 11.0, 12.0, 13.0, 14.0):  # the 100 ms frame is no longer recent
        figures.add("capture_to_command", ms)
    assert figures.figures() == {"capture_to_command": 12.0, "capture_to_web": None}
