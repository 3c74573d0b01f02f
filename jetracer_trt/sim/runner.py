"""Closed loops over ``SimWorld``: driving with a model (evaluation), following a walking person (``follow``),
driving with the noisy expert (collection).

All run at the camera rate with one frame of delay: the command computed from frame k is applied during the
period after frame k+1 is taken, as on a real car whose camera, inference and servo each take their time.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from ..control import ControlParams, compute_command
from ..safety import SafetyGovernor
from .world import SimWorld

Policy = Callable[[np.ndarray], "tuple[float, float] | np.ndarray"]
FrameHook = Callable[[np.ndarray, tuple, SimWorld], None]


def drive(world: SimWorld, policy: Policy, controller: SafetyGovernor, laps: int,
          on_frame: FrameHook | None = None, progress: Callable[[SimWorld], None] | None = None) -> dict:
    """Drives ``laps`` laps (or until the car is clearly stuck) and returns the run's metrics.

    ``policy`` maps a frame to the road target (x, y); its time per frame is reported as inference latency.
    ``controller`` is the one the car runs (control law and safety governor), on the simulator's clock: each
    target is used at its frame's capture time, and its command acts after the next frame is taken.
    """
    min_speed = float(world.cfg["eval"]["min_mean_speed_mps"])
    time_limit = laps * world.track.length / min_speed
    command = (0.0, 0.0)  # neutral until the first frame has been through the model
    latencies = []
    while world.laps_completed < laps and world.time_s < time_limit:
        frame = world.observe()
        start = time.perf_counter()
        target = policy(frame)
        latencies.append((time.perf_counter() - start) * 1e3)
        x, y = float(target[0]), float(target[1])
        captured_at = world.time_s
        world.step(*command)
        controller.on_target(x, y, captured_at=captured_at, now=captured_at)
        command = controller.update(captured_at)
        if on_frame is not None:
            on_frame(frame, (x, y), world)
        if progress is not None:
            progress(world)
    result = world.metrics()
    result["inference_ms"] = percentiles_ms(latencies)
    return result


def percentiles_ms(latencies: list[float]) -> dict:
    """The p50 and p99 of per-frame times (0 for none)."""
    return {"p50": float(np.percentile(latencies, 50)) if latencies else 0.0,
            "p99": float(np.percentile(latencies, 99)) if latencies else 0.0}


def follow(world: SimWorld, people_of: Callable[[np.ndarray], list], follow_me, controller: SafetyGovernor,
           seconds: float, on_frame: FrameHook | None = None,
           progress: Callable[[SimWorld], None] | None = None) -> dict:
    """Follows ``world``'s walker for ``seconds`` of simulated time and returns the run's metrics.

    Per frame: ``people_of(frame)`` (``PoseEstimator.people``, or one on ``walker.OracleEngine``), then
    ``follow_me`` (``follow.FollowMe``) picks the target and its throttle scale, and ``controller`` drives the car
    with them on the simulator's clock, with one frame of delay as ``drive`` does. Metrics: the world's
    (``SimWorld.metrics``: distances to the walker, collisions, the walker's lead) plus ``following_s`` (FollowMe
    following someone), ``lost_s`` (not following, after the first sighting), ``lost_events``, how far the
    target's x was from the walker's true torso centre (``target_x_error_mean``, ``_p90``: in the law's x, [-1, 1]
    of the image width) and the time per frame of finding people.
    """
    if world.walker is None:
        raise ValueError("follow needs a world with a walker")
    camera = world.renderer.camera
    size = (camera.width, camera.height)
    command = (0.0, 0.0)
    latencies = []
    following_frames = lost_frames = lost_events = 0
    seen_once = was_following = False
    x_errors = []
    frames = int(round(seconds * world.rate_hz))
    for _ in range(frames):
        frame = world.observe()
        start = time.perf_counter()
        people = people_of(frame)
        latencies.append((time.perf_counter() - start) * 1e3)
        captured_at = world.time_s
        target = follow_me.update(people, size, captured_at)
        world.step(*command)
        controller.on_target(target.x, 0.0, captured_at=captured_at, now=captured_at,
                             throttle_scale=target.throttle_scale)
        command = controller.update(captured_at)
        seen_once = seen_once or target.following
        following_frames += target.following
        lost_frames += seen_once and not target.following
        lost_events += was_following and not target.following
        was_following = target.following
        truth = world.walker_sighting()
        if truth is not None and math.isfinite(target.x):
            x_errors.append(abs(target.x - truth.x))
        if on_frame is not None:
            on_frame(frame, (target.x, 0.0), world)
        if progress is not None:
            progress(world)
    result = world.metrics()
    result.update({
        "seconds": world.time_s,
        "following_s": following_frames / world.rate_hz,
        "lost_s": lost_frames / world.rate_hz,
        "lost_events": lost_events,
        # how far the target was from the true torso centre (fractions of the half width, the law's x)
        "target_x_error_mean": float(np.mean(x_errors)) if x_errors else math.nan,
        "target_x_error_p90": float(np.percentile(x_errors, 90)) if x_errors else math.nan,
        "people_ms": percentiles_ms(latencies),
    })
    return result


class SteeringNoise:
    """Ornstein-Uhlenbeck steering perturbation plus occasional swerves, so collected data shows recoveries."""

    def __init__(self, rng: np.random.Generator, std: float, time_constant_s: float, swerve_per_s: float, dt: float):
        self.rng, self.std, self.dt = rng, std, dt
        self.alpha = math.exp(-dt / time_constant_s)
        self.swerve_p = swerve_per_s * dt
        self.value = 0.0
        self.swerve_left = 0
        self.swerve = 0.0

    def __call__(self) -> float:
        self.value = self.alpha * self.value + math.sqrt(1 - self.alpha**2) * self.std * self.rng.standard_normal()
        if self.swerve_left == 0 and self.rng.random() < self.swerve_p:
            self.swerve_left = int(self.rng.integers(5, 20))
            self.swerve = float(self.rng.choice([-1, 1]) * self.rng.uniform(0.4, 1.0))
        if self.swerve_left:
            self.swerve_left -= 1
            return self.value + self.swerve
        return self.value


def expert_episode(world: SimWorld, params: ControlParams, frames: int,
                   sink: Callable[[np.ndarray, float, float, dict], None]) -> None:
    """Drives ``frames`` frames with the expert plus noise; ``sink`` gets each frame with its correct label.

    The label is always the expert's target for the state the car is actually in, whatever noise was applied,
    which is what teaches the model to steer back to the road.
    """
    ecfg = world.cfg["expert"]
    rng = world.rng
    noise = SteeringNoise(rng, float(rng.uniform(*ecfg["noise_std"])), float(ecfg["noise_time_constant_s"]),
                          float(ecfg["swerve_probability_per_s"]), 1.0 / world.rate_hz)
    throttle_scale = float(rng.uniform(*ecfg["throttle_scale"]))
    command = (0.0, 0.0)
    for _ in range(frames):
        frame = world.observe()
        x, y = world.label()
        sink(frame, x, y, {"steering": round(command[0], 4), "speed": round(world.car.state.speed, 3)})
        world.step(*command)
        steering, throttle = compute_command(x, y, params)
        command = (max(-1.0, min(1.0, steering + noise())), throttle * throttle_scale)


def sample_frames(count: int, seed: int = 0, randomize: bool = False) -> list[np.ndarray]:
    """``count`` real simulator frames of track ``seed`` seen while the expert drives (for verification)."""
    world = SimWorld(seed, randomize=randomize)
    params = ControlParams.from_config(profile="sim")
    frames: list[np.ndarray] = []
    stride = 7
    expert_episode(world, params, count * stride,
                   lambda f, x, y, m: frames.append(f.copy()) if world.stats.frames % stride == 0 else None)
    return frames[:count]
