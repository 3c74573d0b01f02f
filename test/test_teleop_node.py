"""The teleop node in this process, reading the stand-in /dev/input of test_teleop: Joy in the canonical layout,
the released state at once on unplug (with a log line) and while no pad is there, resumed on replug."""
import os
import time

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("evdev")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ["ROS_DOMAIN_ID"] = str(100 + (os.getpid() + 53) % 100)

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Joy  # noqa: E402
from test_teleop import ABS, KEY, StandInInput, e  # noqa: E402

from jetracer_trt.errors import JetracerError  # noqa: E402
from jetracer_trt.nodes.common import LATEST_ONLY, stamp_to_ns  # noqa: E402
from jetracer_trt.nodes.teleop_node import TeleopNode  # noqa: E402
from jetracer_trt.teleop import link as link_module  # noqa: E402


class Graph:
    """The teleop node and a listener subscribed as the control node's mux is (latest-only)."""

    def __init__(self, bus):
        self.bus = bus
        self.node = TeleopNode()
        self.listener = rclpy.create_node("joy_listener")
        self.joys: list[tuple[float, Joy]] = []
        self.diags: list = []
        self.listener.create_subscription(Joy, "joy", lambda m: self.joys.append((time.monotonic(), m)), LATEST_ONLY)
        self.listener.create_subscription(DiagnosticArray, "/diagnostics",
                                          lambda m: self.diags.extend(m.status), 10)
        self.executor = rclpy.executors.SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.executor.add_node(self.listener)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def wait_for(self, condition, timeout_s: float = 5.0) -> float:
        """Seconds until the latest Joy meets ``condition``; fails after ``timeout_s``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            self.executor.spin_once(timeout_sec=0.01)
            if self.joys and condition(self.joys[-1][1]):
                return time.monotonic() - start
        raise AssertionError(f"no such Joy within {timeout_s} s; last: {self.joys[-1][1] if self.joys else None}")

    def close(self) -> None:
        self.node.shutdown()
        self.node.destroy_node()
        self.listener.destroy_node()


@pytest.fixture
def start(monkeypatch, tmp_path):
    bus = StandInInput()
    monkeypatch.setattr(link_module, "EvdevBackend", lambda: bus)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # the machine's own mappings stay out of it
    made = []

    def make(**params) -> Graph:
        args = ["--ros-args"]
        for key, value in params.items():
            args += ["-p", f"{key}:={value}"]
        rclpy.init(args=args)
        graph = Graph(bus)
        made.append(graph)
        return graph

    yield bus, make
    for graph in made:
        graph.close()
    if rclpy.ok():
        rclpy.shutdown()


def canonical(msg: Joy):
    return [round(a, 3) for a in msg.axes], list(msg.buttons)


RELEASED_JOY = ([0.0, 0.0], [0, 0, 0, 0])


def test_without_a_pad_the_released_state_goes_out_at_the_steady_rate_until_one_is_plugged(start):
    bus, make = start
    graph = make(rate_hz=20.0)
    graph.spin(1.0)
    assert 14 <= len(graph.joys) <= 30, len(graph.joys)
    assert all(canonical(m) == RELEASED_JOY for _, m in graph.joys)
    warn = [s for s in graph.diags if s.name == "jetracer_trt/teleop"][-1]
    assert warn.level == b"\x01" and "no gamepad found" in warn.message
    assert {kv.key: kv.value for kv in warn.values}["connected"] == "False"
    pad = bus.plug("dualsense", 3)
    graph.spin(0.8)  # found within the 0.5 s poll
    pad.send(KEY(e.BTN_TL, 1), ABS(e.ABS_RY, 0), ABS(e.ABS_X, 0))
    graph.wait_for(lambda m: canonical(m) == ([-1.0, 1.0], [1, 0, 0, 0]))
    graph.spin(1.1)
    ok = [s for s in graph.diags if s.name == "jetracer_trt/teleop"][-1]
    values = {kv.key: kv.value for kv in ok.values}
    assert ok.level == b"\x00" and values["gamepad"] == "DualSense Wireless Controller"
    assert values["mapping"] == "playstation_5" and values["ids"] == "054c:0ce6" and values["connected"] == "True"


def test_an_unplugged_pad_is_released_at_once_and_a_replugged_one_drives_again(start, capfd):
    bus, make = start
    pad = bus.plug("xbox_360", 0)
    graph = make(rate_hz=1.0)  # repeats 1 s apart: anything sooner is the change itself going out
    graph.spin(0.3)
    pad.send(KEY(e.BTN_TL, 1), ABS(e.ABS_RY, -32768), ABS(e.ABS_X, -32768))
    assert graph.wait_for(lambda m: canonical(m) == ([-1.0, 1.0], [1, 0, 0, 0])) < 0.5
    sent = graph.joys[-1][1]
    assert abs(stamp_to_ns(sent.header.stamp) - graph.node.link.stamp_ns) == 0  # stamped when it was read
    pad.send(KEY(e.BTN_START, 1))
    assert graph.wait_for(lambda m: list(m.buttons) == [1, 1, 0, 0]) < 0.5
    bus.unplug(pad)
    assert graph.wait_for(lambda m: canonical(m) == RELEASED_JOY) < 0.5
    graph.spin(1.5)
    assert all(canonical(m) == RELEASED_JOY for _, m in graph.joys[-2:])  # and it stays released
    assert "gamepad 'Microsoft X-Box 360 pad' lost (No such device): released state sent" in capfd.readouterr().err
    again = bus.plug("xbox_360", 1)
    graph.spin(0.8)
    again.send(KEY(e.BTN_TL, 1), ABS(e.ABS_RY, -32768))
    graph.wait_for(lambda m: canonical(m) == ([0.0, 1.0], [1, 0, 0, 0]))
    assert graph.node.link.reconnects == 1 and graph.node.link.disconnects == 1


def test_shutdown_sends_the_released_state_once_more(start):
    bus, make = start
    pad = bus.plug("f710_xinput", 0)
    graph = make()
    graph.spin(0.3)
    pad.send(KEY(e.BTN_TL, 1), ABS(e.ABS_RY, -32768))
    graph.wait_for(lambda m: list(m.buttons)[0] == 1)
    graph.node.shutdown()
    graph.wait_for(lambda m: canonical(m) == RELEASED_JOY, timeout_s=2.0)


@pytest.mark.parametrize("params, message", [
    ({"mapping": "xbox_one"}, "no gamepad mapping named 'xbox_one'"),
    ({"gamepads_file": "/nonexistent/gamepads.yaml"}, "gamepads file not found: /nonexistent/gamepads.yaml"),
])
def test_an_unknown_mapping_or_missing_gamepads_file_ends_the_node_with_one_line(start, params, message):
    _bus, make = start
    with pytest.raises(JetracerError, match=message):
        make(**params)
