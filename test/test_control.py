import math

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
