"""The inference node as its own process, as a launch starts it: models made for another task are refused in one
line, and build_engine without TensorRT says so and falls back."""
import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("rclpy")
onnx = pytest.importorskip("onnx")

from jetracer_trt.config import default_model_path  # noqa: E402
from jetracer_trt.contract import CONTRACT_KEY  # noqa: E402


def run_node(*params, until=None, timeout=60):
    """Runs the node; with ``until``, stops it with SIGINT once a line containing ``until`` was printed."""
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(100 + (os.getpid() + 71) % 100))
    cmd = [sys.executable, "-m", "jetracer_trt.nodes.inference_node", "--ros-args"]
    for p in params:
        cmd += ["-p", p]
    if until is None:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if until in line:
            proc.send_signal(signal.SIGINT)
    proc.wait(timeout=timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(lines), "")


def test_a_model_made_for_another_task_is_refused_in_one_line(tmp_path):
    model = onnx.load(str(default_model_path()))
    entry = next(p for p in model.metadata_props if p.key == CONTRACT_KEY)
    contract = json.loads(entry.value)
    contract["task"] = "pose"
    entry.value = json.dumps(contract)
    pose_like = tmp_path / "pose_like.onnx"
    onnx.save(model, str(pose_like))
    result = run_node(f"model:={pose_like}", "backend:=onnxruntime")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "[ERROR]" in line]
    assert len(lines) == 1 and "pose" in lines[0] and "Traceback" not in result.stderr


def test_build_engine_without_tensorrt_says_why_and_falls_back():
    result = run_node("build_engine:=true", until="ready")
    assert "build_engine:" in result.stdout and "falls back" in result.stdout
    assert "ready" in result.stdout and result.returncode == 0
