"""Road target -> steering and throttle -> actuator, through the safety governor (arming, stale frames, deadman,
latched e-stop, slew, non-finite guards). Every control and safety setting can be changed at runtime (`ros2 param
set /control steering_gain 0.9`); invalid values are rejected with the valid range. The car goes neutral on
shutdown, on every signal that ends the node and on any exception.

Topics: road_target (PointStamped, in; ``point.z`` carries the model's milliseconds for latency accounting),
follow_target (PointStamped, in: what the inference node's pose task publishes, follow-me's target: ``point.x`` the
followed person's torso centre in [-1, 1], NaN for a deliberate stop, wheels straight; ``point.y`` the throttle
scale in [0, 1] the law multiplies the throttle by, 0 stops the car; ``point.z`` as on road_target; both target
topics feed the same law and safety), arm (std_msgs/Bool, in: true arms, false disarms), estop (std_msgs/Bool,
in: true latches the stop), estop_release (std_msgs/Empty, in), cmd (TwistStamped, out: linear.x = throttle,
angular.z = -steering, both in [-1, 1], header = the camera frame's header), /diagnostics (out). arm, estop and
estop_release accept reliable and best-effort publishers alike.
"""
from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool, Empty, String

from ..actuators import create_actuator
from ..control import CONTROL_SETTINGS, PROFILES, ControlParams, profile_defaults, setting_problems
from ..errors import JetracerError
from ..latency import LatencyStats
from ..mux import MODES, CommandMux, HandSource
from ..teleop.layout import RELEASED, TOPIC as JOY_TOPIC, PadState, pressed
from ..safety import SAFETY_SETTINGS, SafetyGovernor, SafetyLimits
from .common import LATEST_ONLY, RELIABLE, declare, diagnostics, main_for, steady_timer, stamp_to_ns

BEST_EFFORT_EVENTS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
WEB_JOY_TOPIC = "web/joy"  # the web page's virtual joystick, below the gamepad in priority
KEEPALIVE_S = 0.1  # the slowest /cmd rate while nothing changes (receivers time out after 0.5 s)
ARM_HINT = "ros2 topic pub --once /arm std_msgs/msg/Bool '{data: true}'"


