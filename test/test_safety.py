import math

import pytest

from jetracer_trt.control import ControlParams
from jetracer_trt.safety import SafetyGovernor, SafetyLimits


def governor(**kw):
    return SafetyGovernor(ControlParams.from_config({"curve_slowdown": 0.0}), SafetyLimits(**kw))


def drive_for(g, seconds, x=0.2, rate=30.0, start=0.0):
    t = start
    while t < start + seconds:
        g.on_target(x, 0.0, t)
        g.update(t)
        t += 1 / rate
    return t


def test_neutral_until_the_first_target():
    g = governor()
    assert g.update(0.0) == (0.0, 0.0) and g.state == "waiting"


def test_drives_then_deadman_stops_within_the_timeout():
    g = governor(deadman_timeout_s=0.25)
    t = drive_for(g, 1.0)
    steering, throttle = g.update(t)
    assert g.state == "driving" and throttle > 0.3 and steering == pytest.approx(0.2 * g.params.steering_gain)
    assert g.update(t + 0.2)[1] > 0  # still within the timeout
    assert g.update(t + 0.26) == (0.0, 0.0) and g.state == "deadman"
    g.on_target(0.0, 0.0, t + 1.0)  # targets again: driving again
    assert g.update(t + 1.0)[0] == 0.0 and g.state == "driving"


def test_estop_latches_until_released():
    g = governor()
    t = drive_for(g, 0.5)
    g.trigger_estop()
    for k in range(10):
        g.on_target(0.5, 0.0, t + k * 0.03)
        assert g.update(t + k * 0.03) == (0.0, 0.0) and g.state == "estop"
    g.release_estop()
    g.on_target(0.5, 0.0, t + 0.5)
    assert g.update(t + 0.5) != (0.0, 0.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_targets_are_ignored_and_trip_the_deadman(bad):
    g = governor(deadman_timeout_s=0.1)
    t = drive_for(g, 0.3)
    for k in range(1, 6):
        g.on_target(bad, 0.0, t + k * 0.03)
        g.update(t + k * 0.03)
    assert g.command == (0.0, 0.0) and g.state == "deadman"


def test_steering_slew_rate_limits_jumps_but_stopping_is_immediate():
    g = governor(steering_slew_per_s=3.0, throttle_slew_per_s=100.0)
    drive_for(g, 0.5, x=0.0)
    g.on_target(1.0, 0.0, 0.5)
    steering, _ = g.update(0.5 + 0.1)
    assert steering == pytest.approx(0.3, abs=1e-6)  # 3/s * 0.1 s
    g.trigger_estop()
    assert g.update(0.61) == (0.0, 0.0)


def test_wheels_up_check_mode_never_moves():
    g = SafetyGovernor(ControlParams.from_config(), SafetyLimits(), force_zero_throttle=True)
    t = drive_for(g, 1.0, x=0.4)
    steering, throttle = g.update(t)
    assert throttle == 0.0 and steering != 0.0


def test_limits_validation():
    assert SafetyLimits().validate() == []
    assert SafetyLimits(deadman_timeout_s=0).validate()
    assert SafetyLimits(steering_slew_per_s=-1).validate()
