"""The control node in this process: arming, stale frames, e-stop from any publisher, /cmd rate, runtime changes."""
import os
import time

import pytest

pytest.importorskip("rclpy")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ["ROS_DOMAIN_ID"] = str(100 + (os.getpid() + 37) % 100)

import rclpy  # noqa: E402
from in_process_node import node_maker  # noqa: E402
from geometry_msgs.msg import PointStamped  # noqa: E402
from rclpy.clock import Clock, ClockType  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from jetracer_trt.errors import JetracerError  # noqa: E402
from jetracer_trt.nodes.control_node import ControlNode  # noqa: E402


@pytest.fixture
def make_node():
    with node_maker(ControlNode, actuator="none") as make:
        yield make


def target(x=0.2, age_s=0.0, model_ms=0.0):
    msg = PointStamped()
    now = Clock(clock_type=ClockType.SYSTEM_TIME).now().nanoseconds - int(age_s * 1e9)
    msg.header.stamp.sec, msg.header.stamp.nanosec = now // 1_000_000_000, now % 1_000_000_000
    msg.point.x, msg.point.z = x, model_ms
    return msg


def feed(node, seconds, x=0.2, rate=30.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        node.on_target(target(x), {})
        time.sleep(1 / rate)


def test_a_real_car_starts_disarmed_with_its_slow_defaults_and_drives_once_armed(make_node):
    node = make_node()
    assert node.get_parameter("throttle").value == pytest.approx(0.20)
    feed(node, 0.3)
    assert node.governor.state == "disarmed" and node.governor.command[1] == 0.0
    node.on_arm(Bool(data=True))
    feed(node, 0.3)
    assert node.governor.state == "driving" and node.governor.command[1] > 0.1
    node.on_arm(Bool(data=False))
    assert node.governor.command[1] == 0.0 and node._cmd.twist.linear.x == 0.0


def test_the_simulator_profile_arms_itself(make_node):
    node = make_node(profile="sim", armed_at_start=True)
    assert node.get_parameter("throttle").value == pytest.approx(0.55)
    feed(node, 0.3)
    assert node.governor.state == "driving" and node.governor.command[1] > 0.3


def test_a_target_from_an_old_frame_does_not_steer(make_node):
    node = make_node(profile="sim", armed_at_start=True)
    node.on_target(target(0.5, age_s=0.5), {})
    node.send()
    assert node.governor.stale_targets == 1 and node.governor.state == "waiting" and node.targets == 0
    node.on_target(target(0.5, age_s=0.02), {})
    assert node.targets == 1


def test_stage_latencies_and_overhead_are_measured_per_frame(make_node):
    node = make_node(profile="sim", armed_at_start=True)
    for _ in range(20):
        published = Clock(clock_type=ClockType.SYSTEM_TIME).now().nanoseconds - 2_000_000
        node.on_target(target(0.1, age_s=0.012, model_ms=7.0), {"source_timestamp": published})
    p50 = {name: stats.whole_run()[0] for name, stats in node.stages.items()}
    assert 1.5 < p50["inference_to_control"] < 10
    assert 11 < p50["capture_to_command"] < 30
    assert p50["overhead"] == pytest.approx(p50["capture_to_command"] - 7.0, abs=1.0)
    assert 0 < p50["control"] < 20


def test_estop_is_heard_from_a_best_effort_publisher(make_node):
    node = make_node(profile="sim", armed_at_start=True)
    other = rclpy.create_node("estop_sender")
    pub = other.create_publisher(Bool, "estop", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(other)
    end = time.monotonic() + 10
    while not node.governor.estopped and time.monotonic() < end:
        pub.publish(Bool(data=True))
        executor.spin_once(timeout_sec=0.05)
    other.destroy_node()
    assert node.governor.estopped


def test_ticks_publish_only_what_targets_do_not(make_node, monkeypatch):
    node = make_node(profile="sim", armed_at_start=True, steering_slew_per_s=100.0, throttle_slew_per_s=100.0)
    sent = []
    monkeypatch.setattr(node.cmd_pub, "publish", lambda msg: sent.append(time.monotonic()))
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    end = time.monotonic() + 2.0
    next_target = time.monotonic()
    while time.monotonic() < end:
        if time.monotonic() >= next_target:
            node.on_target(target(0.1), {})
            next_target += 1 / 30
        executor.spin_once(timeout_sec=0.002)
    # 30 targets a second: about 30 commands a second, not 30 + the 50 Hz tick's
    assert 50 <= len(sent) <= 75, len(sent)
    sent.clear()
    idle_end = time.monotonic() + 1.0
    while time.monotonic() < idle_end:
        executor.spin_once(timeout_sec=0.01)
    # no targets: the deadman's stop goes out at once, then a keep-alive every 0.1 s
    assert 8 <= len(sent) <= 14, len(sent)
    assert node.governor.state == "deadman"


def test_rate_hz_changes_apply_at_runtime(make_node):
    node = make_node()
    before = node._tick_timer.timer_period_ns
    assert node.set_parameters([Parameter("rate_hz", value=10.0)])[0].successful
    assert node._tick_timer.timer_period_ns == pytest.approx(100_000_000) != before


@pytest.mark.parametrize("name, value, message", [
    ("steering_gain", 9.0, "Max: 5.0"), ("max_target_age_s", 0.0, "max_target_age_s"),
    ("min_throttle", -0.5, "Min: 0.0")])
def test_invalid_values_are_refused_with_the_range(make_node, name, value, message):
    node = make_node()
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful and message in result.reason
    assert node.get_parameter(name).value != value


def test_a_failed_actuator_write_is_counted_and_the_drive_goes_on(make_node, monkeypatch):
    node = make_node(profile="sim", armed_at_start=True)
    calls = []

    def flaky(steering, throttle):
        calls.append(throttle)
        if len(calls) == 2:
            raise JetracerError("lost the PCA9685")

    monkeypatch.setattr(node.actuator, "apply", flaky)
    feed(node, 0.3)
    assert node.actuator_errors == 1 and len(calls) > 3 and node.governor.state == "driving"


def joy(steering=0.0, throttle=0.0, held=False, toggle=False, estop=False):
    from sensor_msgs.msg import Joy

    return Joy(axes=[steering, throttle], buttons=[int(held), int(toggle), 0, int(estop)])


def test_the_pad_drives_in_manual_switches_modes_and_latches_the_estop(make_node):
    node = make_node(profile="sim", mode="manual")
    node.on_joy("joy", joy(-0.3, 1.0, held=True))
    time.sleep(0.05)
    node.on_joy("joy", joy(-0.3, 1.0, held=True))
    steering, throttle = node.governor.command
    assert node.governor.state == "manual" and steering < 0 and throttle > 0
    node.on_joy("joy", joy(-0.3, 1.0, held=False))
    assert node.governor.command == (0.0, 0.0)  # hold-to-drive: released, stopped
    node.on_joy("joy", joy(held=True, toggle=True))
    assert node.get_parameter("mode").value == "autopilot" and node.governor.mux.mode == "autopilot"
    node.on_joy("joy", joy(held=True, toggle=True))  # still pressed: no second toggle
    assert node.governor.mux.mode == "autopilot"
    node.on_joy("joy", joy(held=True, estop=True))
    assert node.governor.estopped


def test_a_joy_in_another_layout_is_ignored(make_node):
    from sensor_msgs.msg import Joy

    node = make_node(profile="sim", mode="manual")
    node.on_joy("joy", Joy(axes=[0.5], buttons=[1]))
    assert node.governor.mux.driver(time.monotonic()) is None


def test_an_unknown_mode_is_refused(make_node):
    node = make_node()
    result = node.set_parameters([Parameter("mode", value="turbo")])[0]
    assert not result.successful and "mode must be one of" in result.reason


def follow_target(x=0.2, scale=1.0, age_s=0.0):
    msg = target(x, age_s=age_s)
    msg.point.y = scale  # follow_target: point.y is the throttle scale
    return msg


def test_follow_targets_scale_the_throttle_and_a_nan_target_stops_at_once(make_node):
    node = make_node(profile="sim", armed_at_start=True, throttle_slew_per_s=100.0, deadman_timeout_s=1.0,
                     curve_slowdown=0.0, min_throttle=0.0)
    for scale in (1.0, 1.0, 0.5, 0.5):
        node.on_follow_target(follow_target(0.2, scale), {})
        time.sleep(0.02)
    assert node.governor.command[1] == pytest.approx(0.5 * 0.55)
    assert node.governor.command[0] > 0  # steering towards the person, on the right
    node.on_follow_target(follow_target(float("nan"), 0.0), {})  # lost: a deliberate stop
    assert node.governor.command[1] == 0.0 and node._cmd.twist.linear.x == 0.0
    for _ in range(3):  # a road target's y is a position, never a scale: full throttle
        node.on_target(target(0.2), {})
        time.sleep(0.02)
    assert node.governor.command[1] == pytest.approx(0.55)
