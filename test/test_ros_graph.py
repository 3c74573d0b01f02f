"""Real rclpy nodes in separate processes, talking over DDS on localhost."""
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from typing import NamedTuple

import pytest

pytest.importorskip("rclpy")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)  # keep parallel test runs apart

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from geometry_msgs.msg import PointStamped, TwistStamped  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Bool, Empty  # noqa: E402

from jetracer_trt.graph import NodeSpec, drive_graph  # noqa: E402
from jetracer_trt.launcher import run_graph, start_nodes, stop_nodes  # noqa: E402
from jetracer_trt.nodes.common import LATEST_ONLY, RELIABLE, stamp_to_ns  # noqa: E402
from jetracer_trt.nodes.image_msg import rgb_to_image  # noqa: E402
from jetracer_trt.safety import SafetyLimits  # noqa: E402

SHORT_TRACK = 1004  # one of the shorter evaluation tracks: a lap takes ~10 s
CONTROL_PERIOD_S = 1 / 50  # the control node's rate_hz
WAKE_UP_S = 0.1  # how late a node's timer may run on a loaded 2-core machine


class Command(NamedTuple):
    at: float          # when the probe handled it (time.monotonic): late whenever the test's own process pauses
    msg: TwistStamped  # header: the capture stamp of the frame it was computed from
    published_ns: int  # when the control node published it (its writer's source timestamp, system clock)


class Probe:
    """A test-side node: publishes what a test needs and records what the graph says, with arrival times."""

    def __init__(self):
        if not rclpy.ok():
            rclpy.init(args=[])
        self.node = rclpy.create_node(f"probe_{os.getpid()}")
        self.cmds: list[Command] = []
        self.targets, self.diag = [], {}
        # every command, even across a pause of the test's own process: the control node sends 10-50 a second, and
        # with RELIABLE's depth of 10 the oldest unread ones would be dropped (a stop among them)
        every_command = QoSProfile(depth=1000, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(TwistStamped, "cmd", lambda m, info: self.cmds.append(
            Command(time.monotonic(), m, info["source_timestamp"])), every_command)
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
                    {"actuator": "none", "use_sim_time": False, "armed_at_start": True, **params})


def test_the_graph_drives_the_simulator_a_clean_lap():
    summary = run_graph(drive_graph(track_seed=SHORT_TRACK), duration_s=120,
                        until=lambda monitor: monitor.laps_completed >= 1)
    assert summary["stopped_because"] == "goal reached"
    assert summary["killed_nodes"] == []  # every node stopped on SIGINT, its own way (control: neutral)
    assert summary["laps_completed"] >= 1 and summary["off_track_events"] == 0
    assert summary["frames"] > 100 and summary["e2e_latency_ms"]["p50"] is not None
    assert summary["dropped_frames"] is not None and summary["dropped_frames"] >= 0
    # per-stage latency from the nodes' /diagnostics, whole run
    stages = summary["stages_ms"]
    assert set(stages) == {"capture_to_inference", "preprocess", "model", "inference_to_control", "control"}
    for name in ("capture_to_inference", "preprocess", "model"):
        assert stages[name]["p50"] > 0 and stages[name]["p99"] >= stages[name]["p50"], name
    assert summary["failed_nodes"] == {} and summary["neutral_by_supervisor"] is False


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
        assert monitor.latency.count == 1
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
    # Timed by the graph's clock, not the probe's: the stop's publication (the control node's writer stamps it)
    # against the capture stamp it carries, that of the last frame the control node used, which the deadman counts
    # from. When the probe handled it says little: a full garbage collection of the test's own process (~0.3 s with
    # torch and rclpy loaded, more after a long session) delays that, once to 1.0 s after the kill.
    deadman_s = SafetyLimits.from_config().deadman_timeout_s
    procs = nodes(drive_graph(track_seed=SHORT_TRACK))
    assert probe.spin_until(lambda: probe.cmds and probe.cmds[-1].msg.twist.linear.x > 0.2, 60), "never drove"
    killed_ns = time.time_ns()
    procs["inference"].send_signal(signal.SIGKILL)

    def first_stop():
        return next((c for c in probe.cmds if c.published_ns > killed_ns and c.msg.twist.linear.x == 0.0), None)

    assert probe.spin_until(lambda: first_stop() is not None, 5), "the car did not stop"
    probe.spin_until(lambda: False, 0.5)
    stop = first_stop()
    captured_ns = stamp_to_ns(stop.msg.header.stamp)
    handled_ns = stop.at * 1e9 + (time.time_ns() - time.monotonic_ns())  # on the system clock
    timeline = (f"the last frame used captured {(captured_ns - killed_ns) / 1e6:+.0f} ms from the kill; the stop "
                f"published {(stop.published_ns - captured_ns) / 1e6:.0f} ms after that capture, handled by the probe "
                f"{(handled_ns - stop.published_ns) / 1e6:.0f} ms after that")
    assert captured_ns < killed_ns, timeline  # so the stop came at most as long after the kill as after the capture
    # the first control tick after the deadman expired: a period (50 Hz) plus the wake-up of a loaded machine
    # (the control node's timer thread; up to 22 ms past the deadman seen with six busy loops on the two cores)
    assert deadman_s <= (stop.published_ns - captured_ns) / 1e9 < deadman_s + CONTROL_PERIOD_S + WAKE_UP_S, timeline
    assert all(c.msg.twist.linear.x == 0.0 for c in probe.cmds if c.published_ns > stop.published_ns)


