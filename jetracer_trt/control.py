"""Where steering is computed: the control law from the road target (x, y) to steering and throttle.

    steering = clamp(steering_gain * x + steering_offset, -steering_limit, steering_limit)
    |throttle| = max(min_throttle, |throttle| * (1 - curve_slowdown * |x|)), with the sign of ``throttle``

x is the target's horizontal image position in [-1, 1] (positive = right of centre, so positive steering turns
right); the further the target sits to the side, the sharper the curve, so the car also slows down there, as the
JetRacer live demo's users do by hand. ``min_throttle`` is a magnitude: it keeps the car moving through curves in
either direction and never raises a throttle set below it (0 = stopped). A non-finite target (a broken model
output) stops the car with the wheels straight.

``throttle_scale`` in [0, 1] comes with a target from a behaviour that sets its own pace (follow-me slows down as
its person comes near, ``follow.py``): it scales the magnitude above, after the ``min_throttle`` floor, so the
speed follows the scale smoothly down to 0 (stopped means stopped). The floor is the curve rule's (slowing down for
a curve never stalls the car); applied after the scale it would turn any pace above 0 into at least
``min_throttle``: the car would go and stop instead of slowing down. Out-of-range values are clamped and a
non-finite one counts as 0. At 1 (road following) the law is the one above.

Defaults: ``config/control.yaml``, profile ``car`` (a real car: slow) or ``sim`` (the simulated car). Every setting
has one entry in ``CONTROL_SETTINGS`` (description and valid range); the ROS node declares its parameters from it
and every validation uses it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .config import load_config
from .errors import JetracerError

PROFILES = ("car", "sim")


@dataclass(frozen=True)
class Setting:
    """A numeric setting's meaning and valid range (inclusive)."""

    description: str
    low: float
    high: float

    def problem(self, name: str, value) -> str | None:
        """Why ``value`` is not valid for this setting (None when it is)."""
        try:
            v = float(value)
        except (TypeError, ValueError):
            return f"{name} must be a number, got {value!r}"
        if not math.isfinite(v) or not self.low <= v <= self.high:
            return f"{name} must be in [{self.low:g}, {self.high:g}], got {value!r}"
        return None


CONTROL_SETTINGS = {
    "steering_gain": Setting("steering per unit of target x", 0.0, 5.0),
    "steering_offset": Setting("steering added so that the car goes straight at x = 0", -1.0, 1.0),
    "steering_limit": Setting("largest |steering| sent", 0.01, 1.0),
    "throttle": Setting("throttle on a straight (negative: reverse)", -1.0, 1.0),
    "curve_slowdown": Setting("|throttle| scale-down per unit of |x|", 0.0, 1.0),
    "min_throttle": Setting("|throttle| never drops below this in curves (a magnitude)", 0.0, 1.0),
    "manual_throttle": Setting("throttle at full stick when a hand drives (gamepad, web joystick)", 0.0, 1.0),
}


def setting_problems(settings: dict[str, Setting], values: dict) -> list[str]:
    """Every reason ``values`` are invalid for ``settings`` (unknown names included); empty when all are valid."""
    problems = [f"unknown setting {name!r} (valid: {', '.join(settings)})" for name in values if name not in settings]
    problems += [p for name, value in values.items() if name in settings
                 for p in [settings[name].problem(name, value)] if p]
    return problems


def profile_defaults(section: str) -> dict:
    """One section of ``config/control.yaml`` (``car``, ``sim``, ``safety`` or ``sim_pose_safety``)."""
    config = load_config("control")
    if section not in config:
        raise JetracerError(f"config/control.yaml has no {section!r} section")
    return dict(config[section])


@dataclass(frozen=True)
class ControlParams:
    steering_gain: float
    steering_offset: float
    steering_limit: float
    throttle: float
    curve_slowdown: float
    min_throttle: float
    manual_throttle: float

    @classmethod
    def from_config(cls, overrides: dict | None = None, profile: str = "car") -> "ControlParams":
        """The ``profile``'s defaults from config/control.yaml with ``overrides`` applied, validated."""
        if profile not in PROFILES:
            raise JetracerError(f"unknown control profile {profile!r}; choose one of {', '.join(PROFILES)}")
        values = profile_defaults(profile)
        values.update(overrides or {})
        problems = setting_problems(CONTROL_SETTINGS, values)
        missing = set(CONTROL_SETTINGS) - set(values)
        if missing:
            problems.append(f"missing setting(s): {', '.join(sorted(missing))}")
        if problems:
            raise JetracerError("invalid control parameters: " + "; ".join(problems))
        return cls(**{k: float(v) for k, v in values.items()})

    def validate(self) -> None:
        """Raises JetracerError for values that would make the car unsafe or the law meaningless."""
        problems = setting_problems(CONTROL_SETTINGS, self.as_dict())
        if problems:
            raise JetracerError("invalid control parameters: " + "; ".join(problems))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def clamp_throttle_scale(scale: float) -> float:
    """``throttle_scale`` as the law uses it: clamped to [0, 1], a non-finite value as 0 (stopped)."""
    return min(1.0, max(0.0, scale)) if math.isfinite(scale) else 0.0


def compute_command(x: float, y: float, params: ControlParams, throttle_scale: float = 1.0) -> tuple[float, float]:
    """Road target -> (steering, throttle), both in [-1, 1]. ``y`` is accepted for future laws and unused now;
    ``throttle_scale`` (see the module docstring) scales |throttle| after the ``min_throttle`` floor, 0 stops."""
    if not (math.isfinite(x) and math.isfinite(y)):
        return 0.0, 0.0
    x = min(1.0, max(-1.0, x))
    limit = params.steering_limit
    steering = min(limit, max(-limit, params.steering_gain * x + params.steering_offset))
    scale = clamp_throttle_scale(throttle_scale)
    speed = abs(params.throttle)
    if not (speed and scale):
        return steering, 0.0
    floor = min(params.min_throttle, speed)
    magnitude = scale * max(floor, speed * (1.0 - params.curve_slowdown * abs(x)))
    return steering, math.copysign(magnitude, params.throttle)


STEERING_LABEL_Y = -0.12  # where the simulator's road targets sit (0.55 m ahead): y of labels made from steering


def target_from_steering(steering: float, params: ControlParams, y: float) -> tuple[float, float]:
    """The road target (x, y) whose command is ``steering``: the law's steering line run backwards, for labels
    recorded from a hand's steering. The law ignores y, so it is given (the height targets usually sit at)."""
    if params.steering_gain == 0 or not math.isfinite(steering):
        return 0.0, y
    x = (steering - params.steering_offset) / params.steering_gain
    return min(1.0, max(-1.0, x)), y
