import math

import pytest

from jetracer_trt.control import ControlParams
from jetracer_trt.safety import SafetyGovernor, SafetyLimits


def governor(armed=True, **kw):
    return SafetyGovernor(ControlParams.from_config({"curve_slowdown": 0.0}, profile="sim"), SafetyLimits(**kw),
                          armed=armed)


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
    g = SafetyGovernor(ControlParams.from_config(profile="sim"), SafetyLimits(), force_zero_throttle=True)
    t = drive_for(g, 1.0, x=0.4)
    steering, throttle = g.update(t)
    assert throttle == 0.0 and steering != 0.0


def test_limits_validation():
    assert SafetyLimits().validate() == []
    assert SafetyLimits.from_config().validate() == []
    assert SafetyLimits(deadman_timeout_s=0).validate()
    assert SafetyLimits(steering_slew_per_s=-1).validate()
    assert SafetyLimits(max_target_age_s=math.nan).validate()


def test_disarmed_holds_the_throttle_at_zero_until_armed():
    g = governor(armed=False)
    t = drive_for(g, 1.0, x=0.3)
    steering, throttle = g.update(t)
    assert throttle == 0.0 and steering != 0.0 and g.state == "disarmed"
    g.arm()
    t = drive_for(g, 0.5, x=0.3, start=t)
    assert g.update(t)[1] > 0.3 and g.state == "driving"
    g.arm(False)
    assert g.update(t + 0.01)[1] == 0.0  # disarming stops at once


def test_a_target_from_a_stale_frame_is_not_used():
    g = governor(max_target_age_s=0.1, deadman_timeout_s=0.25)
    assert g.on_target(0.5, 0.0, captured_at=0.0, now=0.15) is False
    assert g.update(0.15) == (0.0, 0.0) and g.state == "waiting" and g.stale_targets == 1
    assert g.on_target(0.5, 0.0, captured_at=0.10, now=0.15) is True
    assert g.update(0.2)[1] > 0


def test_the_deadman_counts_from_the_capture_not_the_arrival():
    g = governor(max_target_age_s=0.2, deadman_timeout_s=0.25)
    t = drive_for(g, 0.5)
    # the last frame was captured at t, its target arrives 0.15 s late (still fresh enough to use)
    g.on_target(0.2, 0.0, captured_at=t, now=t + 0.15)
    assert g.update(t + 0.15)[1] > 0
    assert g.update(t + 0.26) == (0.0, 0.0) and g.state == "deadman"  # 0.26 s after the capture, 0.11 s after arrival


def test_an_older_frame_arriving_late_does_not_replace_a_newer_one():
    g = governor()
    g.on_target(0.5, 0.0, captured_at=1.0)
    assert g.on_target(-0.5, 0.0, captured_at=0.9, now=1.0) is False
    g.update(1.0)
    assert g.update(1.05)[0] > 0


def speeds(g, throttle_target, seconds, start, rate=50.0):
    g.params = ControlParams.from_config({"throttle": throttle_target, "curve_slowdown": 0.0, "min_throttle": 0.0},
                                         profile="sim")
    out, t = [], start
    while t < start + seconds - 1e-9:
        g.on_target(0.0, 0.0, t)
        out.append(g.update(t)[1])
        t += 1 / rate
    return out, t


def test_throttle_slew_limits_speeding_up_in_both_directions_and_stopping_is_immediate():
    g = governor(throttle_slew_per_s=1.0)
    forward, t = speeds(g, 0.5, 1.0, start=0.0)
    assert forward[1] == pytest.approx(0.02) and forward[-1] == pytest.approx(0.5)
    stopped, t = speeds(g, 0.0, 0.1, start=t)
    assert stopped[0] == 0.0  # stopping from forward: at once
    reverse, t = speeds(g, -0.5, 1.0, start=t)
    assert reverse[0] == pytest.approx(-0.02) and reverse[-1] == pytest.approx(-0.5)  # into reverse: ramped
    stopped, t = speeds(g, 0.0, 0.1, start=t)
    assert stopped[0] == 0.0  # stopping from reverse: at once (not ramped)
    reverse, t = speeds(g, -0.5, 1.0, start=t)
    forward, t = speeds(g, 0.5, 0.1, start=t)
    assert forward[0] == pytest.approx(0.0, abs=0.03)  # a change of direction drops to 0 first, never jumps across


def test_the_throttle_scale_of_a_target_scales_the_command():
    g = governor(throttle_slew_per_s=100.0)
    for k in range(10):
        g.on_target(0.0, 0.0, k * 0.03, throttle_scale=0.5)
        g.update(k * 0.03)
    assert g.command[1] == pytest.approx(0.5 * g.params.throttle)  # below min_throttle: the pace, not the floor
    assert g.command[1] < g.params.min_throttle
    g.on_target(0.0, 0.0, 0.31)  # the default: full throttle
    assert g.update(0.31)[1] == pytest.approx(g.params.throttle)


@pytest.mark.parametrize("x", [0.3, math.nan])
def test_a_target_with_throttle_scale_zero_stops_at_once_with_or_without_a_finite_x(x):
    g = governor(deadman_timeout_s=1.0)
    t = drive_for(g, 0.5)
    assert g.command[1] > 0.3
    assert g.on_target(x, 0.0, t, throttle_scale=0.0)  # a deliberate stop is used, not left to the deadman
    steering, throttle = g.update(t)
    assert throttle == 0.0 and g.state == "driving"
    if math.isnan(x):
        assert steering == 0.0  # wheels straight
    assert not g.on_target(math.nan, 0.0, t + 0.03)  # a NaN that would drive is still refused