def test_malformed_images_are_skipped_and_the_node_lives_on(probe, nodes):
    nodes([NodeSpec("inference", "inference_node", "jetracer_trt.nodes.inference_node", {})])
    pub = probe.node.create_publisher(Image, "camera/image_raw", LATEST_ONLY)
    good = Image()
    rgb_to_image(np.full((224, 224, 3), 120, np.uint8), good)
    assert probe.spin_until(lambda: pub.get_subscription_count() > 0, 30)
    probe.spin_until(lambda: False, 3.0)  # the engine warms up before it subscribes
    bad = []
    for change in ({"encoding": "mono16"}, {"step": 10}, {"data": b"\x00" * 100}, {"height": 0}):
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
    target = next(t for t in probe.targets if t.header.stamp.sec == 42)
    assert 0 < target.point.z < 1000  # the model's milliseconds for this frame, for the control node's accounting
    other_size = Image()
    rgb_to_image(np.full((112, 320, 3), 120, np.uint8), other_size)
    other_size.header.stamp.sec = 43
    pub.publish(other_size)  # not malformed: resized to the model's input by its contract
    assert probe.spin_until(lambda: any(t.header.stamp.sec == 43 for t in probe.targets), 10)
    assert probe.spin_until(lambda: probe.diag.get("jetracer_trt/inference", {}).get("malformed_images") == "4", 5)


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
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)  # a fresh frame
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
    assert probe.spin_until(lambda: pub.get_subscription_count() > 0 and probe.cmds, 30)  # both ways matched
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
    assert probe.spin_until(lambda: targets.get_subscription_count() > 0 and probe.cmds, 30)  # both ways matched
    publish_targets(probe, targets, 1.0)
    assert probe.cmds[-1][1].twist.linear.x > 0
    estop.publish(Bool(data=True))
    publish_targets(probe, targets, 0.3)
    mark = time.monotonic()
    publish_targets(probe, targets, 1.0)  # targets keep coming: the stop holds
    assert all(m.twist.linear.x == 0.0 for t, m, _ in probe.cmds if t > mark)
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
                    {"source": kind, "source_path": device, "fps": 20.0, "resize": [224, 224]})])
    assert probe.spin_until(lambda: len(images) >= 8, 30), f"{len(images)} images"
    msg = images[-1]
    assert (msg.width, msg.height, msg.encoding, msg.step) == (224, 224, "rgb8", 224 * 3)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in images]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))  # stamped at capture, in order
    assert abs(stamps[-1] - time.time()) < 5.0


# -- how a node ends: signals, failures, its supervisor gone ----------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT])
def test_a_node_stops_its_own_way_on_sighup_and_sigquit(probe, sig):
    # a dropped SSH session sends SIGHUP to the whole foreground process group; Ctrl-\ sends SIGQUIT
    procs = start_nodes([control_spec()])
    try:
        assert probe.spin_until(lambda: probe.cmds, 30), "the control node never published"
        procs["control"].send_signal(sig)
        procs["control"].wait(timeout=10)
    finally:
        stop_nodes(procs)
    assert procs["control"].returncode == 0  # Python's default would end it by the signal, shutdown() not run


