"""The command line as a user meets it: help, the main job's JSON, and one-line errors for bad input."""
import json
import subprocess
import sys

import pytest

from jetracer_trt.cli.main import main


def run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "jetracer_trt.cli.main", *argv], capture_output=True, text=True,
                          timeout=300)


def test_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for verb in ("sim", "data", "train", "export"):
        assert verb in out


def test_sim_eval_json_is_one_object_and_the_shipped_model_drives_a_clean_lap(tmp_path):
    result = run_cli("sim", "eval", "--track-seed", "1003", "--laps", "1", "--json", "--plot", str(tmp_path / "p.png"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert set(metrics) == {"laps_completed", "off_track_events", "mean_abs_cte_m", "max_abs_cte_m",
                            "mean_speed_mps", "frames", "inference_ms", "engine", "control"}
    assert set(metrics["inference_ms"]) == {"p50", "p99"}
    from jetracer_trt.engines.select import cuda_available

    # backend auto: the shipped INT8 model on a CPU, PyTorch FP16 on a CUDA GPU
    assert metrics["engine"].startswith("torch fp16 on cuda" if cuda_available() else "onnxruntime int8 on cpu")
    assert metrics["laps_completed"] == 1 and metrics["off_track_events"] == 0
    assert metrics["mean_speed_mps"] >= 1.0
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_sim_eval_video_records_the_camera_view(tmp_path):
    import cv2

    from jetracer_trt.cli.sim import run_eval
    from jetracer_trt.cli.main import build_parser

    args = build_parser().parse_args(["sim", "eval", "--track-seed", "4", "--laps", "1", "--json",
                                      "--video", str(tmp_path / "v.mp4")])
    assert run_eval(args) == 0
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) > 100
    ok, frame = cap.read()
    assert ok and frame.shape == (448, 448, 3)


@pytest.mark.parametrize("argv,message", [
    (["sim", "eval", "--model", "/nonexistent/model.onnx"], "model file not found"),
    (["sim", "eval", "--laps", "0"], "--laps"),
    (["sim", "eval", "--track-seed", "-4"], "track seed"),
    (["sim", "collect", "--out", "{tmp}/d", "--frames", "5", "--seeds", "3-x"], "bad seed list"),
    (["sim", "collect", "--out", "{tmp}/d", "--frames", "5", "--seeds", "1000-1002"], "reserved for evaluation"),
    (["sim", "collect", "--out", "{tmp}/file/d", "--frames", "5"], "cannot"),
    (["data", "check", "{tmp}/nothing"], "error"),
    (["sim", "eval", "--set", "speed=2"], "unknown setting 'speed'"),
    (["sim", "eval", "--set", "throttle"], "NAME=VALUE"),
    (["sim", "eval", "--set", "steering_gain=7"], "steering_gain must be in [0, 5]"),
    (["sim", "eval", "--params", "{tmp}/missing.yaml"], "cannot read --params"),
])
def test_bad_input_gives_one_clear_line_and_exit_2(tmp_path, argv, message):
    (tmp_path / "file").write_text("a file, not a folder")
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert result.returncode == 2
    err = result.stderr.strip().splitlines()
    assert err and err[-1].startswith("error: ") and message in err[-1]
    assert "Traceback" not in result.stderr


def test_sim_eval_set_and_params_change_the_car_and_the_json_names_the_settings(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("control:\n  ros__parameters:\n    throttle: 0.5\n    steering_slew_per_s: 6.0\n")
    result = run_cli("sim", "eval", "--track-seed", "1004", "--laps", "1", "--json", "--params", str(params),
                     "--set", "throttle=0.3")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert metrics["control"]["throttle"] == 0.3 and metrics["control"]["steering_slew_per_s"] == 6.0
    assert metrics["control"]["deadman_timeout_s"] == 0.25
    assert metrics["laps_completed"] == 1 and metrics["mean_speed_mps"] < 0.95  # 0.3 of 3 m/s at most


def test_sim_eval_passes_the_precision_to_the_engine(tmp_path):
    # torch on a CPU runs FP32 only: the asked-for FP16 must reach the engine and be refused, not silently dropped
    from jetracer_trt.engines.select import cuda_available

    if cuda_available():
        pytest.skip("FP16 runs on this machine's GPU")
    from jetracer_trt.config import default_model_path
    from jetracer_trt.engines.artifacts import checkpoint_path

    result = run_cli("sim", "eval", "--backend", "torch", "--model", str(checkpoint_path(default_model_path())),
                     "--precision", "fp16", "--laps", "1")
    assert result.returncode == 2 and "FP16 only on a CUDA GPU" in result.stderr


def test_unwritable_plot_folder_is_reported_before_driving(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run_cli("sim", "eval", "--laps", "1", "--plot", str(tmp_path / "file" / "p.png"))
    assert result.returncode == 2 and "error: " in result.stderr


def test_ctrl_c_while_the_verbs_load_ends_quietly_with_130(monkeypatch, capsys):
    # the verbs import torch, ONNX Runtime or rclpy: seconds in which a Ctrl-C used to print a traceback
    from jetracer_trt.cli import main as cli_main

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    assert cli_main.main(["sim", "eval"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
