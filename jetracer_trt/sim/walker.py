"""A person walking on the simulator's floor, drawn into the car's camera frames, for closed-loop follow-me runs.

**Walking**: along the track's centreline, starting ``start_ahead_m`` ahead of the car, the way the car drives.
The walk is a sequence of stretches drawn from the walker's seed: mostly walking, each stretch at its own speed
(``speed_mps`` times ``1 +- speed_variation``), sometimes a pause (standing still). Speed changes at most
``acceleration_mps2``, so starting and stopping take a few steps, as people do.

**Drawing**: a vertical billboard. The walker's foot point (between the feet, on the floor) and the top of their
head go through the car's camera model (``camera.CameraModel``); the figure of ``pose.figures`` is placed with its
feet at the foot pixel and as tall as the head is above it there, painted over the floor (nothing in the
simulator stands in front of a person). The figure is skipped when the foot point is behind the lens or the figure
lies outside the frame. The figure is orthographic (``figures.py``), so the fisheye's bending of a tall figure is
not drawn; its keypoints are where it is painted, which is what an oracle and the metrics need.

**The person**: body, look and walking style (lean, head, arm carriage, stride swing) drawn once from the seed;
the legs and arms swing with a gait phase that advances one half cycle per ``step_m`` walked, with an amplitude
that shrinks with speed (standing still is standing). The person faces where they walk; the camera sees them from
the side of the ray to them, from the lens's height (``Pose.camera_pitch`` within the range the pose model was
trained on, ``CAMERA_PITCH_RANGE``).

**Oracle** (``OraclePeople``): the walker's true keypoints turned into the confidence maps and part affinity fields
a perfect pose model would output (the pose trainer's own targets, ``pose.train.make_targets``) and parsed by the
real parser, so a follow run without the network (CI has no trained model) still runs the whole chain after it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from ..errors import JetracerError
from ..pose.figures import HIP_HEIGHT, Figure, Limb, Pose, place_figure, sample_body, sample_look, sample_pose
from .camera import CameraModel
from .track import Track

CAMERA_PITCH_RANGE = (math.radians(-8.0), math.radians(14.0))  # figures' camera pitches in the pose training data
FULL_SWING_SPEED_MPS = 1.4   # walking at this speed or faster swings the legs by the person's full amplitude
VIEW_MARGIN_PX = 8.0         # a figure whose keypoints' box is this far outside the frame still shows its limbs


RANGE_SETTINGS = ("stretch_s", "pause_s")  # [low, high] pairs


@dataclass(frozen=True)
class WalkerSettings:
    """The walk and the person; descriptions in config/sim.yaml (``walker``), which ``from_config`` reads."""

    height_m: float
    start_ahead_m: float
    speed_mps: float
    speed_variation: float
    stretch_s: tuple[float, float]
    pause_probability: float
    pause_s: tuple[float, float]
    acceleration_mps2: float
    step_m: float
    collision_m: float
    seed: int

    @classmethod
    def from_config(cls, cfg: dict | None = None, **overrides) -> "WalkerSettings":
        """The ``walker`` section of config/sim.yaml (or ``cfg``, such a section) with ``overrides`` that are not
        None; JetracerError naming a bad or unknown value."""
        if cfg is None:
            from ..config import load_config

            cfg = load_config("sim")["walker"]
        values = dict(cfg)
        values.update({k: v for k, v in overrides.items() if v is not None})
        names = [f.name for f in fields(cls)]
        unknown, missing = sorted(set(values) - set(names)), sorted(set(names) - set(values))
        if unknown or missing:
            raise JetracerError(f"walker settings: unknown {unknown or 'none'}, missing {missing or 'none'}; "
                                f"the settings are {', '.join(names)}")
        try:
            converted = {k: (tuple(float(x) for x in v) if k in RANGE_SETTINGS else
                             int(v) if k == "seed" else float(v)) for k, v in values.items()}
        except (TypeError, ValueError) as exc:
            raise JetracerError(f"invalid walker settings {values}: {exc}") from None
        settings = cls(**converted)
        settings.validate()
        return settings

    def validate(self) -> None:
        problems = []
        for name, low, high in (("height_m", 0.3, 2.5), ("start_ahead_m", 0.3, 20.0), ("speed_mps", 0.0, 3.0),
                                ("speed_variation", 0.0, 1.0), ("pause_probability", 0.0, 1.0),
                                ("acceleration_mps2", 0.05, 10.0), ("step_m", 0.1, 2.0), ("collision_m", 0.0, 3.0)):
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                problems.append(f"{name} must be in [{low}, {high}], got {value}")
        for name in RANGE_SETTINGS:
            pair = getattr(self, name)
            if not (len(pair) == 2 and 0.1 <= pair[0] <= pair[-1] <= 600):
                problems.append(f"{name} must be [low, high] seconds with 0.1 <= low <= high <= 600, got "
                                f"{list(getattr(self, name))}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"seed must be a whole number >= 0, got {self.seed!r}")
        if problems:
            raise JetracerError("invalid walker settings: " + "; ".join(problems))


@dataclass(frozen=True)
class GaitStyle:
    """How one person walks: the swing of the legs at full speed, the knee's and elbow's bend, and the rest of a
    walking pose (lean, head, arm carriage) it is drawn on."""

    base: Pose
    swing: float
    knee: float
    elbow: float


def sample_gait(rng: np.random.Generator) -> GaitStyle:
    return GaitStyle(base=sample_pose(rng, "walk"), swing=math.radians(rng.uniform(16, 30)),
                     knee=math.radians(rng.uniform(0, 12)), elbow=math.radians(rng.uniform(10, 45)))


def walking_pose(style: GaitStyle, phase: float, amount: float, yaw: float, camera_pitch: float) -> Pose:
    """``style``'s pose at gait ``phase`` (radians; the left leg forward at pi/2), the swing scaled by ``amount``
    in [0, 1] (0: standing), facing ``yaw`` and seen from ``camera_pitch`` (``figures.Pose``)."""
    swing = style.swing * amount
    legs, arms = [], []
    base_arms = (style.base.left_arm, style.base.right_arm)
    for side, base_arm in zip((1, -1), base_arms, strict=True):
        flex = side * swing * math.sin(phase)
        # the leg swinging through bends its knee; the one behind straightens
        bend = style.knee + amount * max(0.0, -flex) + 0.2 * max(0.0, flex)
        legs.append(Limb(flex=flex, abduct=math.radians(3), bend=bend))
        arms.append(Limb(flex=-0.8 * flex, abduct=base_arm.abduct, twist=base_arm.twist, bend=style.elbow))
    return replace(style.base, yaw=yaw, camera_pitch=camera_pitch, left_arm=arms[0], right_arm=arms[1],
                   left_leg=legs[0], right_leg=legs[1])


class Walker:
    """One person walking along ``track``'s centreline; ``step(dt)`` walks, ``figure(...)`` places them in a
    camera frame."""

    def __init__(self, track: Track, settings: WalkerSettings, start_index: int, rng: np.random.Generator):
        settings.validate()
        self.track, self.settings, self.rng = track, settings, rng
        self.arc_m = start_index * track.spacing + settings.start_ahead_m  # along the centreline, unwrapped
        self.speed = 0.0
        self.walked_m = 0.0
        self.phase = 0.0
        self.body, self.look, self.gait = sample_body(rng), sample_look(rng), sample_gait(rng)
        self._target_speed, self._stretch_left = 0.0, 0.0
        self.pausing = False
        self._next_stretch()

    def _next_stretch(self) -> None:
        s = self.settings
        self.pausing = bool(self.rng.random() < s.pause_probability)
        if self.pausing:
            self._target_speed, self._stretch_left = 0.0, float(self.rng.uniform(*s.pause_s))
        else:
            self._target_speed = max(0.0, s.speed_mps * (1 + float(self.rng.uniform(-1, 1)) * s.speed_variation))
            self._stretch_left = float(self.rng.uniform(*s.stretch_s))

    def step(self, dt: float) -> None:
        self._stretch_left -= dt
        if self._stretch_left <= 0:
            self._next_stretch()
        change = self._target_speed - self.speed
        limit = self.settings.acceleration_mps2 * dt
        self.speed += max(-limit, min(limit, change))
        self.arc_m += self.speed * dt
        self.walked_m += self.speed * dt
        self.phase = (self.phase + math.pi * self.speed * dt / self.settings.step_m) % (2 * math.pi)

    @property
    def index(self) -> int:
        """The centreline point the walker is at."""
        return int(self.arc_m / self.track.spacing) % len(self.track.points)

    def position(self) -> tuple[float, float]:
        """Where the walker stands (world frame, metres), between centreline points."""
        points, n = self.track.points, len(self.track.points)
        along = self.arc_m / self.track.spacing
        i = int(along)
        frac = along - i
        a, b = points[i % n], points[(i + 1) % n]
        return float(a[0] + frac * (b[0] - a[0])), float(a[1] + frac * (b[1] - a[1]))

    def in_car_frame(self, car_x: float, car_y: float, car_yaw: float) -> tuple[float, float]:
        """The walker's position in the frame of a car whose rear axle is at (car_x, car_y) facing car_yaw."""
        px, py = self.position()
        dx, dy = px - car_x, py - car_y
        c, s = math.cos(car_yaw), math.sin(car_yaw)
        return c * dx + s * dy, -s * dx + c * dy

    def distance_from(self, camera: CameraModel, car_x: float, car_y: float, car_yaw: float) -> float:
        """Floor distance from the car's front (its camera lens) to the walker."""
        x, y = self.in_car_frame(car_x, car_y, car_yaw)
        return math.hypot(x - camera.forward_m, y)

    def figure(self, camera: CameraModel, car_x: float, car_y: float, car_yaw: float) -> Figure | None:
        """The walker as the camera of the car at (car_x, car_y, car_yaw) sees them; None when behind the lens or
        outside the frame."""
        x, y = self.in_car_frame(car_x, car_y, car_yaw)
        ends = np.array([[x, y, 0.0], [x, y, self.settings.height_m]])
        depth = float(((ends[0] - camera.position) @ camera.rotation())[2])
        if depth <= 0.05:
            return None
        (u, v_foot), (_, v_head) = camera.project(ends)
        height_px = float(v_foot - v_head)
        if height_px <= 1.0:
            return None
        # facing: the walker's heading relative to the ray from the lens (car frame; the image's right is the
        # ray turned clockwise); yaw 0 faces the camera (figures.Pose)
        tangent = self.track.tangents[self.index]
        (c, s), (t_x, t_y) = (math.cos(car_yaw), math.sin(car_yaw)), tangent
        heading = (c * t_x + s * t_y, -s * t_x + c * t_y)
        ray_x, ray_y = x - camera.forward_m, y
        norm = math.hypot(ray_x, ray_y) or 1.0
        ray_x, ray_y = ray_x / norm, ray_y / norm
        yaw = math.atan2(heading[0] * ray_y - heading[1] * ray_x, -(heading[0] * ray_x + heading[1] * ray_y))
        hip_elevation = math.atan2(HIP_HEIGHT * self.settings.height_m - camera.height_m, norm)
        pitch = min(CAMERA_PITCH_RANGE[1], max(CAMERA_PITCH_RANGE[0], -hip_elevation))
        amount = min(1.0, self.speed / FULL_SWING_SPEED_MPS)
        pose = walking_pose(self.gait, self.phase, amount, yaw, pitch)
        figure = place_figure(pose, self.look, (float(u), float(v_foot)), height_px, self.body)
        x0, y0, x1, y1 = figure.box
        m = VIEW_MARGIN_PX
        if x1 < -m or y1 < -m or x0 > camera.width + m or y0 > camera.height + m:
            return None
        return figure


