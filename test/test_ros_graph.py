"""Real rclpy nodes in separate processes, talking over DDS on localhost."""
import math
import os
import signal
import time

import pytest

pytest.importorskip("rclpy")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)  # keep parallel test runs apart

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from geometry_msgs.msg import PointStamped, TwistStamped  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Bool, Empty  # noqa: E402

from jetracer_trt.graph import NodeSpec, drive_graph  # noqa: E402
from jetracer_trt.launcher import run_graph, start_nodes, stop_nodes  # noqa: E402
from jetracer_trt.nodes.common import LATEST_ONLY, RELIABLE  # noqa: E402
from jetracer_trt.nodes.image_msg import rgb_to_image  # noqa: E402

SHORT_TRACK = 1004  # one of the shorter evaluation tracks: a lap takes ~10 s


class Probe:
    """A test-side node: publishes what a test needs and records what the graph says, with arrival times."""

    def __init__(self):
        if not rclpy.ok():
            rclpy.init(args=[])
        self.node = rclpy.create_node(f"probe_{os.getpid()}")
        self.cmds, self.targets, self.diag = [], [], {}
        self.node.create_subscription(TwistStamped, "cmd", lambda m: self.cmds.append((time.monotonic(), m)), RELIABLE)
        self.node.create_subscription(PointStamped, "road_target", lambda m: self.targets.append(m), LATEST_ONLY)
        from diagnostic_msgs.msg import DiagnosticArray

        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg):
        for status in msg.status:
            self.diag[status.name] = {kv.key: kv.value for kv in status.values}

    def spin_until(self, condition, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.02)
            if condition():
                return True
        return False

    def close(self):
        self.node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


@pytest.fixture
def probe():
    p = Probe()
    yield p
    p.close()


@pytest.fixture
def nodes():
    started = {}

    def start(specs):
        started.update(start_nodes(specs))
        return started

    yield start
    stop_nodes(started)


def control_spec(**params):
    return NodeSpec("control", "control_node", "jetracer_trt.nodes.control_node",
                    {"actuator": "none", "use_sim_time": False, **params})


def test_the_graph_drives_the_simulator_a_clean_lap():
    summary = run_graph(drive_graph(track_seed=SHORT_TRACK), duration_s=120,
                        until=lambda monitor: monitor.laps_completed >= 1)
    assert summary["stopped_because"] == "goal reached"
    assert summary["killed_nodes"] == []  # every node stopped on SIGINT, its own way (control: neutral)
    assert summary["laps_completed"] >= 1 and summary["off_track_events"] == 0
    assert summary["frames"] > 100 and summary["e2e_latency_ms"]["p50"] is not None
    assert summary["dropped_frames"] is not None and summary["dropped_frames"] >= 0


def test_the_monitor_stops_counting_latency_when_the_graph_starts_stopping():
    from jetracer_trt.launcher import Monitor

    monitor = Monitor()
    try:
        def command(sec):
            msg = TwistStamped()
            msg.header.stamp.sec = sec
            return msg

        now = int(time.time())
        monitor._on_cmd(command(now))
        monitor.recording = False  # what run_graph sets before it waits on the stopping nodes
        monitor._on_cmd(command(now + 1))
        assert len(monitor.latencies_ms) == 1
    finally:
        monitor.close()


def test_lockstep_graph_uses_every_frame_and_drives_a_clean_lap():
    summary = run_graph(drive_graph(track_seed=SHORT_TRACK, lockstep=True), duration_s=180,
                        until=lambda monitor: monitor.laps_completed >= 1)
    assert summary["stopped_because"] == "goal reached" and summary["killed_nodes"] == []
    assert summary["laps_completed"] >= 1 and summary["off_track_events"] == 0
    # the simulator waits for each frame's command: however slow the machine, no frame is skipped
    assert summary["dropped_frames"] == 0 and summary["frames"] > 250


def test_killing_inference_stops_the_car_within_the_deadman_timeout(probe, nodes):
    procs = nodes(drive_graph(track_seed=SHORT_TRACK))
    assert probe.spin_until(lambda: probe.cmds and probe.cmds[-1][1].twist.linear.x > 0.2, 60), "never drove"
    killed_at = time.monotonic()
    procs["inference"].send_signal(signal.SIGKILL)
    assert probe.spin_until(lambda: probe.cmds[-1][0] > killed_at and probe.cmds[-1][1].twist.linear.x == 0.0, 5)
    stopped_at = next(t for t, m in probe.cmds if t > killed_at and m.twist.linear.x == 0.0)
    # 0.25 s deadman + one control period + DDS delivery; generous for a loaded 2-core CI machine
    assert stopped_at - killed_at < 0.25 + 0.2
    probe.spin_until(lambda: False, 0.5)
    assert all(m.twist.linear.x == 0.0 for t, m in probe.cmds if t > stopped_at)


