"""A recording session in the simulator, end to end through the collection graph's real processes: a scripted pad
drives (hold-to-drive), records, switches to autopilot, e-stops; then a few training steps on what was recorded."""
import os
import time

import pytest

pytest.importorskip("rclpy")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ["ROS_DOMAIN_ID"] = str(100 + (os.getpid() + 89) % 100)

import rclpy  # noqa: E402
from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
from sensor_msgs.msg import Joy  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from jetracer_trt.dataset import read_dataset  # noqa: E402
from jetracer_trt.errors import JetracerError  # noqa: E402
from jetracer_trt.graph import collect_graph  # noqa: E402
from jetracer_trt.launcher import start_nodes, stop_nodes  # noqa: E402
from jetracer_trt.nodes.common import LATEST_ONLY, RELIABLE  # noqa: E402
from jetracer_trt.teleop.layout import PadState  # noqa: E402


def test_the_graph_needs_a_dataset_folder_and_a_known_teleop():
    with pytest.raises(JetracerError, match="needs out"):
        collect_graph()
    with pytest.raises(JetracerError, match="unknown teleop"):
        collect_graph(out="/tmp/x", teleop="keyboard")
    names = [s.name for s in collect_graph(out="/tmp/x", teleop="gamepad")]
    assert names == ["sim", "inference", "control", "data_collection", "teleop"]
    control = collect_graph(out="/tmp/x")[2]
    assert control.defaults["mode"] == "manual" and control.defaults["profile"] == "sim"


class Pad:
    """A scripted gamepad: publishes the canonical Joy at 20 Hz and records what the graph says."""

    def __init__(self):
        rclpy.init(args=[])
        self.node = rclpy.create_node(f"scripted_pad_{os.getpid()}")
        self.pub = self.node.create_publisher(Joy, "joy", LATEST_ONLY)
        self.cmds, self.poses, self.modes = [], [], []
        self.node.create_subscription(TwistStamped, "cmd", self.cmds.append, RELIABLE)
        self.node.create_subscription(PoseStamped, "sim/pose", self.poses.append, RELIABLE)
        self.node.create_subscription(String, "mode", lambda m: self.modes.append(m.data), RELIABLE)

    def hold(self, seconds, **state):
        msg = Joy()
        pad = PadState(**state)
        msg.axes, msg.buttons = pad.axes, pad.buttons
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pub.publish(msg)
            rclpy.spin_once(self.node, timeout_sec=0.05)

    def close(self):
        self.node.destroy_node()
        rclpy.shutdown()


def test_a_recorded_session_drives_records_switches_stops_and_trains(tmp_path):
    data = tmp_path / "data"
    procs = start_nodes(collect_graph(out=str(data), teleop="web", web_port="0", track_seed="1004"))
    pad = Pad()
    try:
        deadline = time.monotonic() + 60
        while not (pad.poses and pad.cmds and pad.modes) and time.monotonic() < deadline:
            pad.hold(0.5, deadman=False)  # the graph starts; released: nothing moves
        pad.hold(1.0, deadman=False)
        assert pad.cmds and all(c.twist.linear.x == 0.0 for c in pad.cmds[-20:])
        start = pad.poses[-1].pose.position
        pad.hold(2.0, deadman=True, throttle=1.0)  # hold-to-drive, manual
        pad.hold(0.2, deadman=True, throttle=1.0, record_toggle=True)  # record on
        pad.hold(3.0, deadman=True, throttle=1.0, steering=0.2)
        moved = pad.poses[-1].pose.position
        assert abs(moved.x - start.x) + abs(moved.y - start.y) > 0.5
        pad.hold(0.2, deadman=True, autopilot_toggle=True)  # manual -> autopilot
        pad.hold(3.0, deadman=True)
        assert "autopilot" in pad.modes
        assert max(c.twist.linear.x for c in pad.cmds[-30:]) > 0.2  # the model drives while the button is held
        pad.hold(0.3, deadman=True, estop=True)
        pad.hold(1.0, deadman=True)
        assert all(c.twist.linear.x == 0.0 for c in pad.cmds[-10:])  # the e-stop latched
    finally:
        pad.close()
        killed = stop_nodes(procs)
    assert killed == []
    samples, corrupt = read_dataset(data)
    sources = {s.meta["source"] for s in samples}
    assert corrupt == 0 and {"teleop", "autopilot"} <= sources and len(samples) > 30
    assert all(s.meta["throttle"] > 0 for s in samples)  # standing still is not recorded
    # a few training steps on what was recorded
    from jetracer_trt.cli.main import main

    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "8",
                 "--device", "cpu"]) == 0
    assert (tmp_path / "run" / "best.pt").is_file()
