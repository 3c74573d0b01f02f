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
from jetracer_trt.errors import JetracerError  # noqa: E402


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


# -- task pose, in this process: people on their topics and follow-me's target -----------------------------------

def export_random_pose_model(folder):
    """A pose model with random weights (CI's clean clone has no trained one): the plumbing, not detection
    quality, is what the tests using it check."""
    import torch

    from jetracer_trt.contract import pose_contract
    from jetracer_trt.export import export_onnx
    from jetracer_trt.model import save_checkpoint
    from jetracer_trt.pose import load_topology
    from jetracer_trt.pose.checkpoint import make_pose_checkpoint
    from jetracer_trt.pose.network import build_pose_network

    torch.manual_seed(0)
    topology = load_topology()
    network = build_pose_network(topology).eval()
    checkpoint = folder / "best.pt"
    save_checkpoint(make_pose_checkpoint(network, half=True, contract=pose_contract(topology), kind="best", epoch=0),
                    checkpoint)
    return export_onnx(checkpoint, folder / "pose.onnx", num_frames=16).path


@pytest.fixture(scope="module")
def pose_model(tmp_path_factory):
    pytest.importorskip("torch")
    return export_random_pose_model(tmp_path_factory.mktemp("pose_model"))


@pytest.fixture
def make_pose_node(pose_model):
    from in_process_node import node_maker

    from jetracer_trt.nodes.inference_node import InferenceNode

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ["ROS_DOMAIN_ID"] = str(100 + (os.getpid() + 73) % 100)
    with node_maker(InferenceNode, task="pose", model=pose_model, backend="onnxruntime") as make:
        yield make


def image(captured_ns=None, width=224, height=224):
    """A grey frame captured now (or at ``captured_ns`` on the system clock)."""
    import time

    import numpy as np
    from sensor_msgs.msg import Image

    from jetracer_trt.nodes.image_msg import rgb_to_image

    msg = Image()
    rgb_to_image(np.full((height, width, 3), 90, dtype=np.uint8), msg)
    now = time.time_ns() if captured_ns is None else captured_ns
    msg.header.stamp.sec, msg.header.stamp.nanosec = now // 1_000_000_000, now % 1_000_000_000
    msg.header.frame_id = "camera"
    return msg


def standing(cx, torso, top=60.0):
    from jetracer_trt.pose.people import Keypoint, Person

    points = {"nose": (cx, top - 20), "neck": (cx, top), "left_shoulder": (cx + 10, top),
              "right_shoulder": (cx - 10, top), "left_hip": (cx + 8, top + torso), "right_hip": (cx - 8, top + torso)}
    return Person({name: Keypoint(x, y, 0.8) for name, (x, y) in points.items()})


def published(monkeypatch, node):
    """topic -> the messages the node publishes on it (copied out as they go)."""
    import copy

    sent = {}
    pubs = {"follow_target": node.target_pub, "pose/people": node.pose.people_pub,
            "pose/markers": node.pose.markers_pub, "pose/image_annotated": node.pose.annotated_pub,
            "/diagnostics": node.diag_pub}
    for topic, pub in pubs.items():
        monkeypatch.setattr(pub, "publish", lambda msg, topic=topic: sent.setdefault(topic, []).append(
            copy.deepcopy(msg)))
    return sent


def with_people(monkeypatch, node, people):
    """The model runs as it would (its time is measured), the people it finds are ``people``."""
    real = node.pose.estimator.people
    monkeypatch.setattr(node.pose.estimator, "people", lambda frame: (real(frame), list(people))[1])


