"""What stands between the control law and the motors: deadman, emergency stop, slew rate, non-finite guards.

ROS-free, so it is tested without a graph; the control node feeds it targets and the clock and sends what it says.

- **Deadman**: no fresh road target within ``deadman_timeout_s`` -> throttle 0 and steering centred, until targets
  arrive again. A crashed or stalled inference process therefore stops the car within the timeout.
- **Emergency stop**: latched. Once triggered only ``release_estop()`` clears it (a deliberate act, not a new target).
- **Slew rate**: steering moves at most ``steering_slew_per_s`` per second, so a single bad frame cannot jerk the
  wheels across; throttle is not slewed upwards faster either, but stopping is always immediate.
- **Non-finite**: a NaN or inf target counts as no target.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .control import ControlParams, compute_command

NEUTRAL = (0.0, 0.0)


@dataclass
class SafetyLimits:
    deadman_timeout_s: float = 0.25
    steering_slew_per_s: float = 8.0   # full lock to full lock (2.0) in 0.25 s
    throttle_slew_per_s: float = 2.0   # 0 -> 0.5 in 0.25 s; decreases are immediate

    def validate(self) -> list[str]:
        problems = []
        if not (0 < self.deadman_timeout_s <= 5):
            problems.append("deadman_timeout_s must be in (0, 5]")
        if not (self.steering_slew_per_s > 0 and self.throttle_slew_per_s > 0):
            problems.append("slew rates must be positive")
        return problems


class SafetyGovernor:
    """Turns (target, time) into the command to send, holding every safety rule; ``state`` says which rule rules."""

    def __init__(self, params: ControlParams, limits: SafetyLimits, force_zero_throttle: bool = False):
        self.params = params
        self.limits = limits
        self.force_zero_throttle = force_zero_throttle  # wheels-up check mode
        self.estopped = False
        self.state = "waiting"  # waiting | driving | deadman | estop
        self._target: tuple[float, float] | None = None
        self._target_time: float | None = None
        self._last_time: float | None = None
        self.command = NEUTRAL

    def on_target(self, x: float, y: float, now: float) -> None:
        """A fresh road target from the model (its arrival time, seconds on any monotonic clock)."""
        if math.isfinite(x) and math.isfinite(y):
            self._target = (x, y)
            self._target_time = now

    def trigger_estop(self) -> None:
        self.estopped = True

    def release_estop(self) -> None:
        self.estopped = False

    def update(self, now: float) -> tuple[float, float]:
        """The command for ``now``: call it at the control rate (and on every target)."""
        dt = 0.0 if self._last_time is None else max(0.0, now - self._last_time)
        self._last_time = now
        if self.estopped:
            self.state = "estop"
            self.command = NEUTRAL
            return self.command
        fresh = self._target_time is not None and now - self._target_time <= self.limits.deadman_timeout_s
        if not fresh:
            self.state = "waiting" if self._target_time is None else "deadman"
            self.command = NEUTRAL
            return self.command
        self.state = "driving"
        steering, throttle = compute_command(*self._target, self.params)
        if self.force_zero_throttle:
            throttle = 0.0
        prev_steering, prev_throttle = self.command
        max_step = self.limits.steering_slew_per_s * dt
        steering = prev_steering + min(max_step, max(-max_step, steering - prev_steering))
        if throttle > prev_throttle:  # speeding up is slewed, slowing down is not
            throttle = min(throttle, prev_throttle + self.limits.throttle_slew_per_s * dt)
        self.command = (steering, throttle)
        return self.command