class ControlNode(Node):
    def __init__(self):
        super().__init__("control")
        profile = declare(self, "profile", "car", f"control defaults from config/control.yaml: "
                          f"{' or '.join(PROFILES)} (car: slow, for a real car's first drives)", read_only=True)
        if profile not in PROFILES:
            raise JetracerError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        law, safety = profile_defaults(profile), profile_defaults("safety")
        values = {name: declare(self, name, float(law[name]), s.description, s.low, s.high)
                  for name, s in CONTROL_SETTINGS.items()}
        limits = {name: declare(self, name, float(safety[name]), s.description, s.low, s.high)
                  for name, s in SAFETY_SETTINGS.items()}
        self.rate_hz = declare(self, "rate_hz", 50.0, "rate of the safety check (deadman, slew) between targets; it "
                               "publishes a command only when it changed, or every 0.1 s when nothing else went "
                               "out (each target sends its own command at once)", 1.0, 500.0)
        kind = declare(self, "actuator", "sim", "pca9685 (the car's servo board), sim or none", read_only=True)
        calibration = declare(self, "calibration_file", "", "per-car calibration YAML (empty: the one "
                              "`jetracer-trt calibrate` wrote, ~/.config/jetracer_trt/car_calibration.yaml)",
                              read_only=True)
        allow_example = declare(self, "allow_example_calibration", False, "drive the board with the shipped "
                                "example calibration (config/car_calibration.yaml) instead of refusing",
                                read_only=True)
        armed = declare(self, "armed_at_start", False, "start armed; false: throttle held at 0 until true is "
                        "published on arm", read_only=True)
        mode = declare(self, "mode", "autopilot", f"who drives: {', '.join(MODES)} (local_angle: the model steers, "
                       "the hand's throttle); the pad's toggle button switches manual/autopilot")
        hand_timeout = declare(self, "hand_timeout_s", 0.5, "a hand source (gamepad on joy, web joystick on web/joy) "
                               "silent for this long counts as gone: the car stops", 0.05, 5.0, read_only=True)
        self.check = declare(self, "check", False, "wheels-up check: throttle forced to 0, target and steering "
                             "logged", read_only=True)
        problems = setting_problems(CONTROL_SETTINGS, values) + setting_problems(SAFETY_SETTINGS, limits)
        if problems:
            raise JetracerError("; ".join(problems))
        if mode not in MODES:
            raise JetracerError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        mux = CommandMux([HandSource(JOY_TOPIC, 100, hand_timeout), HandSource(WEB_JOY_TOPIC, 50, hand_timeout)],
                         mode)
        self.governor = SafetyGovernor(ControlParams(**values), SafetyLimits(**limits), force_zero_throttle=self.check,
                                       armed=armed, mux=mux)
        self.actuator = create_actuator(kind, calibration=calibration or None,
                                        allow_example_calibration=allow_example)
        self.actuator.start()
        self.add_on_set_parameters_callback(self.on_set_parameters)
        # QoS events: only the incompatible-QoS warning where a peer can get it wrong; every other event handler
        # would sit in the executor's wait set, rebuilt on every wake-up (50+ a second)
        warn_pub = PublisherEventCallbacks(incompatible_qos=self._warn_qos, use_default_callbacks=False)
        warn_sub = SubscriptionEventCallbacks(incompatible_qos=self._warn_qos, use_default_callbacks=False)
        self._quiet_pub = PublisherEventCallbacks(use_default_callbacks=False)
        self._quiet_sub = SubscriptionEventCallbacks(use_default_callbacks=False)
        self._warn_sub = warn_sub
        self.cmd_pub = self.create_publisher(TwistStamped, "cmd", RELIABLE, event_callbacks=warn_pub)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10, event_callbacks=self._quiet_pub)
        self.create_subscription(PointStamped, "road_target", self.on_target, LATEST_ONLY, event_callbacks=warn_sub)
        self.create_subscription(PointStamped, "follow_target", self.on_follow_target, LATEST_ONLY,
                                 event_callbacks=warn_sub)
        self.mode_pub = self.create_publisher(String, "mode", RELIABLE, event_callbacks=self._quiet_pub)
        self._hands: dict[str, PadState] = {}
        for topic in mux.sources:
            self.create_subscription(Joy, topic, lambda msg, topic=topic: self.on_joy(topic, msg), LATEST_ONLY,
                                     event_callbacks=warn_sub)
        self._subscribe_any_reliability(Bool, "arm", self.on_arm)
        self._subscribe_any_reliability(Bool, "estop", self.on_estop)
        self._subscribe_any_reliability(Empty, "estop_release", self.on_estop_release)
        self._cmd = TwistStamped()
        self._last_sent = float("-inf")
        self._sent = (0.0, 0.0)
        self.targets = self.actuator_errors = 0
        self.stages = {name: LatencyStats() for name in
                       ("inference_to_control", "control", "capture_to_command", "overhead")}
        self._system_clock = Clock(clock_type=ClockType.SYSTEM_TIME)  # the clock of the capture stamps
        # the deadman runs on the steady clock: with use_sim_time a stalled /clock must not stall the safety checks
        self._tick_timer = steady_timer(self, 1.0 / self.rate_hz, self.tick)
        steady_timer(self, 1.0, self.report)
        source = getattr(self.actuator, "calibration_source", "")
        self.get_logger().info(f"profile {profile}, actuator {kind}{f', calibration {source}' if source else ''}"
                               f"{' (CHECK MODE: throttle forced to 0)' if self.check else ''}")
        if not armed:
            self.get_logger().warning(f"DISARMED: throttle held at 0 until armed ({ARM_HINT})")

    def _subscribe_any_reliability(self, msg_type, topic: str, callback) -> None:
        """A reliable and a best-effort subscription: a reliable publisher is heard reliably, a best-effort one
        (which a reliable subscription cannot match) is heard too. Duplicates are harmless: these commands latch."""
        self.create_subscription(msg_type, topic, callback, RELIABLE, event_callbacks=self._quiet_sub)
        self.create_subscription(msg_type, topic, callback, BEST_EFFORT_EVENTS, event_callbacks=self._warn_sub)

    def _warn_qos(self, event) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        self.get_logger().warning(f"a peer with incompatible QoS ({policy}) cannot be matched: check its "
                                  "reliability and durability against the README's topic table")

    # -- inputs ---------------------------------------------------------------------------------------------------
    def on_follow_target(self, msg: PointStamped, info: dict) -> None:
        """follow-me's target: ``point.y`` is the throttle scale, not a position (see the module docstring)."""
        self.on_target(msg, info, throttle_scale=msg.point.y)

    def on_target(self, msg: PointStamped, info: dict, throttle_scale: float | None = None) -> None:
        """``info``: rclpy's MessageInfo (``source_timestamp``: when the inference node published).
        ``throttle_scale``: None for a road target (full throttle, ``point.y`` a position the law ignores)."""
        received = time.perf_counter()
        now_ns = self._system_clock.now().nanoseconds
        age_s = (now_ns - stamp_to_ns(msg.header.stamp)) / 1e9
        now = time.monotonic()
        road = throttle_scale is None
        used = self.governor.on_target(msg.point.x, msg.point.y if road else 0.0, captured_at=now - age_s, now=now,
                                       throttle_scale=1.0 if road else throttle_scale)
        if not used:
            if self.governor.stale_targets and age_s > self.governor.limits.max_target_age_s:
                self.get_logger().warning(f"target from a frame {age_s * 1e3:.0f} ms old not used (max_target_age_s "
                                          f"{self.governor.limits.max_target_age_s:g})", throttle_duration_sec=2.0)
            return
        self._cmd.header = msg.header  # the capture stamp travels on to the command
        self.targets += 1
        self.send()
        done_ns = self._system_clock.now().nanoseconds
        e2e_ms = (done_ns - stamp_to_ns(msg.header.stamp)) / 1e6
        self.stages["control"].add((time.perf_counter() - received) * 1e3)
        self.stages["capture_to_command"].add(e2e_ms)
        if msg.point.z > 0:  # the model's own time, set by the inference node
            self.stages["overhead"].add(e2e_ms - msg.point.z)
        if info and info.get("source_timestamp"):
            self.stages["inference_to_control"].add((now_ns - info["source_timestamp"]) / 1e6)
        if self.check:
            steering, _ = self.governor.command
            self.get_logger().info(f"check: target x {msg.point.x:+.2f} y {msg.point.y:+.2f} -> steering "
                                   f"{steering:+.2f} ({'right' if steering > 0 else 'left'})",
                                   throttle_duration_sec=1.0)

    def on_joy(self, topic: str, msg: Joy) -> None:
        """A hand source in the canonical layout (``jetracer_trt.teleop.layout``); toggles act on the press."""
        try:
            state = PadState.from_joy(msg.axes, msg.buttons)
        except ValueError as exc:
            self.get_logger().warning(f"{topic}: Joy ignored: {exc}", throttle_duration_sec=5.0)
            return
        edges = pressed(self._hands.get(topic, RELEASED), state)
        self._hands[topic] = state
        self.governor.mux.on_hand(topic, state.steering, state.throttle, state.deadman, time.monotonic())
        if "estop" in edges:
            self.on_estop(Bool(data=True))
        if "autopilot_toggle" in edges:
            self.set_parameters([Parameter("mode", value="autopilot" if self.governor.mux.mode == "manual"
                                           else "manual")])
        self.tick()

    def on_arm(self, msg: Bool) -> None:
        if bool(msg.data) == self.governor.armed:
            return
        self.governor.arm(bool(msg.data))
        if msg.data:
            self.get_logger().info("ARMED: the car drives when targets are fresh")
        else:
            self.get_logger().warning(f"DISARMED: throttle held at 0 ({ARM_HINT} to drive again)")
            self.send()

    def on_estop(self, msg: Bool) -> None:
        if msg.data and not self.governor.estopped:
            self.governor.trigger_estop()
            self.get_logger().warning("EMERGENCY STOP latched: publish on estop_release to drive again")
            self.send()

    def on_estop_release(self, _msg: Empty) -> None:
        if self.governor.estopped:
            self.governor.release_estop()
            self.get_logger().info("emergency stop released")

    def on_set_parameters(self, changes) -> SetParametersResult:
        """Applies control, safety and rate changes all at once, or none of them with the reason."""
        control = self.governor.params.as_dict()
        limits = vars(self.governor.limits).copy()
        rate_hz = self.rate_hz
        mode = self.governor.mux.mode
        for p in changes:
            if p.name in control:
                control[p.name] = p.value
            elif p.name in limits:
                limits[p.name] = p.value
            elif p.name == "rate_hz":
                rate_hz = float(p.value)
            elif p.name == "mode":
                mode = p.value
        problems = setting_problems(CONTROL_SETTINGS, control) + setting_problems(SAFETY_SETTINGS, limits)
        if mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        if mode != self.governor.mux.mode:
            self.governor.mux.set_mode(mode)
            self.get_logger().info(f"mode {mode}")
            self.mode_pub.publish(String(data=mode))
        self.governor.params = ControlParams(**{k: float(v) for k, v in control.items()})
        self.governor.limits = SafetyLimits(**{k: float(v) for k, v in limits.items()})
        if rate_hz != self.rate_hz:
            self.rate_hz = rate_hz
            self.destroy_timer(self._tick_timer)
            self._tick_timer = steady_timer(self, 1.0 / rate_hz, self.tick)
        return SetParametersResult(successful=True)

    # -- outputs --------------------------------------------------------------------------------------------------
    def tick(self) -> None:
        """The safety check at ``rate_hz``: it publishes only what targets do not, i.e. a command that changed
        since the last one sent (a deadman stop, a slew step) or, when nothing went out for ``KEEPALIVE_S``, the
        same one again (receivers such as the simulator's failsafe listen for a steady stream)."""
        command = self.governor.update(time.monotonic())
        if command != self._sent or time.monotonic() - self._last_sent >= KEEPALIVE_S:
            self.send(command)

    def send(self, command: tuple[float, float] | None = None) -> None:
        steering, throttle = command or self.governor.update(time.monotonic())
        try:
            self.actuator.apply(steering, throttle)
        except JetracerError as exc:  # a failed write: the actuator tried neutral; the next command tries again
            self.actuator_errors += 1
            self.get_logger().error(f"actuator: {exc}", throttle_duration_sec=1.0)
        self._cmd.twist.linear.x = float(throttle)
        self._cmd.twist.angular.z = float(-steering)
        self.cmd_pub.publish(self._cmd)
        self._sent = (steering, throttle)
        self._last_sent = time.monotonic()

    def report(self) -> None:
        self.mode_pub.publish(String(data=self.governor.mux.mode))
        values = {"mode": self.governor.mux.mode, "state": self.governor.state, "armed": self.governor.armed,
                  "targets": self.targets, "stale_targets": self.governor.stale_targets,
                  "steering": self.governor.command[0], "throttle": self.governor.command[1],
                  "actuator_errors": self.actuator_errors}
        values.update(getattr(self.actuator, "error_counts", {}))
        for name, stats in self.stages.items():
            values[f"{name}_ms_p50"], values[f"{name}_ms_p99"] = stats.whole_run()
        failing = self.actuator_errors and self.governor.state == "driving"
        self.diag_pub.publish(diagnostics(self, "jetracer_trt/control", values,
                                          level=DiagnosticStatus.WARN if failing else DiagnosticStatus.OK,
                                          message="actuator write errors" if failing else self.governor.state))

    def shutdown(self) -> None:
        """Neutral on every way out: the actuator first (the car), then one last neutral command on the topic."""
        self.actuator.close()  # neutral first, never raises
        self._cmd.twist.linear.x = 0.0
        self._cmd.twist.angular.z = 0.0
        self.cmd_pub.publish(self._cmd)
        # the process ends right after: give reliable subscribers (the simulator, a logger) the time to receive it
        self.cmd_pub.wait_for_all_acked(Duration(seconds=1.0))


main = main_for(ControlNode)

if __name__ == "__main__":
    main()