NODE_SCRIPT = """
import sys, threading
from rclpy.node import Node
from jetracer_trt.errors import JetracerError
from jetracer_trt.nodes.common import run

class Probed(Node):
    def __init__(self):
        super().__init__("probed")
        if sys.argv[1] == "bad_input":
            raise JetracerError("model file not found: /missing.onnx")
        if sys.argv[1] == "bug":
            raise RuntimeError("a bug")
        threading.Timer(0.5, self.fail).start()  # as a capture thread would

    def fail(self):
        self.fatal_error = "camera gone for good"

    def shutdown(self):
        print("shutdown ran", flush=True)

sys.exit(run(Probed, args=sys.argv))
"""


@pytest.mark.parametrize("mode, status", [("bad_input", 2), ("bug", 1), ("fatal_error", 1)])
def test_a_failing_node_says_why_in_one_line_and_exits_non_zero(mode, status):
    done = subprocess.run([sys.executable, "-c", NODE_SCRIPT, mode, "--ros-args", "-r", "__node:=probed"],
                          capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == status, out
    if mode == "bug":
        assert "Traceback" in out and "RuntimeError: a bug" in out
        return
    assert "Traceback" not in out, out
    message = "model file not found: /missing.onnx" if mode == "bad_input" else "camera gone for good"
    assert len(re.findall(rf"\[ERROR\] \[[\d.]+\] \[probed\]: {re.escape(message)}", out)) == 1, out
    # fatal_error: the node existed, so it shut down its own way
    assert ("shutdown ran" in done.stdout) == (mode == "fatal_error")


def test_a_camera_node_with_a_bad_source_fails_in_one_line():
    spec = NodeSpec("camera", "camera_node", "jetracer_trt.nodes.camera_node", {"source": "bogus"})
    from jetracer_trt.launcher import ros_arguments

    done = subprocess.run([sys.executable, "-m", spec.module, *ros_arguments(spec)], capture_output=True, text=True,
                          timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in out, out
    assert re.search(r"\[ERROR\] \[[\d.]+\] \[camera\]: .*bogus", out), out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


def wait_gone(pids, timeout) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_a_node_stops_its_own_way_when_its_supervisor_is_killed(probe):
    # a supervisor that is SIGKILLed cannot stop its nodes; they must not drive on as orphans
    from jetracer_trt.launcher import node_environment, ros_arguments

    spec = control_spec()
    node_cmd = [sys.executable, "-m", spec.module, *ros_arguments(spec)]
    supervisor = subprocess.Popen([sys.executable, "-c", f"import subprocess, time; subprocess.Popen({node_cmd!r}); "
                                   "time.sleep(600)"], env=node_environment())
    try:
        assert probe.spin_until(lambda: probe.cmds, 30), "the control node never published"
        [node] = children_of(supervisor.pid)
        supervisor.kill()
        supervisor.wait()
        assert wait_gone([node], 10) == [], "the node outlived its supervisor"
        probe.spin_until(lambda: False, 0.5)
        assert probe.cmds[-1][1].twist.linear.x == 0.0  # its shutdown ran: the last command is neutral
    finally:
        for pid in children_of(supervisor.pid):
            os.kill(pid, signal.SIGKILL)


# -- the runner as a person uses it: a terminal, Ctrl-C, kill, a dropped session ---------------------------------------

CLI = [sys.executable, "-m", "jetracer_trt.cli.main", "launch", "drive"]
READY = (r"\[sim\]: track seed", r"\[inference\]: .* ready", r"\[control\]: profile")


class Terminal:
    """A command in the foreground of a pseudo-terminal of its own (session leader, the terminal's foreground
    process group), as an interactive shell runs it; reads what it prints."""

    def __init__(self, argv):
        import pty

        master, slave = pty.openpty()
        self.master = master
        self.proc = subprocess.Popen(["setsid", "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        os.close(slave)
        self.output = b""

    def read(self, seconds: float) -> None:
        import select

        end = time.monotonic() + seconds
        while self.master is not None and time.monotonic() < end:
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # the other side closed
                    return
                if not data:
                    return
                self.output += data

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def wait_for(self, patterns, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(re.search(p, self.text()) for p in patterns):
                return True
            self.read(0.2)
        return False

    def wait(self, timeout: float):
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self.read(0.2)
        self.read(0.5)
        return self.proc.poll()

    def hang_up(self) -> None:
        """What a dropped SSH session does: the terminal goes away (SIGHUP to its session)."""
        os.close(self.master)
        self.master = None

    def close(self) -> None:
        if self.proc.poll() is None:
            for pid in children_of(self.proc.pid):
                os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()
        if self.master is not None:
            os.close(self.master)


def summary_of(text: str) -> dict:
    lines = [line for line in text.splitlines() if line.startswith('{"frames"')]
    assert len(lines) == 1, text[-3000:]
    return json.loads(lines[0])


def started_in_a_terminal(extra=()) -> tuple[Terminal, list[int]]:
    terminal = Terminal([*CLI, "--track-seed", str(SHORT_TRACK), "--json", *extra])
    assert terminal.wait_for(READY, 90), terminal.text()[-3000:]
    terminal.read(1.0)
    nodes = children_of(terminal.proc.pid)
    assert len(nodes) == 3, nodes
    return terminal, nodes


def node_named(pids, name) -> int:
    for pid in pids:
        with open(f"/proc/{pid}/cmdline") as f:
            if f"jetracer_trt.nodes.{name}_node" in f.read().split("\0"):
                return pid
    raise AssertionError(f"no {name} node among {pids}")


def test_ctrl_c_in_a_terminal_stops_the_graph_in_order_and_prints_the_summary():
    terminal, nodes = started_in_a_terminal()
    try:
        sim, inference, control = (node_named(nodes, name) for name in ("sim", "inference", "control"))
        os.write(terminal.master, b"\x03")  # Ctrl-C: the terminal sends SIGINT to its foreground process group
        # the runner's order, not the terminal's: the frame source stops first, the rest after the pipeline drained
        assert wait_gone([sim], 10) == []
        assert alive(inference) and alive(control)
        status = terminal.wait(30)
        text = terminal.text()
        assert status == 0, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        assert wait_gone(nodes, 5) == []
        summary = summary_of(text)
        assert summary["stopped_because"] == "SIGINT"
        assert summary["killed_nodes"] == [] and summary["failed_nodes"] == {}
        assert summary["frames"] > 0
    finally:
        terminal.close()


def test_a_dropped_terminal_stops_every_node_and_the_runner_exits_cleanly():
    terminal, nodes = started_in_a_terminal()
    try:
        terminal.hang_up()  # SIGHUP to the session; writing to the terminal fails from now on
        assert terminal.wait(30) == 0
        assert wait_gone(nodes, 5) == []
    finally:
        terminal.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_the_runner_alone_stops_every_node_its_own_way(tmp_path, sig):
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        runner = subprocess.Popen([*CLI, "--track-seed", str(SHORT_TRACK), "--json"], stdout=f,
                                  stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 90
        while not all(re.search(p, out.read_text()) for p in READY) and time.monotonic() < end:
            time.sleep(0.2)
        time.sleep(1.0)
        nodes = children_of(runner.pid)
        assert len(nodes) == 3, out.read_text()[-3000:]
        runner.send_signal(sig)
        assert runner.wait(timeout=30) == 0, out.read_text()[-3000:]
        assert wait_gone(nodes, 5) == []  # no node left behind, none killed
        summary = summary_of(out.read_text())
        assert summary["stopped_because"] == sig.name and summary["killed_nodes"] == []
        assert summary["failed_nodes"] == {}
    finally:
        if runner.poll() is None:
            runner.kill()
        for pid in children_of(runner.pid):
            os.kill(pid, signal.SIGKILL)


def test_a_node_failing_at_start_ends_the_run_with_one_error_line_naming_it():
    done = subprocess.run([*CLI, "--model", "/missing.onnx", "--duration", "60", "--json"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: node inference failed: model file not found: /missing.onnx"
    assert re.search(r"\[ERROR\] \[[\d.]+\] \[inference\]: model file not found: /missing.onnx", done.stderr)
    summary = json.loads(done.stdout)
    assert summary["stopped_because"] == "node inference exited (exit status 2)"
    assert summary["failed_nodes"] == {"inference": "model file not found: /missing.onnx"}


# -- the last resort: the runner sets neutral when the control node could not --------------------------------------

def test_the_runner_sets_neutral_when_the_control_node_is_killed(monkeypatch, tmp_path):
    from test_launcher import record_neutral_writes

    import jetracer_trt.launcher as launcher

    calls = record_neutral_writes(monkeypatch)
    started = {}
    real_start = launcher.start_nodes
    monkeypatch.setattr(launcher, "start_nodes", lambda *a, **k: started.update(real_start(*a, **k)) or started)
    params = tmp_path / "car.yaml"
    params.write_text("control:\n  ros__parameters:\n    calibration_file: /home/jetson/car.yaml\n")

    def kill_once_driving(monitor):
        if "jetracer_trt/control" in monitor.status and started["control"].poll() is None:
            started["control"].send_signal(signal.SIGKILL)  # no shutdown(), no neutral of its own
        return False

    summary = run_graph([control_spec()], duration_s=60, params_file=str(params), until=kill_once_driving)
    assert calls == [("none", "/home/jetson/car.yaml")]  # the actuator and calibration the control node had
    assert summary["neutral_by_supervisor"] is True
    assert summary["stopped_because"] == "node control exited (killed by SIGKILL)"
    assert summary["failed_nodes"] == {"control": "killed by SIGKILL"}


def test_the_runner_sets_neutral_with_the_real_module_when_the_control_node_fails():
    summary = run_graph([control_spec(profile="bogus")], duration_s=60)
    assert summary["failed_nodes"]["control"].startswith("unknown profile 'bogus'")
    assert summary["neutral_by_supervisor"] is True  # actuator none: nothing to set, and it said so


# -- params file precedence (pip runner; the launch file: test_launch_file.py) -----------------------------------------

def get_parameter(probe, node, name):
    from rcl_interfaces.srv import GetParameters

    client = probe.node.create_client(GetParameters, f"/{node}/get_parameters")
    assert client.wait_for_service(timeout_sec=30)
    future = client.call_async(GetParameters.Request(names=[name]))
    assert probe.spin_until(future.done, 10)
    probe.node.destroy_client(client)
    return future.result().values[0]


@pytest.mark.parametrize("key", ["sim", "/sim", "/**"])
@pytest.mark.parametrize("given, expected", [(None, 1005), (1001, 1001)])
def test_a_params_file_wins_over_defaults_and_an_explicit_argument_wins_over_it(tmp_path, probe, key, given,
                                                                                expected):
    params = tmp_path / "sim.yaml"
    params.write_text(f"{key}:\n  ros__parameters:\n    track_seed: 1005\n")
    sim = drive_graph(track_seed=given)[0]
    procs = start_nodes([sim], str(params))
    try:
        assert get_parameter(probe, "sim", "track_seed").integer_value == expected
    finally:
        stop_nodes(procs)


def test_launch_drive_task_pose_json_sums_up_people_and_the_parser(tmp_path):
    """`jetracer-trt launch drive --task pose --json` with a random-weight pose model (the plumbing, not what it
    finds): every frame reaches the pose node and gets its command (lockstep), and the summary carries the people
    counts and the parser's latency."""
    from test_inference_node import export_random_pose_model

    model = export_random_pose_model(tmp_path)
    result = subprocess.run([sys.executable, "-m", "jetracer_trt.cli.main", "launch", "drive", "--task", "pose",
                             "--model", str(model), "--backend", "onnxruntime", "--lockstep", "true", "--duration",
                             "15", "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["failed_nodes"] == {} and summary["frames"] > 3
    assert summary["e2e_latency_ms"]["p50"] is not None  # the control node answered the follow targets
    pose = summary["pose"]
    assert pose["parse_ms"]["p50"] is not None and pose["follow"]
    assert 0 <= pose["frames_with_people"] <= summary["frames"]


def test_launch_drive_task_pose_without_the_pose_model_says_how_to_make_it(tmp_path):
    """An install whose models/ lacks the pose model: one error line naming the commands that make it."""
    import shutil

    from jetracer_trt.config import share_dir

    shutil.copytree(share_dir() / "config", tmp_path / "config")
    env = {**os.environ, "JETRACER_TRT_SHARE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "jetracer_trt.cli.main", "launch", "drive", "--task", "pose",
                             "--duration", "60"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    cause = re.search(r"node inference failed: the pose model (\S+) is not there: (.*)", error)
    assert cause and cause.group(1).endswith("models/pose_small.onnx"), error
    assert "jetracer-trt export --task pose" in cause.group(2)