@dataclass
class WalkerStats:
    """A follow run's distances in constant memory."""

    frames: int = 0
    distance_sum: float = 0.0
    distance_min: float = math.inf
    distance_max: float = 0.0
    lead_sum: float = 0.0
    lead_min: float = math.inf
    frames_in_view: int = 0
    collision_frames: int = 0
    collisions: int = 0        # times the car came within collision_m (entering counts once)
    _close: bool = False

    def add(self, distance: float, lead: float, in_view: bool, collision_m: float) -> None:
        self.frames += 1
        self.distance_sum += distance
        self.distance_min = min(self.distance_min, distance)
        self.distance_max = max(self.distance_max, distance)
        self.lead_sum += lead
        self.lead_min = min(self.lead_min, lead)
        self.frames_in_view += bool(in_view)
        close = distance < collision_m
        self.collision_frames += close
        self.collisions += close and not self._close
        self._close = close

    def metrics(self, rate_hz: float) -> dict:
        n = self.frames
        return {
            "walker_distance_min_m": self.distance_min if n else math.nan,
            "walker_distance_mean_m": self.distance_sum / n if n else math.nan,
            "walker_distance_max_m": self.distance_max if n else math.nan,
            "walker_lead_mean_m": self.lead_sum / n if n else math.nan,
            "walker_lead_min_m": self.lead_min if n else math.nan,
            "walker_in_view_s": self.frames_in_view / rate_hz,
            "walker_out_of_view_s": (n - self.frames_in_view) / rate_hz,
            "collisions": self.collisions,
            "collision_s": self.collision_frames / rate_hz,
        }


