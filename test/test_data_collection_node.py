"""The data-collection node in this process: drive samples paired with commands, the pad's record toggle, the web
page's backend (clicks, undo, joystick), bad parameters."""
import json
import os
import socket
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("rclpy")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ["ROS_DOMAIN_ID"] = str(100 + (os.getpid() + 53) % 100)

from in_process_node import node_maker  # noqa: E402
from geometry_msgs.msg import TwistStamped  # noqa: E402
from rclpy.clock import Clock, ClockType  # noqa: E402
from sensor_msgs.msg import Image, Joy  # noqa: E402

from jetracer_trt.dataset import read_dataset  # noqa: E402
from jetracer_trt.errors import JetracerError  # noqa: E402
from jetracer_trt.nodes.data_collection_node import DataCollectionNode  # noqa: E402
from jetracer_trt.nodes.image_msg import rgb_to_image  # noqa: E402

FRAME = np.full((224, 224, 3), 120, np.uint8)


@pytest.fixture
def make_node():
    with node_maker(DataCollectionNode) as make:
        yield make


def now_stamp():
    return Clock(clock_type=ClockType.SYSTEM_TIME).now().to_msg()


def image():
    msg = Image()
    rgb_to_image(FRAME, msg)
    msg.header.stamp = now_stamp()
    return msg


def cmd(steering, throttle):
    msg = TwistStamped()
    msg.twist.angular.z, msg.twist.linear.x = -steering, throttle
    return msg


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_drive_sample_gets_the_command_in_effect_and_its_label(tmp_path, make_node):
    node = make_node(out=str(tmp_path / "d"), record_at_start=True, web_port=0, max_rate_hz=0.0)
    node.mode = "manual"
    node.on_cmd(cmd(0.4, 0.2))
    time.sleep(0.01)
    node.on_image(image())
    time.sleep(0.2)
    node.on_image(image())  # 0.2 s after the last command: too old to pair
    (sample,), _ = read_dataset(tmp_path / "d")
    assert sample.meta["steering"] == pytest.approx(0.4) and sample.meta["source"] == "teleop"
    assert sample.x == pytest.approx(0.4)  # car profile: gain 1, offset 0
    assert len(sample.meta["calibration"]) == 12
    assert node.recorder.counts["too_old"] == 1


def test_the_pads_record_button_toggles_recording(tmp_path, make_node):
    node = make_node(out=str(tmp_path / "d"), web_port=0)
    assert not node.recorder.recording
    node.on_joy(Joy(axes=[0.0, 0.0], buttons=[0, 0, 1, 0]))
    assert node.recorder.recording
    node.on_joy(Joy(axes=[0.0, 0.0], buttons=[0, 0, 1, 0]))  # still held: no second toggle
    node.on_joy(Joy(axes=[0.0, 0.0], buttons=[0, 0, 0, 0]))
    node.on_joy(Joy(axes=[0.0, 0.0], buttons=[0, 0, 1, 0]))
    assert not node.recorder.recording


def post(port, path, body):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def test_the_web_page_labels_undoes_and_drives_through_the_node(tmp_path, make_node, monkeypatch):
    port = free_port()
    node = make_node(out=str(tmp_path / "d"), web_port=port)
    sent = []
    monkeypatch.setattr(node.web_joy_pub, "publish", sent.append)
    shown = image()
    node.on_image(shown)
    time.sleep(0.2)  # the app takes the frame on its own thread
    status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5).read())
    assert status["recording"] is False
    stamp_ns = shown.header.stamp.sec * 1_000_000_000 + shown.header.stamp.nanosec
    labelled = post(port, "/api/label", {"stamp_ns": str(stamp_ns), "u": 168.0, "v": 56.0})
    (sample,), _ = read_dataset(tmp_path / "d")
    assert (sample.x, sample.y) == (0.5, -0.5) and sample.meta["source"] == "click"
    assert sample.image_path.name in labelled["image"]
    assert post(port, "/api/undo", {})["removed"] == labelled["image"] and read_dataset(tmp_path / "d")[0] == []
    node.drive(0.3, 0.8, True, "client")
    node.drive(0.3, 0.8, False, "client")
    assert list(sent[0].axes) == pytest.approx([0.3, 0.8]) and list(sent[0].buttons) == [1, 0, 0, 0]
    assert list(sent[1].axes) == [0.0, 0.0] and list(sent[1].buttons) == [0, 0, 0, 0]


