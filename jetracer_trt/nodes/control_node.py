"""Road target -> steering and throttle -> actuator, through the safety governor (deadman, latched e-stop, slew,
non-finite guards). Every control parameter can be changed at runtime (`ros2 param set /control steering_gain 0.9`);
invalid values are rejected with the reason. The car goes neutral on shutdown, SIGTERM/SIGINT and any exception.

Topics: road_target (PointStamped, in), estop (std_msgs/Bool, in: true latches the stop), estop_release
(std_msgs/Empty, in), cmd (TwistStamped, out: linear.x = throttle, angular.z = -steering, both in [-1, 1], header =
the camera frame's header), /diagnostics (out).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import fields, replace

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from std_msgs.msg import Bool, Empty

from ..actuators import create_actuator
from ..config import load_config
from ..control import ControlParams
from ..errors import JetracerError
from ..safety import SafetyGovernor, SafetyLimits
from .common import LATEST_ONLY, RELIABLE, declare, diagnostics, main_for, ms_since, percentiles, steady_timer

CONTROL_DESCRIPTIONS = {
    "steering_gain": ("steering per unit of target x", 0.0, 5.0),
    "steering_offset": ("steering added so that the car goes straight at x = 0", -1.0, 1.0),
    "steering_limit": ("largest |steering| sent", 0.0, 1.0),
    "throttle": ("throttle on a straight", -1.0, 1.0),
    "curve_slowdown": ("throttle scale-down per unit of |x|", 0.0, 1.0),
    "min_throttle": ("throttle never drops below this in curves", -1.0, 1.0),
}


class ControlNode(Node):
    def __init__(self):
        super().__init__("control")
        defaults = load_config("control")
        values = {name: declare(self, name, float(defaults[name]), *CONTROL_DESCRIPTIONS[name])
                  for name in CONTROL_DESCRIPTIONS}
        limits = SafetyLimits(
            deadman_timeout_s=declare(self, "deadman_timeout_s", 0.25, "no fresh target for this long: stop",
                                      0.01, 5.0),
            steering_slew_per_s=declare(self, "steering_slew_per_s", 8.0, "fastest steering change per second",
                                        0.1, 100.0),
            throttle_slew_per_s=declare(self, "throttle_slew_per_s", 2.0, "fastest throttle increase per second",
                                        0.1, 100.0),
        )
        rate_hz = declare(self, "rate_hz", 50.0, "command rate when no target arrives (deadman checks)", 1.0, 500.0)
        kind = declare(self, "actuator", "sim", "pca9685 (the car's servo board), sim or none", read_only=True)
        calibration = declare(self, "calibration_file", "", "per-car calibration YAML (empty: the one "
                              "`jetracer-trt calibrate` wrote, ~/.config/jetracer_trt/car_calibration.yaml, "
                              "else config/car_calibration.yaml)",
                              read_only=True)
        check = declare(self, "check", False, "wheels-up check: throttle forced to 0, target and steering logged",
                        read_only=True)
        params = ControlParams(**values)
        params.validate()
        self.governor = SafetyGovernor(params, limits, force_zero_throttle=check)
        self.check = check
        self.actuator = create_actuator(kind, calibration=calibration or None)
        self.actuator.start()
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.cmd_pub = self.create_publisher(TwistStamped, "cmd", RELIABLE)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(PointStamped, "road_target", self.on_target, LATEST_ONLY)
        self.create_subscription(Bool, "estop", self.on_estop, RELIABLE)
        self.create_subscription(Empty, "estop_release", self.on_estop_release, RELIABLE)
        self._cmd = TwistStamped()
        self._e2e_ms = deque(maxlen=300)
        self.targets = 0
        # the deadman runs on the steady clock: with use_sim_time a stalled /clock must not stall the safety checks
        steady_timer(self, 1.0 / rate_hz, self.tick)
        steady_timer(self, 1.0, self.report)
        self.get_logger().info(f"actuator {kind}{' (CHECK MODE: throttle forced to 0)' if check else ''}")

    # -- inputs ---------------------------------------------------------------------------------------------------
    def on_target(self, msg: PointStamped) -> None:
        self.governor.on_target(msg.point.x, msg.point.y, time.monotonic())
        self._cmd.header = msg.header  # the capture stamp travels on to the command
        self.targets += 1
        self.send()
        self._e2e_ms.append(ms_since(msg.header.stamp))
        if self.check:
            steering, _ = self.governor.command
            self.get_logger().info(f"check: target x {msg.point.x:+.2f} y {msg.point.y:+.2f} -> steering "
                                   f"{steering:+.2f} ({'right' if steering > 0 else 'left'})",
                                   throttle_duration_sec=1.0)

    def on_estop(self, msg: Bool) -> None:
        if msg.data:
            self.governor.trigger_estop()
            self.get_logger().warning("EMERGENCY STOP latched: publish on estop_release to drive again")
            self.send()

    def on_estop_release(self, _msg: Empty) -> None:
        self.governor.release_estop()
        self.get_logger().info("emergency stop released")

    def on_set_parameters(self, changes) -> SetParametersResult:
        """Applies control and safety changes all at once, or none of them with the reason."""
        control = {f.name: getattr(self.governor.params, f.name) for f in fields(ControlParams)}
        limits = self.governor.limits
        for p in changes:
            if p.name in control:
                control[p.name] = float(p.value)
            elif p.name in ("deadman_timeout_s", "steering_slew_per_s", "throttle_slew_per_s"):
                limits = replace(limits, **{p.name: float(p.value)})
        try:
            params = ControlParams(**control)
            params.validate()
        except (JetracerError, TypeError, ValueError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        problems = limits.validate()
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        self.governor.params, self.governor.limits = params, limits
        return SetParametersResult(successful=True)

    # -- outputs --------------------------------------------------------------------------------------------------
    def tick(self) -> None:
        self.send()

    def send(self) -> None:
        steering, throttle = self.governor.update(time.monotonic())
        self.actuator.apply(steering, throttle)
        self._cmd.twist.linear.x = float(throttle)
        self._cmd.twist.angular.z = float(-steering)
        self.cmd_pub.publish(self._cmd)

    def report(self) -> None:
        p50, p99 = percentiles(self._e2e_ms)
        self.diag_pub.publish(diagnostics(self, "jetracer_trt/control", {
            "state": self.governor.state, "targets": self.targets, "steering": self.governor.command[0],
            "throttle": self.governor.command[1], "capture_to_command_ms_p50": p50, "capture_to_command_ms_p99": p99,
        }))

    def shutdown(self) -> None:
        """Neutral on every way out: the actuator first (the car), then one last neutral command on the topic."""
        self.actuator.close()  # neutral first, never raises
        self._cmd.twist.linear.x = 0.0
        self._cmd.twist.angular.z = 0.0
        self.cmd_pub.publish(self._cmd)


main = main_for(ControlNode)

if __name__ == "__main__":
    main()