class OracleEngine:
    """A stand-in for a pose model's engine that outputs, for ``world``'s last observed frame, the maps a perfect
    model would: the walker's true keypoints (those in the frame, visible or hidden behind a limb, as the training
    labels have them) drawn as the pose trainer's own targets (``pose.train.make_targets``, with the widths of
    config/pose_train.yaml). ``PoseEstimator(OracleEngine(world)).people(frame)`` then runs the real parser and
    keypoint filter on them. Needs torch (for the targets)."""

    model_path = "oracle (the walker's true keypoints)"

    def __init__(self, world, topology=None):
        import torch  # noqa: F401  (fail here, naming torch, rather than on the first frame)

        from ..config import load_config
        from ..contract import pose_contract
        from ..pose.topology import load_topology

        self.world = world
        self.topology = topology or load_topology()
        camera = world.renderer.camera
        self.contract = pose_contract(self.topology, camera.width, camera.height)
        train = load_config("pose_train")
        self.cmap_stdev, self.paf_stdev = float(train["cmap_stdev"]), float(train["paf_stdev"])
        self.last_model_ms = 0.0

    def describe(self) -> str:
        return "oracle maps (pose.train.make_targets of the walker's true keypoints)"

    def infer_tensors(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        import time

        import torch

        from ..pose.train import make_targets

        start = time.perf_counter()
        keypoints = torch.from_numpy(np.ascontiguousarray(self.world.walker_keypoints))[None, None]
        cmap, paf = make_targets(keypoints, self.topology, tuple(self.contract.output_shape("cmap")[1:]),
                                 (frame.shape[1], frame.shape[0]), self.cmap_stdev, self.paf_stdev)
        self.last_model_ms = (time.perf_counter() - start) * 1e3
        return {"cmap": cmap[0].numpy(), "paf": paf[0].numpy()}
