import math

import numpy as np

import pytest

from jetracer_trt.control import ControlParams, compute_command
from jetracer_trt.errors import JetracerError


def params(**overrides):
    return ControlParams.from_config(overrides, profile="sim")


@pytest.mark.parametrize("profile", ["car", "sim"])
def test_defaults_come_from_config_yaml(profile):
    from jetracer_trt.config import load_config

    expected = {k: float(v) for k, v in load_config("control")[profile].items()}
    assert ControlParams.from_config(profile=profile).as_dict() == expected


def test_the_real_car_defaults_are_slower_than_the_simulators():
    car, sim = ControlParams.from_config(profile="car"), ControlParams.from_config(profile="sim")
    assert 0 < car.throttle <= 0.25 < sim.throttle  # the JetRacer demo drives at 0.15-0.25
    assert car.min_throttle <= car.throttle
    assert ControlParams.from_config().throttle == car.throttle  # a real car unless told otherwise


def test_an_unknown_profile_is_refused():
    with pytest.raises(JetracerError, match="unknown control profile"):
        ControlParams.from_config(profile="race")


def test_steering_is_gain_times_x_plus_offset_clamped():
    p = params(steering_gain=0.33, steering_offset=-0.10, steering_limit=1.0)
    steering, _ = compute_command(0.5, 0.0, p)
    assert steering == pytest.approx(0.33 * 0.5 - 0.10)
    p = params(steering_gain=3.0, steering_offset=0.0, steering_limit=0.6)
    assert compute_command(0.9, 0.0, p)[0] == pytest.approx(0.6)
    assert compute_command(-0.9, 0.0, p)[0] == pytest.approx(-0.6)


def test_throttle_slows_down_in_curves_but_not_below_minimum():
    p = params(throttle=0.6, curve_slowdown=0.5, min_throttle=0.2)
    assert compute_command(0.0, 0.0, p)[1] == pytest.approx(0.6)
    assert compute_command(0.5, 0.0, p)[1] == pytest.approx(0.6 * 0.75)
    assert compute_command(-0.5, 0.0, p)[1] == pytest.approx(0.6 * 0.75)
    p = params(throttle=0.6, curve_slowdown=1.0, min_throttle=0.2)
    assert compute_command(1.0, 0.0, p)[1] == pytest.approx(0.2)


def test_reverse_slows_down_in_curves_and_keeps_the_minimum_magnitude():
    p = params(throttle=-0.6, curve_slowdown=0.5, min_throttle=0.2)
    assert compute_command(0.0, 0.0, p)[1] == pytest.approx(-0.6)
    assert compute_command(0.5, 0.0, p)[1] == pytest.approx(-0.6 * 0.75)
    p = params(throttle=-0.6, curve_slowdown=1.0, min_throttle=0.2)
    assert compute_command(1.0, 0.0, p)[1] == pytest.approx(-0.2)  # not +0.2, not -0.0
    p = params(throttle=-0.1, curve_slowdown=1.0, min_throttle=0.2)
    assert compute_command(1.0, 0.0, p)[1] == pytest.approx(-0.1)  # the floor never raises a slower throttle


def test_zero_throttle_stays_zero():
    p = params(throttle=0.0, min_throttle=0.2)
    assert compute_command(0.3, 0.0, p)[1] == 0.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_target_stops_the_car(bad):
    assert compute_command(bad, 0.0, params()) == (0.0, 0.0)
    assert compute_command(0.1, bad, params()) == (0.0, 0.0)


@pytest.mark.parametrize("overrides", [{"steering_limit": 0.0}, {"steering_limit": 1.5}, {"throttle": 2.0},
                                       {"curve_slowdown": -0.1}, {"steering_gain": math.nan}, {"bogus": 1.0},
                                       {"min_throttle": -0.2}, {"throttle": "fast"}])
def test_invalid_parameters_are_rejected(overrides):
    with pytest.raises(JetracerError):
        params(**overrides)


def test_a_refusal_names_the_valid_range():
    with pytest.raises(JetracerError, match=r"steering_gain must be in \[0, 5\], got 9"):
        params(steering_gain=9.0)


def test_throttle_scale_scales_the_throttle_after_the_floor_and_zero_stops():
    p = params(throttle=0.6, curve_slowdown=0.8, min_throttle=0.2)
    assert compute_command(0.0, 0.0, p, throttle_scale=0.5)[1] == pytest.approx(0.3)
    assert compute_command(0.5, 0.0, p, throttle_scale=0.5)[1] == pytest.approx(0.5 * 0.6 * 0.6)
    # in a sharp curve the floor holds the unscaled throttle (0.6 * 0.2 -> 0.2), then the pace scales it
    assert compute_command(1.0, 0.0, p)[1] == pytest.approx(0.2)
    assert compute_command(1.0, 0.0, p, throttle_scale=0.5)[1] == pytest.approx(0.1)
    steering, throttle = compute_command(0.5, 0.0, p, throttle_scale=0.0)
    assert throttle == 0.0 and steering == pytest.approx(0.5 * p.steering_gain)  # stopped means stopped
    reverse = params(throttle=-0.6, curve_slowdown=0.0, min_throttle=0.2)
    assert compute_command(0.0, 0.0, reverse, throttle_scale=0.5)[1] == pytest.approx(-0.3)


def test_a_falling_throttle_scale_slows_the_car_smoothly_to_a_stop_not_in_one_jump():
    """The floor below the scale would make any pace above 0 at least min_throttle: go and stop."""
    p = params(throttle=0.55, curve_slowdown=0.5, min_throttle=0.30)
    scales = [k / 20 for k in range(21)]
    throttles = [compute_command(0.1, 0.0, p, throttle_scale=s)[1] for s in scales]
    assert throttles == pytest.approx([s * throttles[-1] for s in scales])  # proportional down to 0
    assert max(np.diff(throttles)) < 0.05  # no step anywhere


@pytest.mark.parametrize("scale, expected", [(2.0, 0.6), (-1.0, 0.0), (math.nan, 0.0), (math.inf, 0.0)])
def test_throttle_scale_is_clamped_and_non_finite_counts_as_zero(scale, expected):
    p = params(throttle=0.6, curve_slowdown=0.0, min_throttle=0.2)
    assert compute_command(0.0, 0.0, p, throttle_scale=scale)[1] == pytest.approx(expected)
