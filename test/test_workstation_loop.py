"""The workstation loop in miniature, on the CPU, each step the command a user runs (README, "The whole loop"):
collect on the "car" (the simulator stands in for it) -> copy the dataset to the "workstation" -> ``data stats`` ->
``train --init models/road_following.pt`` (a few steps; it writes the verified ``best.onnx`` beside ``best.pt``) ->
copy the two files back -> ``convert`` to INT8 on the car (the conventional name beside the model) -> a lap driven
closed loop with ``backend auto``, which picks the INT8 model made from that ONNX.

The slowest test of the training files: about 25 s on two cores (300 frames, 3 training steps at 224x224, an INT8
calibration on 128 frames, one lap).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from jetracer_trt.cli.main import main  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "road_following.pt"


def jetracer_trt(capsys, *argv: str) -> str:
    """One ``jetracer-trt`` command; its stdout (it must succeed)."""
    capsys.readouterr()
    assert main(list(argv)) == 0, argv
    return capsys.readouterr().out


def test_collect_train_convert_drive(tmp_path, capsys):
    car, workstation = tmp_path / "car", tmp_path / "workstation"
    jetracer_trt(capsys, "sim", "collect", "--out", str(car / "data"), "--frames", "300", "--seeds", "0-9",
                 "--episode-frames", "50")
    shutil.copytree(car / "data", workstation / "data")  # scp / rsync in real life

    stats = json.loads(jetracer_trt(capsys, "data", "stats", str(workstation / "data"), "--json"))
    assert stats["samples"] == 300 and stats["corrupt"] == 0

    run = workstation / "runs" / "ft"
    out = jetracer_trt(capsys, "train", "--data", str(workstation / "data"), "--init", str(SHIPPED), "--out", str(run),
                       "--max-steps", "3", "--epochs", "1", "--batch-size", "8", "--lr", "1e-4", "--workers", "0",
                       "--device", "cpu")
    assert "wrote " in out and f"--model {run / 'best.onnx'}" in out  # exported, verified, and what to run next

    models = car / "models"
    models.mkdir()
    for name in ("best.pt", "best.onnx"):
        shutil.copy2(run / name, models / name)
    jetracer_trt(capsys, "convert", "--backend", "onnxruntime", "--precision", "int8", "--model",
                 str(models / "best.onnx"), "--calib", str(car / "data"), "--calib-frames", "128",
                 "--verify-frames", "32")
    assert (models / "best.int8.onnx").is_file()  # beside the model, where backend auto looks

    lap = json.loads(jetracer_trt(capsys, "sim", "eval", "--model", str(models / "best.onnx"), "--laps", "1",
                                  "--json"))
    assert "int8" in lap["engine"] and "best.int8.onnx" in lap["engine"]
    assert lap["laps_completed"] == 1 and lap["off_track_events"] == 0