def test_without_a_dataset_folder_the_node_says_so(make_node):
    with pytest.raises(JetracerError, match="out:=DIR"):
        make_node(web_port=0)


def test_an_unwritable_dataset_folder_is_an_error_the_node_survives_and_recording_starts_once_fixed(tmp_path,
                                                                                                    make_node):
    blocker = tmp_path / "usb"
    blocker.write_text("not a folder yet: the stick is not mounted")
    node = make_node(out=str(blocker / "data"), record_at_start=True, web_port=0, max_rate_hz=0.0)
    assert node.recorder.writer is None and "cannot record into" in node.status()["error"]
    node.on_cmd(cmd(0.2, 0.2))
    node.on_image(image())  # nothing to write into: counted as an error, no crash
    assert node.recorder.counts["errors"] == 1
    blocker.unlink()
    blocker.mkdir()
    node.report()  # the once-a-second retry
    assert node.recorder.writer is not None and node.status()["error"] is None
    node.on_cmd(cmd(0.2, 0.2))
    node.on_image(image())
    assert len(read_dataset(blocker / "data")[0]) == 1


def stamp_ms_ago(ms):
    stamp = now_stamp()
    ns = stamp.sec * 1_000_000_000 + stamp.nanosec - int(ms * 1e6)
    stamp.sec, stamp.nanosec = divmod(ns, 1_000_000_000)
    return stamp


def test_the_status_shows_latency_from_capture_to_command_and_to_the_page(tmp_path, make_node):
    node = make_node(out=str(tmp_path / "d"), web_port=0)
    assert node.status()["latency_ms"] == {"capture_to_command": None, "capture_to_web": None}
    node.on_cmd(cmd(0.1, 0.0))  # no frame's stamp (a hand's command before any target): no figure
    assert node.status()["latency_ms"]["capture_to_command"] is None
    command = cmd(0.1, 0.0)
    command.header.stamp = stamp_ms_ago(40)  # the control node's command carries its frame's capture stamp
    node.on_cmd(command)
    time.sleep(0.15)
    node.on_cmd(command)  # the same frame's command again (the control node's own tick): not a second figure
    frame = image()
    frame.header.stamp = stamp_ms_ago(15)
    node.on_image(frame)
    latency = node.status()["latency_ms"]
    assert 40 <= latency["capture_to_command"] < 80
    assert 15 <= latency["capture_to_web"] < 60
    json.dumps(node.status())


def test_a_sample_deleted_from_the_page_is_gone_and_no_longer_counted(tmp_path, make_node):
    from jetracer_trt.dataset import DatasetWriter

    with DatasetWriter(tmp_path / "d") as writer:  # an earlier session's sample
        older = writer.append(FRAME, 0.1, 0.1)
    node = make_node(out=str(tmp_path / "d"), web_port=0)
    assert node.dataset_root() == str(tmp_path / "d")
    frame = image()
    node.on_image(frame)

    class Shown:
        stamp_ns = frame.header.stamp.sec * 1_000_000_000 + frame.header.stamp.nanosec
        rgb = FRAME

    mine = node.label(Shown, 0.5, 0.5)
    assert node.status()["session_samples"] == 1
    node.delete(mine)
    node.delete(older)
    assert node.status()["session_samples"] == 0 and node.undo() is None
    assert read_dataset(tmp_path / "d") == ([], 0)