def test_task_pose_publishes_people_markers_and_the_follow_target(make_pose_node, monkeypatch):
    import math

    import numpy as np
    from visualization_msgs.msg import Marker

    node = make_pose_node()
    sent = published(monkeypatch, node)
    near_left, far_right = standing(60.0, torso=0.40 * 224), standing(168.0, torso=0.10 * 224)
    with_people(monkeypatch, node, [far_right, near_left])
    msg = image()
    node.on_image(msg)
    (target,) = sent["follow_target"]
    assert target.header.stamp == msg.header.stamp
    assert target.point.x == pytest.approx(2 * 60 / 224 - 1)  # the largest: the near one, on the left
    assert target.point.y == 0.0  # its throttle scale: too close
    assert target.point.z > 0  # the model's milliseconds
    (people,) = sent["pose/people"]
    dims = [(d.label, d.size, d.stride) for d in people.layout.dim]
    assert dims == [("people", 2, 2 * 18 * 3), ("keypoints", 18, 18 * 3), ("x_y_score", 3, 3)]
    data = np.array(people.data, dtype=np.float32).reshape(2, 18, 3)
    assert data[0, 17].tolist() == pytest.approx([168.0, 60.0, 0.8])  # neck, the topology's last keypoint
    assert math.isnan(data[0, 15, 0])  # left_ankle: not found
    (markers,) = sent["pose/markers"]
    assert markers.markers[0].action == Marker.DELETEALL
    kinds = [(m.type, len(m.points)) for m in markers.markers[1:]]
    # per person its 6 keypoints and the limbs among them: hips, shoulders to neck, neck to nose and hips
    assert kinds[0][0] == Marker.SPHERE_LIST and kinds[0][1] == 6 and kinds[1][0] == Marker.LINE_LIST
    assert kinds[1][1] % 2 == 0 and kinds[1][1] >= 8
    assert {m.header.frame_id for m in markers.markers} == {"camera"}
    assert "pose/image_annotated" not in sent  # off unless asked for
    node.report()
    values = {kv.key: kv.value for kv in sent["/diagnostics"][-1].status[0].values}
    assert values["task"] == "pose" and values["people"] == "2" and values["follow"] == "too close"
    assert float(values["parse_ms_p50"]) >= 0 and "parse_ms_p99" in values


def test_follow_me_drives_at_full_scale_when_far_and_stops_once_the_person_is_lost(make_pose_node, monkeypatch):
    import math
    import time

    node = make_pose_node(lost_timeout_s=0.5)
    sent = published(monkeypatch, node)
    with_people(monkeypatch, node, [standing(168.0, torso=0.05 * 224)])
    start = time.time_ns()
    node.on_image(image(start))
    assert sent["follow_target"][-1].point.y == 1.0 and sent["follow_target"][-1].point.x > 0
    with_people(monkeypatch, node, [])
    node.on_image(image(start + 300_000_000))  # the timeout counts on the frames' capture stamps
    assert sent["follow_target"][-1].point.y == pytest.approx(0.3)  # held within the timeout, at most the creep
    node.on_image(image(start + 600_000_000))
    lost = sent["follow_target"][-1].point
    assert math.isnan(lost.x) and lost.y == 0.0


def test_the_annotated_image_and_follow_settings_change_at_runtime(make_pose_node, monkeypatch):
    import numpy as np
    from rclpy.parameter import Parameter

    node = make_pose_node()
    sent = published(monkeypatch, node)
    with_people(monkeypatch, node, [standing(112.0, torso=0.2 * 224)])
    assert node.set_parameters([Parameter("publish_annotated", value=True)])[0].successful
    node.on_image(image())
    (annotated,) = sent["pose/image_annotated"]
    pixels = np.frombuffer(bytes(annotated.data), dtype=np.uint8).reshape(224, 224, 3)
    assert annotated.encoding == "rgb8" and (pixels != 90).any()  # the person drawn on the frame
    refused = node.set_parameters([Parameter("stop_size", value=0.05)])[0]  # below far_size
    assert not refused.successful and "stop_size" in refused.reason
    assert node.set_parameters([Parameter("stop_size", value=0.5), Parameter("far_size", value=0.1)])[0].successful
    node.on_image(image())
    assert sent["follow_target"][-1].point.y == pytest.approx((0.5 - 0.2) / (0.5 - 0.1))


def test_task_auto_runs_what_the_model_is_made_for(pose_model):
    from jetracer_trt.nodes.inference_node import model_for_task

    assert model_for_task("auto", str(pose_model)) == ("pose", str(pose_model))
    assert model_for_task("auto", "")[0] == "road_following"
    with pytest.raises(JetracerError, match="unknown task 'dance'"):
        model_for_task("dance", "")


def test_a_missing_default_pose_model_names_the_commands_that_make_it(tmp_path, monkeypatch):
    from jetracer_trt.nodes import inference_node

    # an install whose models/ lacks the pose model
    monkeypatch.setattr(inference_node, "default_model_path", lambda task="road_following": tmp_path / "pose.onnx")
    model_for_task = inference_node.model_for_task
    with pytest.raises(JetracerError, match=r"pose.onnx is not there: .*jetracer-trt export --task pose"):
        model_for_task("pose", "")
