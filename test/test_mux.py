"""Hand or model: the command mux inside the governor (hold-to-drive, priorities, time-outs, modes)."""
import math

import pytest

from jetracer_trt.mux import CommandMux, HandSource
from jetracer_trt.safety import SafetyGovernor


def governor(mode="autopilot", armed=False):
    mux = CommandMux([HandSource("pad", 100, 0.5), HandSource("web", 50, 0.5)], mode=mode)
    return SafetyGovernor.from_config("sim", {"steering_slew_per_s": 100.0, "throttle_slew_per_s": 100.0},
                                      armed=armed, mux=mux)


def run(g, seconds, start, hand=None, target=0.3, rate=50.0):
    """Feeds targets (x = ``target``, None: none) and the hand ``(name, steering, throttle, held)``."""
    t = start
    while t < start + seconds - 1e-9:
        if target is not None:
            g.on_target(target, 0.0, t)
        if hand is not None:
            g.mux.on_hand(*hand, now=t)
        g.update(t)
        t += 1 / rate
    return t


def test_manual_drives_with_the_hand_while_held_scaled_by_manual_throttle():
    g = governor("manual")
    t = run(g, 0.5, 0.0, hand=("pad", -0.5, 1.0, True), target=None)
    assert g.state == "manual" and g.command == pytest.approx((-0.5, g.params.manual_throttle))
    run(g, 0.1, t, hand=("pad", -0.5, 1.0, False), target=None)
    assert g.command == (0.0, 0.0) and g.state == "released"  # let go: stop at once


def test_holding_the_button_is_consent_but_without_a_hand_the_car_needs_arming():
    g = governor("autopilot", armed=False)
    t = run(g, 0.3, 0.0, hand=("pad", 0.0, 0.0, True))
    assert g.state == "driving" and g.command[1] > 0.3  # held: drives though not armed
    t = run(g, 0.1, t, hand=("pad", 0.0, 0.0, False))
    assert g.command == (0.0, 0.0) and g.state == "released"  # autopilot too stops on release
    g2 = governor("autopilot", armed=False)
    run(g2, 0.3, 0.0)
    assert g2.state == "disarmed" and g2.command[1] == 0.0  # no hand source ever: arming rules


def test_a_hand_that_goes_quiet_stops_the_car_in_every_mode():
    for mode in ("manual", "autopilot", "local_angle"):
        g = governor(mode)
        t = run(g, 0.3, 0.0, hand=("pad", 0.2, 0.8, True))
        assert g.command[1] > 0, mode
        run(g, 0.6, t)  # the pad's messages stop (unplugged teleop node, closed page)
        assert g.command == (0.0, 0.0) and g.state == "hand_lost", mode


def test_the_higher_priority_hand_drives():
    g = governor("manual")
    t = run(g, 0.2, 0.0, hand=("web", 0.4, 0.5, True), target=None)
    assert g.command[0] == pytest.approx(0.4)
    g.mux.on_hand("pad", -0.4, 0.5, True, now=t)
    g.update(t)
    assert g.command[0] == pytest.approx(-0.4)  # the pad outranks the web page
    g.mux.on_hand("pad", -0.4, 0.5, False, now=t + 0.02)
    g.update(t + 0.02)
    assert g.command[0] == pytest.approx(0.4)  # released: the web page (still held) drives again


def test_local_angle_steers_by_the_model_with_the_hands_throttle():
    g = governor("local_angle")
    run(g, 0.3, 0.0, hand=("pad", -1.0, 0.5, True), target=0.3)
    steering, throttle = g.command
    assert steering == pytest.approx(0.3 * g.params.steering_gain) and throttle == pytest.approx(
        0.5 * g.params.manual_throttle)


def test_estop_rules_over_the_hand():
    g = governor("manual")
    t = run(g, 0.2, 0.0, hand=("pad", 0.0, 1.0, True), target=None)
    g.trigger_estop()
    run(g, 0.2, t, hand=("pad", 0.0, 1.0, True), target=None)
    assert g.command == (0.0, 0.0) and g.state == "estop"


def test_non_finite_hand_values_are_neutral_and_modes_are_checked():
    g = governor("manual")
    run(g, 0.2, 0.0, hand=("pad", math.nan, math.inf, True), target=None)
    assert g.command == (0.0, 0.0)
    assert g.mux.toggle() == "autopilot" and g.mux.toggle() == "manual"
    with pytest.raises(ValueError, match="unknown mode"):
        g.mux.set_mode("turbo")