def test_malformed_images_are_skipped_and_the_node_lives_on(probe, nodes):
    nodes([NodeSpec("inference", "inference_node", "jetracer_trt.nodes.inference_node", {})])
    pub = probe.node.create_publisher(Image, "camera/image_raw", LATEST_ONLY)
    good = Image()
    rgb_to_image(np.full((224, 224, 3), 120, np.uint8), good)
    assert probe.spin_until(lambda: pub.get_subscription_count() > 0, 30)
    probe.spin_until(lambda: False, 3.0)  # the engine warms up before it subscribes
    bad = []
    for change in ({"encoding": "mono16"}, {"step": 10}, {"data": b"\x00" * 100}, {"height": 0},
                   {"height": 112, "data": b"\x00" * (112 * 224 * 3)}):
        msg = Image()
        rgb_to_image(np.zeros((224, 224, 3), np.uint8), msg)
        for key, value in change.items():
            setattr(msg, key, value)
        bad.append(msg)
    for msg in bad:
        pub.publish(msg)
        probe.spin_until(lambda: False, 0.3)
    good.header.stamp.sec = 42
    pub.publish(good)
    assert probe.spin_until(lambda: any(t.header.stamp.sec == 42 for t in probe.targets), 10)
    assert probe.spin_until(lambda: probe.diag.get("jetracer_trt/inference", {}).get("malformed_images") == "5", 5)


def set_parameter(probe, name, value):
    client = probe.node.create_client(SetParameters, "/control/set_parameters")
    assert client.wait_for_service(timeout_sec=20)
    value_msg = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=value_msg)]))
    probe.spin_until(future.done, 10)
    return future.result().results[0]


def publish_targets(probe, pub, seconds, x=0.3):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        msg = PointStamped()
        msg.point.x = x
        pub.publish(msg)
        probe.spin_until(lambda: False, 1 / 30)


def test_nodes_stop_their_own_way_even_when_started_with_sigint_ignored(probe):
    # a shell starts a background job (`nohup jetracer-trt launch drive &`) with SIGINT ignored, and children
    # inherit that; the launcher stops nodes with SIGINT, and a killed control node never sends neutral
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        procs = start_nodes([control_spec()])
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert probe.spin_until(lambda: probe.cmds, 30), "the control node never published"
    finally:
        killed = stop_nodes(procs)
    assert killed == []
    assert procs["control"].returncode == 0


def test_runtime_parameter_changes_and_invalid_values_rejected(probe, nodes):
    nodes([control_spec(curve_slowdown=0.0)])
    pub = probe.node.create_publisher(PointStamped, "road_target", LATEST_ONLY)
    assert set_parameter(probe, "steering_gain", 0.5).successful
    publish_targets(probe, pub, 1.0, x=0.4)
    assert -probe.cmds[-1][1].twist.angular.z == pytest.approx(0.2, abs=1e-3)  # steering = 0.5 * 0.4
    for name, value in (("throttle", 2.0), ("steering_limit", 0.0), ("deadman_timeout_s", -1.0),
                        ("steering_gain", math.nan)):
        assert not set_parameter(probe, name, value).successful, name
    publish_targets(probe, pub, 0.5, x=0.4)
    assert -probe.cmds[-1][1].twist.angular.z == pytest.approx(0.2, abs=1e-3)  # unchanged


def test_emergency_stop_latches_until_released(probe, nodes):
    nodes([control_spec()])
    targets = probe.node.create_publisher(PointStamped, "road_target", LATEST_ONLY)
    estop = probe.node.create_publisher(Bool, "estop", RELIABLE)
    release = probe.node.create_publisher(Empty, "estop_release", RELIABLE)
    assert probe.spin_until(lambda: targets.get_subscription_count() > 0, 30)
    publish_targets(probe, targets, 1.0)
    assert probe.cmds[-1][1].twist.linear.x > 0
    estop.publish(Bool(data=True))
    publish_targets(probe, targets, 0.3)
    mark = time.monotonic()
    publish_targets(probe, targets, 1.0)  # targets keep coming: the stop holds
    assert all(m.twist.linear.x == 0.0 for t, m in probe.cmds if t > mark)
    release.publish(Empty())
    publish_targets(probe, targets, 1.0)
    assert probe.cmds[-1][1].twist.linear.x > 0


@pytest.mark.parametrize("kind", ["folder", "video"])
def test_camera_node_publishes_folder_and_video_frames(tmp_path, probe, nodes, kind):
    import cv2

    frames = [np.full((120, 160, 3), (40 * k, 0, 255 - 40 * k), np.uint8) for k in range(5)]
    if kind == "folder":
        for k, f in enumerate(frames):
            cv2.imwrite(str(tmp_path / f"{k}.png"), f)
        device = str(tmp_path)
    else:
        device = str(tmp_path / "clip.mp4")
        writer = cv2.VideoWriter(device, cv2.VideoWriter_fourcc(*"mp4v"), 30, (160, 120))
        for f in frames:
            writer.write(f)
        writer.release()
    images = []
    probe.node.create_subscription(Image, "camera/image_raw", images.append, LATEST_ONLY)
    nodes([NodeSpec("camera", "camera_node", "jetracer_trt.nodes.camera_node",
                    {"source": kind, "device": device, "fps": 20.0, "resize": [224, 224]})])
    assert probe.spin_until(lambda: len(images) >= 8, 30), f"{len(images)} images"
    msg = images[-1]
    assert (msg.width, msg.height, msg.encoding, msg.step) == (224, 224, "rgb8", 224 * 3)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in images]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))  # stamped at capture, in order
    assert abs(stamps[-1] - time.time()) < 5.0
