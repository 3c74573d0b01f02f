"""One simulated run: a track, a car, its camera, the road-target label, and the run's metrics.

The caller drives the loop (see ``runner.py``): ``observe()`` renders the current camera frame, ``label()`` gives the
expert's road target for it, and ``step(steering, throttle)`` advances one camera period. Off-track means the car's
centre is further from the centreline than half the road width; the car is then put back on the road, facing along
it, and the run goes on.

With a walker (``walker=WalkerSettings(...)``, ``walker.py``) a person walks along the road ahead of the car and is
drawn into every frame; ``walker_keypoints`` holds their keypoints in the last frame and ``walker_stats`` the
car-to-walker distances. The car then follows a person, not the road: off-track is still counted but the car is
left where it is (the floor is open; putting it back would jump it past or behind its person). Without a walker
nothing changes: the same seeds give the same frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..config import load_config
from .appearance import sample_appearance
from .camera import CameraModel, image_to_label
from .car import BicycleCar, CarState
from .render import Renderer
from .track import generate_track

if TYPE_CHECKING:
    from .walker import Walker, WalkerSettings, WalkerStats


LEAD_SEARCH_M = (6.0, 1.0)  # the walker's lead: the car is looked for this far behind and ahead of them on the road
PATH_POINTS = 4096  # the driven path kept for plots: at most this many points, spread evenly over the run


@dataclass
class RunStats:
    """A run's score in constant memory, however long it runs (the ROS graph's simulator runs for hours)."""

    progress_m: float = 0.0
    off_track_events: int = 0
    frames: int = 0
    abs_cte_sum: float = 0.0
    abs_cte_max: float = 0.0
    speed_sum: float = 0.0
    path: list = field(default_factory=list)  # (x, y, cte) of the car centre every `path_every` frames, for plots
    path_every: int = 1
    off_track: bool = False  # the car is off the road now (with a walker it is left there)

    def add(self, x: float, y: float, cte: float, speed: float) -> None:
        """One step's state. The path keeps every ``path_every``-th frame; when it outgrows ``PATH_POINTS`` every
        other point goes and the step doubles, so the plot always covers the whole run."""
        if self.frames % self.path_every == 0:
            self.path.append((x, y, cte))
            if len(self.path) > PATH_POINTS:
                del self.path[1::2]
                self.path_every *= 2
        self.frames += 1
        self.abs_cte_sum += abs(cte)
        self.abs_cte_max = max(self.abs_cte_max, abs(cte))
        self.speed_sum += speed


class SimWorld:
    def __init__(self, track_seed: int, randomize: bool = False, run_seed: int = 0, cfg: dict | None = None,
                 walker: WalkerSettings | None = None):
        self.cfg = cfg or load_config("sim")
        self.track = generate_track(track_seed, self.cfg["track"])
        self.randomize = bool(randomize)
        self.rng = np.random.default_rng([int(track_seed), int(run_seed), int(randomize), 0x51])
        self.look = sample_appearance(self.rng, randomize)
        base = CameraModel.from_config(self.cfg["camera"])
        camera = base.with_mount(
            height_m=base.height_m * self.look.camera_height_scale,
            pitch_deg=base.pitch_deg + self.look.camera_pitch_offset_deg,
            yaw_deg=self.look.camera_yaw_deg,
            roll_deg=self.look.camera_roll_deg,
        )
        self.renderer = Renderer(self.track, camera, self.look, self.cfg, self.rng)
        self.rate_hz = float(self.cfg["rate_hz"])
        self.substeps = int(self.cfg["physics_substeps"])
        self.lookahead = float(self.cfg["expert"]["lookahead_m"])
        self.car = BicycleCar(self.cfg["car"])
        self.stats = RunStats()
        self._index = 0
        self._variant = 0
        self._place_on_road(0, speed=0.0)
        self.walker: Walker | None = None
        self.walker_stats: WalkerStats | None = None
        self.walker_in_view = False
        self.walker_keypoints = np.zeros((0, 3), np.float32)  # (C, 3) x, y, v of the last frame (v 0: not in it)
        if walker is not None:  # the pose package (SciPy) is imported only for worlds with a person
            from ..pose.topology import load_topology
            from .walker import Walker, WalkerStats

            self.keypoint_names = load_topology().keypoints
            walker_rng = np.random.default_rng([int(track_seed), int(run_seed), int(walker.seed), 0x3A1C])
            self.walker = Walker(self.track, walker, self._index, walker_rng)
            self.walker_keypoints = np.zeros((len(self.keypoint_names), 3), np.float32)
            self.walker_stats = WalkerStats()

    # -- geometry -------------------------------------------------------------------------------------------------
    def _place_on_road(self, index: int, speed: float) -> None:
        """Puts the car's centre on the centreline at ``index``, facing along the road, wheels straight."""
        t = self.track.tangents[index]
        yaw = math.atan2(t[1], t[0])
        half = self.car.wheelbase / 2
        px, py = self.track.points[index]
        self.car.state = CarState(px - half * math.cos(yaw), py - half * math.sin(yaw), yaw, speed, 0.0)
        self._index = index

    def cross_track_error(self) -> float:
        self._index, cte = self.track.project(np.asarray(self.car.centre()), hint=self._index)
        return cte

    def target_point(self) -> np.ndarray:
        """The road target in the world: the centreline point ``lookahead_m`` ahead of the car."""
        return self.track.points[self.track.ahead(self._index, self.lookahead)]

    # -- the loop -----------------------------------------------------------------------------------------------
    def observe(self) -> np.ndarray:
        """The camera frame now (RGB uint8, reused buffer): geometry, then the run's camera effects."""
        self._variant = int(self.rng.integers(len(self.renderer.cameras)))
        s = self.car.state
        frame = self.renderer.render(s.x, s.y, s.yaw, self._variant)
        if self.walker is not None:
            self._draw_walker()
        if self.randomize:
            frame = self.renderer.camera_effects(frame, self.rng)
        return frame

    def _draw_walker(self) -> None:
        from ..pose.figures import keypoint_visibility

        s = self.car.state
        figure = self.walker.figure(self.renderer.cameras[self._variant], s.x, s.y, s.yaw)
        self.walker_in_view = figure is not None
        if figure is None:
            self.walker_keypoints.fill(0.0)
            return
        ids = self.renderer.draw_figure(figure)
        self.walker_keypoints[:] = keypoint_visibility(figure, self.keypoint_names, ids, 0)

    def walker_sighting(self):
        """The walker as follow-me would see them from their true keypoints in the last frame
        (``follow.Sighting``: torso centre and size); None without a walker or with none of them in the frame."""
        if self.walker is None or not self.walker_in_view:
            return None
        from ..follow import sighting
        from ..pose.people import Keypoint, Person

        person = Person({name: Keypoint(float(x), float(y), 1.0)
                         for name, (x, y, v) in zip(self.keypoint_names, self.walker_keypoints, strict=True) if v > 0})
        camera = self.renderer.camera
        return sighting(person, (camera.width, camera.height))

    def walker_distance(self) -> float:
        """Floor distance from the car's front (its camera lens) to the walker; NaN without one."""
        if self.walker is None:
            return math.nan
        s = self.car.state
        return self.walker.distance_from(self.renderer.camera, s.x, s.y, s.yaw)

    def walker_lead(self) -> float:
        """How far the walker is ahead of the car along the road (metres; negative: behind); NaN without one."""
        if self.walker is None:
            return math.nan
        # the car's nearest road point among those the walker passed in the last few metres (or a little ahead):
        # the car's own nearest point jumps across a hairpin when the car cuts its corner after the walker
        back, ahead = (int(round(m / self.track.spacing)) for m in LEAD_SEARCH_M)
        near, _ = self.track.project(np.asarray(self.car.centre()), hint=self.walker.index - (back - ahead) // 2,
                                     window=(back + ahead) // 2)
        n = len(self.track.points)
        return ((self.walker.index - near + n // 2) % n - n // 2) * self.track.spacing

    def label(self) -> tuple[float, float]:
        """The expert label of the last observed frame: where the road target appears in it, in [-1, 1]."""
        s = self.car.state
        dx, dy = self.target_point() - (s.x, s.y)
        c, sn = math.cos(s.yaw), math.sin(s.yaw)
        local = np.array([[c * dx + sn * dy, -sn * dx + c * dy, 0.0]])
        camera = self.renderer.cameras[self._variant]
        uv = camera.project(local)
        if (local[0, 0] - camera.forward_m) <= 0.02:  # target beside or behind the lens: full lock towards it
            uv[0, 0] = camera.width if local[0, 1] < 0 else 0.0
        x, y = image_to_label(uv, camera.width, camera.height)[0]
        return float(x), float(y)

    def step(self, steering: float, throttle: float) -> None:
        """Applies a command for one camera period, then scores the new state."""
        dt = 1.0 / (self.rate_hz * self.substeps)
        for _ in range(self.substeps):
            self.car.step(steering, throttle, dt)
        before = self._index
        cte = self.cross_track_error()
        n = len(self.track.points)
        delta = (self._index - before + n // 2) % n - n // 2
        st = self.stats
        st.progress_m += delta * self.track.spacing
        cx, cy = self.car.centre()
        st.add(cx, cy, cte, self.car.state.speed)
        if abs(cte) > self.track.widths[self._index] / 2 and not st.off_track:
            st.off_track_events += 1
            if self.walker is None:
                self._place_on_road(self._index, speed=self.car.state.speed)
        if self.walker is not None:
            st.off_track = abs(cte) > self.track.widths[self._index] / 2  # one event per excursion
            self.walker.step(1.0 / self.rate_hz)
            self.walker_stats.add(self.walker_distance(), self.walker_lead(), self.walker_in_view,
                                  self.walker.settings.collision_m)

    @property
    def laps_completed(self) -> int:
        return max(0, int(self.stats.progress_m // self.track.length))

    @property
    def time_s(self) -> float:
        return self.stats.frames / self.rate_hz

    def metrics(self) -> dict:
        st = self.stats
        return {
            "laps_completed": self.laps_completed,
            "off_track_events": st.off_track_events,
            "mean_abs_cte_m": st.abs_cte_sum / st.frames if st.frames else 0.0,
            "max_abs_cte_m": st.abs_cte_max,
            "mean_speed_mps": st.speed_sum / st.frames if st.frames else 0.0,
            "frames": st.frames,
            **({"distance_driven_m": st.speed_sum / self.rate_hz, "walker_walked_m": self.walker.walked_m,
                **self.walker_stats.metrics(self.rate_hz)} if self.walker is not None else {}),
        }
