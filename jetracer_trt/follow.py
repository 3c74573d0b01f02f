"""Follow-me: people (``pose.Person``, keypoints in image pixels) -> the target the control law drives towards.

ROS-free; the inference node (task pose) and the simulator's follow loop run it on every frame and hand its
``FollowTarget`` to the same law and safety as road following::

    t = follow.update(people, (width, height), now_s)
    governor.on_target(t.x, 0.0, captured_at, now, throttle_scale=t.throttle_scale)

- **Who**: people with fewer than ``min_keypoints`` keypoints are ignored. The person followed last, if still seen:
  the one whose torso centre is nearest to where it was last seen, within ``match_distance`` (a fraction of the
  image width); else the largest person (a person walking past in front of the followed one takes over only when
  the followed one is gone).
- **Where**: the torso centre, the mean of the shoulders and hips found (without any: the neck; without it: all
  keypoints found), as x in [-1, 1] of the image width (positive: right of centre, the law's convention).
- **How fast**: from the apparent size, the torso height (the shoulders' mean to the hips' mean, both needed; else
  ``TORSO_PER_LEG`` of the hips' mean to the ankles' mean; else ``TORSO_SHARE_OF_BOX`` of the keypoints' box
  height) as a fraction of the image height: full throttle at or below ``far_size``, down linearly to 0 at
  ``stop_size`` and above ("too close": stopped, still steering towards them).
  The control law scales its speed by this after its curve floor (``control.compute_command``), so the car slows
  down smoothly and settles behind a walking person instead of going and stopping.
  The car's camera sits low and looks up, so a near person's upper body leaves the top of the frame first (below
  about 1.6 m): their legs still tell how near they are, the same measure (a standing adult's shoulder-to-hip
  height is about 0.62 of their hip-to-ankle height). A person seen without head, neck and shoulders and without
  hips and an ankle counts as too close: what is left must not read as someone far away.
- **Off to the side**: a car turns only while it rolls. A person whose torso centre is more than ``side_x`` off
  the image centre (someone walking round a corner, the car stopped behind them) would leave the side of the view
  if the car stood and steered; so there the throttle scale is at least ``turn_scale``, a slow creep that turns the
  car towards them until they are ahead again (where "too close" stops it), unless they are near: apparent size
  ``near_size`` or more (or none measurable, as above) stops the car wherever they are.
- **Lost**: not seen, the last target's x is held for up to ``lost_timeout_s`` (the parser may miss a person for a
  frame, and a person who left the side of the view is searched for by turning on towards where they went), at
  no more than the ``turn_scale`` creep (the car does not drive on at speed towards someone it cannot see); after
  that x is NaN and the throttle scale 0, a deliberate stop with the wheels straight (``safety.SafetyGovernor``),
  and the person is forgotten: the next one seen is chosen afresh. The car never drives blind for longer.

Settings: ``config/follow.yaml``, one entry each in ``FOLLOW_SETTINGS`` (description and range, as
``control.CONTROL_SETTINGS``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Sequence

from .config import load_config
from .control import Setting, setting_problems
from .errors import JetracerError
from .pose.people import Person

FOLLOW_SETTINGS = {
    "far_size": Setting("apparent torso height (fraction of the image height) at or below which the car follows "
                        "at full throttle", 0.01, 1.0),
    "stop_size": Setting("apparent torso height at or above which a person ahead is too close: throttle 0", 0.01,
                         1.0),
    "side_x": Setting("torso centre farther than this from the image centre (x, [-1, 1] of the width): the person "
                      "is off to the side and the car creeps to turn towards them", 0.05, 1.0),
    "turn_scale": Setting("throttle scale of the creep that turns the car towards a person off to the side, and the "
                          "most while the person is lost (0: never creep)", 0.0, 1.0),
    "near_size": Setting("apparent torso height at or above which the car stops even for a person off to the side "
                         "(no creep; meant to be above stop_size)", 0.01, 1.0),
    "lost_timeout_s": Setting("the person not seen for longer than this: stop and forget them", 0.0, 10.0),
    "min_keypoints": Setting("people with fewer keypoints found are not followed (a whole number)", 1, 100),
    "match_distance": Setting("farthest the followed person's torso centre may move between sightings (fraction "
                              "of the image width) to count as the same person", 0.01, 2.0),
}
SHOULDERS_AND_HIPS = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
UPPER_BODY = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "neck", "left_shoulder", "right_shoulder")
TORSO_SHARE_OF_BOX = 1 / 3  # shoulder-to-hip height of a standing adult per nose-to-ankle height
TORSO_PER_LEG = 0.62  # shoulder-to-hip height of a standing adult per hip-to-ankle height (about 0.30 and 0.48 of
                      # the body height; the simulator's figures measure 0.616-0.623 through the camera at 1.7-3 m)
ANKLES = ("left_ankle", "right_ankle")


@dataclass(frozen=True)
class FollowSettings:
    far_size: float = 0.08
    stop_size: float = 0.12
    side_x: float = 0.35
    turn_scale: float = 0.3
    near_size: float = 0.17
    lost_timeout_s: float = 0.5
    min_keypoints: int = 5
    match_distance: float = 0.25

    @classmethod
    def from_config(cls, overrides: dict | None = None) -> "FollowSettings":
        """config/follow.yaml with ``overrides`` applied, validated (JetracerError with every problem)."""
        values = load_config("follow")
        values.update(overrides or {})
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values: dict) -> "FollowSettings":
        """Every setting from ``values``, validated (JetracerError with every problem)."""
        problems = follow_problems(values)
        if problems:
            raise JetracerError("invalid follow settings: " + "; ".join(problems))
        return cls(**{k: int(float(v)) if k == "min_keypoints" else float(v) for k, v in values.items()})

    def validate(self) -> None:
        problems = follow_problems(asdict(self))
        if problems:
            raise JetracerError("invalid follow settings: " + "; ".join(problems))

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def follow_problems(values: dict) -> list[str]:
    """Every reason ``values`` are not valid follow settings (unknown and missing names included)."""
    problems = setting_problems(FOLLOW_SETTINGS, values)
    missing = set(FOLLOW_SETTINGS) - set(values)
    if missing:
        problems.append(f"missing setting(s): {', '.join(sorted(missing))}")
    if problems:
        return problems
    if float(values["min_keypoints"]) != int(float(values["min_keypoints"])):
        problems.append(f"min_keypoints must be a whole number, got {values['min_keypoints']!r}")
    if float(values["stop_size"]) <= float(values["far_size"]):
        problems.append(f"stop_size ({values['stop_size']}) must be larger than far_size ({values['far_size']})")
    return problems


@dataclass(frozen=True)
class FollowTarget:
    x: float               # the chosen person's torso centre, [-1, 1] of the image width; NaN when nobody is
                           # followed (the control law then stops the car with the wheels straight)
    throttle_scale: float  # [0, 1]: from the apparent size (at least turn_scale off to the side); 0 when too close
                           # or lost
    following: bool        # a person is followed (seen now, or lost for less than lost_timeout_s)
    reason: str            # "following", "turning towards them", "too close", "lost for 0.4 s", "nobody seen"
    size: float = math.nan  # the followed person's apparent size (fraction of the image height); NaN: none
    person: int = -1        # index in the people given of the person followed; -1: none seen in this frame


@dataclass(frozen=True)
class Sighting:
    """One person as follow-me sees them, in fractions of the image: torso centre (x in [-1, 1] of the width, y in
    [-1, 1] of the height) and apparent size (of the height)."""

    x: float
    y: float
    size: float


def _mean_point(person: Person, names) -> tuple[float, float] | None:
    points = [person.keypoints[n] for n in names if n in person.keypoints]
    if not points:
        return None
    return sum(p.x for p in points) / len(points), sum(p.y for p in points) / len(points)


def sighting(person: Person, image_size: tuple[int, int]) -> Sighting | None:
    """Where ``person`` is and how big, as fractions of an image of ``image_size`` (width, height); None without
    keypoints."""
    if not person.keypoints:
        return None
    width, height = image_size
    centre = (_mean_point(person, SHOULDERS_AND_HIPS) or _mean_point(person, ("neck",))
              or _mean_point(person, person.keypoints))
    shoulders = _mean_point(person, SHOULDERS_AND_HIPS[:2])
    hips = _mean_point(person, SHOULDERS_AND_HIPS[2:])
    ankles = _mean_point(person, ANKLES)
    if shoulders and hips:
        size = abs(hips[1] - shoulders[1]) / height
    elif hips and ankles:
        size = abs(ankles[1] - hips[1]) * TORSO_PER_LEG / height  # the upper body out of the frame: near
    elif not any(name in person.keypoints for name in UPPER_BODY):
        size = math.inf  # the upper body out of the frame: too close (see the module docstring)
    else:
        ys = [p.y for p in person.keypoints.values()]
        size = (max(ys) - min(ys)) * TORSO_SHARE_OF_BOX / height
    return Sighting(x=2.0 * centre[0] / width - 1.0, y=2.0 * centre[1] / height - 1.0, size=size)


def throttle_scale_for(size: float, settings: FollowSettings) -> float:
    """1 at or below ``far_size``, 0 at or above ``stop_size``, linear between."""
    if size <= settings.far_size:
        return 1.0
    if size >= settings.stop_size:
        return 0.0
    return (settings.stop_size - size) / (settings.stop_size - settings.far_size)


def pace(sight: Sighting, settings: FollowSettings) -> tuple[float, str]:
    """The throttle scale for a person seen as ``sight``, and why (see the module docstring: how fast, off to the
    side)."""
    scale = throttle_scale_for(sight.size, settings)
    if abs(sight.x) > settings.side_x and sight.size < settings.near_size and scale < settings.turn_scale:
        return settings.turn_scale, "turning towards them"
    return scale, "following" if scale > 0 else "too close"


class FollowMe:
    """Chooses a person and keeps following them across frames (see the module docstring); one per camera."""

    def __init__(self, settings: FollowSettings | None = None):
        self.settings = settings or FollowSettings.from_config()
        self.settings.validate()
        self._followed: Sighting | None = None  # where the followed person was last seen
        self._seen_at: float | None = None
        self._last: FollowTarget | None = None  # the last target made from a sighting

    def update(self, people: Sequence[Person], image_size: tuple[int, int], now_s: float) -> FollowTarget:
        """The target for a frame of ``image_size`` (width, height) in which ``people`` were found, at ``now_s``
        (seconds on any one clock: the frames' capture times)."""
        seen = {i: s for i, p in enumerate(people) if len(p.keypoints) >= self.settings.min_keypoints
                for s in [sighting(p, image_size)] if s is not None}
        chosen = self._choose(seen, image_size)
        if chosen is not None:
            sight = seen[chosen]
            self._followed, self._seen_at = sight, now_s
            scale, reason = pace(sight, self.settings)
            self._last = FollowTarget(x=min(1.0, max(-1.0, sight.x)), throttle_scale=scale, following=True,
                                      reason=reason, size=sight.size)
            return replace(self._last, person=chosen)
        if self._seen_at is None or self._last is None:
            return FollowTarget(x=math.nan, throttle_scale=0.0, following=False, reason="nobody seen")
        lost_s = now_s - self._seen_at
        reason = f"lost for {lost_s:.1f} s"
        if lost_s <= self.settings.lost_timeout_s:
            return FollowTarget(x=self._last.x, throttle_scale=min(self._last.throttle_scale, self.settings.turn_scale),
                                following=True, reason=reason, size=self._last.size)
        self._followed = self._last = None  # gone: whoever is seen next is chosen afresh
        self._seen_at = None
        return FollowTarget(x=math.nan, throttle_scale=0.0, following=False, reason=reason)

    def _choose(self, seen: dict[int, Sighting], image_size: tuple[int, int]) -> int | None:
        """The index of the person to follow among those ``seen`` (index -> sighting); None: nobody."""
        if not seen:
            return None
        if self._followed is not None:
            previous = self._followed
            width, height = image_size
            # x and y span 2 per width and height: the distance in image widths
            distances = {i: math.hypot(s.x - previous.x, (s.y - previous.y) * height / width) / 2.0
                         for i, s in seen.items()}
            nearest = min(distances, key=distances.__getitem__)
            if distances[nearest] <= self.settings.match_distance:
                return nearest
        return max(seen, key=lambda i: seen[i].size)
