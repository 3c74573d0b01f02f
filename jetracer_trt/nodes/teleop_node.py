"""A gamepad as sensor_msgs/Joy on ``joy``, in the canonical layout of jetracer_trt.teleop.layout (axes [steering,
throttle], buttons [deadman, autopilot_toggle, record_toggle, estop]) whatever the pad.

A reading thread keeps the pad open (jetracer_trt.teleop.link) and publishes every change as soon as it is read,
stamped with the time it was read; a steady timer republishes the current state ``rate_hz`` times a second
(stamped now), so the control node can time the source out. No pad at start, or a pad unplugged while driving, is
never an error: one log line says so, the released state (deadman off, sticks centred) goes out at once and keeps
going out, and the pad is looked for every 0.5 s until it is back. Shutdown sends the released state once more.
What cannot be fixed by waiting ends the node with one line: evdev missing, a bad gamepads file, an unknown
mapping name. /diagnostics: the pad's name, ids, mapping, connected, reconnects.
"""
from __future__ import annotations

import threading
import time
import traceback

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Joy

from ..teleop.layout import RATE_HZ, RELEASED, TOPIC, PadState
from ..teleop.link import GamepadLink, ids
from ..teleop.mapping import load_mappings, user_file
from .common import declare, diagnostics, main_for, steady_timer

# only the newest reading matters, but it must arrive: reliable, and never a queue of old stick positions
JOY_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
READ_SLICE_S = 0.05  # how long one read waits, so shutdown is never later than this


class TeleopNode(Node):
    def __init__(self):
        super().__init__("teleop")
        device = declare(self, "device", "", "the gamepad: /dev/input/eventN or a /dev/input/by-id/... link, a "
                         "device-name pattern (\"Xbox*\"), or empty for the first pad a mapping fits", read_only=True)
        mapping = declare(self, "mapping", "", "a mapping name from the gamepads files (empty: chosen by the pad's "
                          "name and vendor:product)", read_only=True)
        rate_hz = declare(self, "rate_hz", RATE_HZ, "Joy messages per second while nothing changes (changes go out "
                          "at once)", 1.0, 200.0, read_only=True)
        gamepads_file = declare(self, "gamepads_file", "", f"your mappings over config/gamepads.yaml (empty: "
                                f"{user_file()} when it exists)", read_only=True)
        self._stop = threading.Event()
        self.link = GamepadLink(load_mappings(gamepads_file or None), device=device, mapping=mapping,
                                log=self.get_logger(), sleep=self._stop.wait)
        self.pub = self.create_publisher(Joy, TOPIC, JOY_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._lock = threading.Lock()
        self.published = 0
        self.fatal_error: str | None = None
        self.publish(RELEASED, time.time_ns())
        steady_timer(self, 1.0 / rate_hz, self.repeat)
        steady_timer(self, 1.0, self.report)
        self.get_logger().info(f"publishing {TOPIC} at {rate_hz:g} Hz and on every change; mappings from "
                               f"{', '.join(self.link.mappings.files)}")
        self._thread = threading.Thread(target=self.read_loop, name="gamepad", daemon=True)
        self._thread.start()

    def publish(self, state: PadState, stamp_ns: int) -> None:
        msg = Joy(axes=state.axes, buttons=state.buttons)
        msg.header.stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        with self._lock:
            self.pub.publish(msg)
            self.published += 1

    def repeat(self) -> None:
        self.publish(self.link.state, time.time_ns())

    def read_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self.link.step(READ_SLICE_S):
                    self.publish(self.link.state, self.link.stamp_ns)
        except Exception as exc:  # noqa: BLE001 - a bug: keep its traceback and end the node (receivers stop the car)
            self.get_logger().error(traceback.format_exc())
            self.fatal_error = f"the gamepad thread failed: {exc!r}"

    def report(self) -> None:
        link = self.link
        if self.fatal_error is not None:
            level, message = DiagnosticStatus.ERROR, self.fatal_error
        elif link.connected:
            level, message = DiagnosticStatus.OK, "ok"
        else:
            level, message = DiagnosticStatus.WARN, f"{link.problem or 'no gamepad'}: publishing the released state"
        device = link.device
        self.diag_pub.publish(diagnostics(self, "jetracer_trt/teleop", {
            "gamepad": device.name if device is not None else "", "ids": ids(device) if device is not None else "",
            "path": device.path if device is not None else "", "mapping": link.mapping.name if link.mapping else "",
            "connected": link.connected, "reconnects": link.reconnects, "disconnects": link.disconnects,
            "events": link.events, "published": self.published, "deadman": link.state.deadman,
        }, level=level, message=message))

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.link.close()
        self.publish(RELEASED, time.time_ns())  # receivers stop at once instead of after their time-out


main = main_for(TeleopNode)

if __name__ == "__main__":
    main()
