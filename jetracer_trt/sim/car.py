"""Kinematic bicycle model of a small RC car, with steering-servo and motor lag, commanded like the real car."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class CarState:
    x: float = 0.0        # rear-axle centre, world frame (m)
    y: float = 0.0
    yaw: float = 0.0      # heading (rad, counter-clockwise from +x)
    speed: float = 0.0    # m/s along the heading
    steer: float = 0.0    # front-wheel angle (rad), positive = right, as steering = +1 is on the car


class BicycleCar:
    """Steering and throttle in [-1, 1]; each moves its actuator towards the target with a first-order lag.

    ``throttle`` sets the target speed (``max_speed_mps`` at 1); negative throttle brakes to a stop (this car has no
    reverse, as an ESC out of its reverse mode behaves).
    """

    def __init__(self, cfg: dict, state: CarState | None = None):
        self.wheelbase = float(cfg["wheelbase_m"])
        self.max_steer = float(cfg["max_steer_rad"])
        self.steer_tau = float(cfg["steer_time_constant_s"])
        self.max_speed = float(cfg["max_speed_mps"])
        self.speed_tau = float(cfg["speed_time_constant_s"])
        self.state = state or CarState()

    def step(self, steering: float, throttle: float, dt: float) -> None:
        s = self.state
        steering = min(1.0, max(-1.0, steering))
        throttle = min(1.0, max(-1.0, throttle))
        target_steer = steering * self.max_steer
        target_speed = max(0.0, throttle) * self.max_speed
        s.steer += (target_steer - s.steer) * min(1.0, dt / self.steer_tau)
        s.speed += (target_speed - s.speed) * min(1.0, dt / self.speed_tau)
        s.x += s.speed * math.cos(s.yaw) * dt
        s.y += s.speed * math.sin(s.yaw) * dt
        s.yaw -= s.speed / self.wheelbase * math.tan(s.steer) * dt  # right steer turns clockwise

    def centre(self) -> tuple[float, float]:
        """Midpoint of the wheelbase: the point whose distance to the centreline defines off-track."""
        s = self.state
        half = self.wheelbase / 2
        return s.x + half * math.cos(s.yaw), s.y + half * math.sin(s.yaw)
