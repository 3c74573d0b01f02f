"""Where steering is computed: the control law from the road target (x, y) to steering and throttle.

    steering = clamp(steering_gain * x + steering_offset, -steering_limit, steering_limit)
    throttle = max(min_throttle, throttle * (1 - curve_slowdown * |x|))

x is the target's horizontal image position in [-1, 1] (positive = right of centre, so positive steering turns
right); the further the target sits to the side, the sharper the curve, so the car also slows down there, as the
JetRacer live demo's users do by hand. A non-finite target (a broken model output) stops the car with the wheels
straight. Defaults: ``config/control.yaml``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .config import load_config
from .errors import JetracerError


@dataclass(frozen=True)
class ControlParams:
    steering_gain: float
    steering_offset: float
    steering_limit: float
    throttle: float
    curve_slowdown: float
    min_throttle: float

    @classmethod
    def from_config(cls, overrides: dict | None = None) -> "ControlParams":
        values = load_config("control")
        values.update(overrides or {})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise JetracerError(f"unknown control parameter(s): {', '.join(sorted(unknown))}")
        params = cls(**{k: float(v) for k, v in values.items()})
        params.validate()
        return params

    def validate(self) -> None:
        """Raises JetracerError for values that would make the car unsafe or the law meaningless."""
        problems = []
        for f in fields(self):
            if not math.isfinite(getattr(self, f.name)):
                problems.append(f"{f.name} must be finite")
        if not 0 < self.steering_limit <= 1:
            problems.append("steering_limit must be in (0, 1]")
        if not -1 <= self.throttle <= 1 or not -1 <= self.min_throttle <= 1:
            problems.append("throttle and min_throttle must be in [-1, 1]")
        if not 0 <= self.curve_slowdown <= 1:
            problems.append("curve_slowdown must be in [0, 1]")
        if problems:
            raise JetracerError("invalid control parameters: " + "; ".join(problems))

    def as_dict(self) -> dict:
        return asdict(self)


def compute_command(x: float, y: float, params: ControlParams) -> tuple[float, float]:
    """Road target -> (steering, throttle), both in [-1, 1]. ``y`` is accepted for future laws and unused now."""
    if not (math.isfinite(x) and math.isfinite(y)):
        return 0.0, 0.0
    x = min(1.0, max(-1.0, x))
    limit = params.steering_limit
    steering = min(limit, max(-limit, params.steering_gain * x + params.steering_offset))
    # min_throttle keeps the car moving through curves; it never raises a throttle set below it (0 = stopped)
    floor = min(params.min_throttle, params.throttle)
    throttle = max(floor, params.throttle * (1.0 - params.curve_slowdown * abs(x)))
    return steering, throttle
