"""What stands between the control law and the motors: arming, deadman, emergency stop, stale frames, slew rate,
non-finite guards.

ROS-free, so it is tested without a graph; the control node feeds it targets and the clock and sends what it says.
Times are seconds on one monotonic clock; a target comes with the time its camera frame was captured.

- **Armed**: until ``arm()`` the throttle is held at 0 (steering still follows the road, so a wheels-up look at
  the car shows what it would do). A car started at boot therefore does not drive off by itself.
- **Stale frames**: a target whose frame was captured more than ``max_target_age_s`` ago is not used: a slow or
  queued pipeline never steers from the past.
- **Deadman**: no target from a frame captured within ``deadman_timeout_s`` -> throttle 0 and steering centred,
  until fresh targets arrive again. A crashed or stalled camera or inference process stops the car within the
  timeout, counted from the last used frame's capture, not from when its target arrived.
- **Emergency stop**: latched. Once triggered only ``release_estop()`` clears it (a deliberate act, not a new target).
- **Slew rate**: steering moves at most ``steering_slew_per_s`` per second, so a single bad frame cannot jerk the
  wheels across; |throttle| grows at most ``throttle_slew_per_s`` per second in either direction (a change of
  direction goes through 0), while slowing down and stopping are always immediate.
- **Non-finite**: a NaN or inf target counts as no target, except a deliberate stop: a target with
  ``throttle_scale`` 0 (follow-me that lost its person sends x = NaN with scale 0) is used, and stops the car at once
  with the wheels straight instead of after the deadman's timeout.
- **Throttle scale**: a target may come with ``throttle_scale`` in [0, 1] (``control.compute_command``): the
  behaviour's own pace, applied by the law, under every rule above.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .control import (
    CONTROL_SETTINGS, ControlParams, Setting, clamp_throttle_scale, compute_command, profile_defaults,
    setting_problems,
)
from .errors import JetracerError
from .mux import CommandMux

NEUTRAL = (0.0, 0.0)

SAFETY_SETTINGS = {
    "deadman_timeout_s": Setting("no target from a frame captured within this long: throttle 0, wheels straight",
                                 0.01, 5.0),
    "max_target_age_s": Setting("targets from frames older than this are not used (about three frame periods)",
                                0.005, 5.0),
    "steering_slew_per_s": Setting("fastest steering change per second", 0.1, 100.0),
    "throttle_slew_per_s": Setting("fastest |throttle| increase per second (decreases are immediate)", 0.1, 100.0),
}


@dataclass(frozen=True)
class SafetyLimits:
    deadman_timeout_s: float = 0.25
    max_target_age_s: float = 0.10
    steering_slew_per_s: float = 8.0
    throttle_slew_per_s: float = 2.0

    @classmethod
    def from_config(cls, overrides: dict | None = None) -> "SafetyLimits":
        values = profile_defaults("safety")
        values.update(overrides or {})
        return cls(**{k: float(v) for k, v in values.items()})

    def validate(self) -> list[str]:
        return setting_problems(SAFETY_SETTINGS, asdict(self))


class SafetyGovernor:
    """Turns (target, time) into the command to send, holding every safety rule; ``state`` says which rule rules:
    ``waiting`` (no target yet), ``driving``, ``disarmed`` (would drive, throttle held at 0), ``deadman``,
    ``estop``."""

    @classmethod
    def from_config(cls, profile: str = "car", overrides: dict | None = None, **kw) -> "SafetyGovernor":
        """The controller every driver runs (the control node, ``sim eval``): the ``profile``'s law and the safety
        settings of config/control.yaml, with ``overrides`` (any of ``CONTROL_SETTINGS`` and ``SAFETY_SETTINGS``)
        applied; unknown names and out-of-range values are refused with the valid range."""
        overrides = dict(overrides or {})
        problems = setting_problems({**CONTROL_SETTINGS, **SAFETY_SETTINGS}, overrides)
        if problems:
            raise JetracerError("; ".join(problems))
        law = {k: v for k, v in overrides.items() if k in CONTROL_SETTINGS}
        limits = {k: v for k, v in overrides.items() if k in SAFETY_SETTINGS}
        return cls(ControlParams.from_config(law, profile=profile), SafetyLimits.from_config(limits), **kw)

    def settings(self) -> dict:
        """Every setting that drives, by name (for reports)."""
        return {**self.params.as_dict(), **asdict(self.limits)}

    def __init__(self, params: ControlParams, limits: SafetyLimits, force_zero_throttle: bool = False,
                 armed: bool = True, mux: CommandMux | None = None):
        self.params = params
        self.mux = mux or CommandMux([])  # no hand sources: the model drives alone
        self.limits = limits
        self.force_zero_throttle = force_zero_throttle  # wheels-up check mode
        self.armed = armed
        self.estopped = False
        self.state = "waiting"
        self.stale_targets = 0  # targets refused because their frame was too old
        self._target: tuple[float, float, float] | None = None  # x, y, throttle scale
        self._captured_at: float | None = None
        self._last_time: float | None = None
        self.command = NEUTRAL

    def on_target(self, x: float, y: float, captured_at: float, now: float | None = None,
                  throttle_scale: float = 1.0) -> bool:
        """A road target from the frame captured at ``captured_at``; ``now`` defaults to the capture time (a
        target that arrives at once); ``throttle_scale`` in [0, 1] scales its throttle (0: stop, see the module
        docstring). Returns whether it will be used (finite, or a deliberate stop, and fresh enough)."""
        scale = clamp_throttle_scale(throttle_scale)
        if not (math.isfinite(x) and math.isfinite(y)) and scale > 0:
            return False
        if now is not None and now - captured_at > self.limits.max_target_age_s:
            self.stale_targets += 1
            return False
        if self._captured_at is not None and captured_at < self._captured_at:
            return False  # an older frame overtaken by a newer one
        self._target = (x, y, scale)
        self._captured_at = captured_at
        return True

    def trigger_estop(self) -> None:
        self.estopped = True

    def release_estop(self) -> None:
        self.estopped = False

    def arm(self, armed: bool = True) -> None:
        self.armed = armed

    def update(self, now: float) -> tuple[float, float]:
        """The command for ``now``: call it at the control rate (and on every target)."""
        dt = 0.0 if self._last_time is None else max(0.0, now - self._last_time)
        self._last_time = now
        if self.estopped:
            return self._stop("estop")
        fresh = self._captured_at is not None and now - self._captured_at <= self.limits.deadman_timeout_s
        autopilot = compute_command(*self._target[:2], self.params, self._target[2]) if fresh else None
        selection = self.mux.select(now, autopilot, "waiting" if self._captured_at is None else "deadman")
        if selection.command is None:
            return self._stop(selection.state)
        steering, throttle = self._limited(*selection.command)
        self.state = selection.state
        if self.force_zero_throttle:
            throttle = 0.0
        elif not (self.armed or selection.held):
            throttle, self.state = 0.0, "disarmed"
        prev_steering, prev_throttle = self.command
        max_step = self.limits.steering_slew_per_s * dt
        steering = prev_steering + min(max_step, max(-max_step, steering - prev_steering))
        self.command = (steering, _slewed_throttle(prev_throttle, throttle, self.limits.throttle_slew_per_s * dt))
        return self.command

    def _limited(self, steering: float, throttle: float) -> tuple[float, float]:
        """What a hand gives, within the law's steering limit and scaled by ``manual_throttle`` (the model's part
        of the command already went through the law)."""
        mode = self.mux.mode
        if mode == "manual":
            limit = self.params.steering_limit
            steering = min(limit, max(-limit, _finite(steering)))
        if mode in ("manual", "local_angle"):
            throttle = max(-1.0, min(1.0, _finite(throttle))) * self.params.manual_throttle
        return steering, throttle

    def _stop(self, state: str) -> tuple[float, float]:
        self.state = state
        self.command = NEUTRAL
        return self.command


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _slewed_throttle(previous: float, wanted: float, max_step: float) -> float:
    """Speeding up (in either direction) by at most ``max_step``; slowing down, stopping and the drop to 0 of a
    change of direction at once."""
    if previous * wanted < 0:
        previous = 0.0  # a change of direction: stop at once, then speed up the other way
    if abs(wanted) <= abs(previous):
        return wanted
    return previous + math.copysign(min(max_step, abs(wanted - previous)), wanted)
