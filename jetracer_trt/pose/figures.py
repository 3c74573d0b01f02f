"""Articulated human figures for synthetic pose data, drawn with OpenCV: a posed 3D skeleton with human proportions,
turned to face any way, projected into the image and painted part by part from back to front, with the keypoints
of trt_pose's human topology and whether each one can be seen.

* The body (``Body``): segment lengths and widths as fractions of the standing height, after anthropometric tables
  (Drillis and Contini: shoulders at 0.818 of the height, hips at 0.530, knees 0.285, ankles 0.039, upper arm
  0.186, forearm 0.146, shoulder breadth 0.259), each person varied by a few percent, with a build (girth) factor.
* The pose (``Pose``): joint angles (shoulder flexion and abduction, a twist that turns the elbow's bending plane,
  elbow flexion; hip flexion and abduction, knee flexion; torso lean, side bend and twist; head turn, nod and tilt)
  drawn from families of everyday poses (standing, walking, running, waving, arms raised, pointing, hands on hips,
  squatting, and unconstrained), and the way the person faces (any yaw) and the camera's pitch.
* The look (``Look``): skin, hair (short, long, none), shirt (long, short or no sleeves), trousers, shorts or a
  skirt, shoes; each part shaded by how far back it is, and outlined when large enough.

Coordinates: the body frame has x to the person's left, y up and z forward (where the person faces); the camera
frame X to the image's right, Y up and Z towards the camera, so a person facing the camera has their left on the
image's right. The projection is orthographic (people are far from the camera compared with their depth). Image
points are in pixels with pixel ``i`` spanning ``[i, i + 1)``, the convention of the keypoint labels and of
``pose.people``.

Everything is per person a handful of small numpy products and about 30 OpenCV fills: a few hundred microseconds a
figure. No torch here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# -- parts: what is painted, in which id ---------------------------------------------------------------------------
PARTS = ("torso", "neck", "head", "hair", "skirt",
         "left_upper_arm", "left_forearm", "left_hand", "right_upper_arm", "right_forearm", "right_hand",
         "left_thigh", "left_shin", "left_foot", "right_thigh", "right_shin", "right_foot", "left_ear", "right_ear")
PART = {name: i for i, name in enumerate(PARTS)}
PART_SLOTS = 32  # part ids per person in the id image: person p paints p * PART_SLOTS + part + 1 (0: nobody)

# the parts a keypoint lies on: it is visible when one of them is what is painted on top at its pixel
KEYPOINT_PARTS = {
    "nose": ("head",), "left_eye": ("head",), "right_eye": ("head",),
    "left_ear": ("left_ear", "head", "hair"), "right_ear": ("right_ear", "head", "hair"),
    "neck": ("torso", "neck", "head", "hair"),
    "left_shoulder": ("torso", "left_upper_arm", "neck"), "right_shoulder": ("torso", "right_upper_arm", "neck"),
    "left_elbow": ("left_upper_arm", "left_forearm"), "right_elbow": ("right_upper_arm", "right_forearm"),
    "left_wrist": ("left_forearm", "left_hand"), "right_wrist": ("right_forearm", "right_hand"),
    "left_hip": ("torso", "left_thigh", "skirt"), "right_hip": ("torso", "right_thigh", "skirt"),
    "left_knee": ("left_thigh", "left_shin", "skirt"), "right_knee": ("right_thigh", "right_shin", "skirt"),
    "left_ankle": ("left_shin", "left_foot"), "right_ankle": ("right_shin", "right_foot"),
}
KEYPOINTS = tuple(KEYPOINT_PARTS)
# a keypoint on the torso's side that faces away from the camera by more than this (cosine) is behind the torso
_FAR_SIDE = -0.5
# face keypoints are labelled only on the side of the head that faces the camera (their outward cosine above these)
_EYE_FACING, _EAR_FACING = 0.15, -0.25

# -- proportions, as fractions of the standing height (head top to the floor) --------------------------------------
HIP_HEIGHT = 0.530
SHOULDER_ABOVE_HIP = 0.288
SHOULDER_HALF_WIDTH = 0.13
HIP_HALF_WIDTH = 0.085
UPPER_ARM, FOREARM, HAND = 0.186, 0.146, 0.06
THIGH, SHIN, ANKLE_HEIGHT, FOOT = 0.245, 0.246, 0.039, 0.13
HEAD_ABOVE_SHOULDER = 0.117  # head centre over the shoulder line
HEAD_RADIUS = 0.062
# limb radii (half widths) at (proximal, distal) ends
RADII = {"upper_arm": (0.030, 0.024), "forearm": (0.024, 0.018), "thigh": (0.048, 0.034), "shin": (0.033, 0.024),
         "neck": (0.026, 0.026), "hand": (0.019, 0.016), "foot": (0.022, 0.018)}
TORSO_HALF_WIDTH = (0.122, 0.110)  # at the shoulders, at the hips
TORSO_HALF_DEPTH = (0.065, 0.070)

SKIN_TONES = ((255, 224, 196), (241, 194, 160), (224, 172, 128), (198, 134, 96), (161, 102, 66), (120, 74, 46),
              (90, 56, 38), (232, 190, 172))
HAIR_COLOURS = ((20, 16, 14), (58, 38, 26), (104, 70, 42), (170, 130, 80), (220, 190, 130), (150, 150, 150),
                (140, 60, 30), (235, 235, 230))
TROUSER_COLOURS = ((40, 60, 100), (25, 35, 60), (70, 90, 130), (20, 20, 22), (90, 90, 90), (160, 140, 100),
                   (110, 80, 50), (60, 70, 50))


def _rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


_DOWN = np.array([0.0, -1.0, 0.0])
_UP = np.array([0.0, 1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])
_LEFT = np.array([1.0, 0.0, 0.0])


# ---------------------------------------------------------------------------------------------------------------------
# Body, pose and look


@dataclass(frozen=True)
class Body:
    """One person's proportions: multipliers of the standard segment lengths and of the widths."""

    limbs: float = 1.0       # arms and legs
    arms: float = 1.0        # arms relative to the legs
    shoulders: float = 1.0   # shoulder breadth
    head: float = 1.0        # head size
    girth: float = 1.0       # every width (build)


@dataclass(frozen=True)
class Limb:
    """Angles (radians) of one arm or leg: flexion (forward swing), abduction (outward), twist (turns the plane
    the elbow bends in; unused for legs) and the elbow's or knee's bend."""

    flex: float = 0.0
    abduct: float = 0.0
    twist: float = 0.0
    bend: float = 0.0


@dataclass(frozen=True)
class Pose:
    """A whole pose: ``yaw`` is where the person faces (0: the camera, pi/2: the image's right), ``camera_pitch``
    looks down on them from above (positive) or up from below; the torso leans forward, bends sideways and twists
    at the hips; the head turns, nods and tilts."""

    yaw: float = 0.0
    camera_pitch: float = 0.0
    lean: float = 0.0
    side_bend: float = 0.0
    twist: float = 0.0
    head_turn: float = 0.0
    head_nod: float = 0.0
    head_tilt: float = 0.0
    left_arm: Limb = field(default_factory=Limb)
    right_arm: Limb = field(default_factory=Limb)
    left_leg: Limb = field(default_factory=Limb)
    right_leg: Limb = field(default_factory=Limb)


@dataclass(frozen=True)
class Look:
    """Colours (RGB) and clothing of one person."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    shirt: tuple[int, int, int]
    legs: tuple[int, int, int]
    shoes: tuple[int, int, int]
    hair_style: str = "short"    # short, long or none
    sleeves: str = "long"        # long, short or none
    legwear: str = "trousers"    # trousers, shorts or skirt
    brightness: float = 1.0      # the light on this person


def _deg(rng: np.random.Generator, low: float, high: float) -> float:
    return math.radians(float(rng.uniform(low, high)))


def sample_body(rng: np.random.Generator) -> Body:
    return Body(limbs=float(rng.uniform(0.93, 1.07)), arms=float(rng.uniform(0.95, 1.05)),
                shoulders=float(rng.uniform(0.88, 1.12)), head=float(rng.uniform(0.9, 1.12)),
                girth=float(rng.uniform(0.8, 1.35)))


def _arm(rng: np.random.Generator, flex: tuple, abduct: tuple, bend: tuple, twist: tuple = (-20, 40)) -> Limb:
    return Limb(flex=_deg(rng, *flex), abduct=_deg(rng, *abduct), twist=_deg(rng, *twist), bend=_deg(rng, *bend))


def _leg(rng: np.random.Generator, flex: tuple, abduct: tuple, bend: tuple) -> Limb:
    return Limb(flex=_deg(rng, *flex), abduct=_deg(rng, *abduct), bend=_deg(rng, *bend))


def _standing_legs(rng: np.random.Generator) -> tuple[Limb, Limb]:
    return _leg(rng, (-8, 12), (0, 14), (0, 12)), _leg(rng, (-8, 12), (0, 14), (0, 12))


def _gait(rng: np.random.Generator, swing: tuple, knee: tuple, elbow: tuple) -> tuple[Limb, Limb, Limb, Limb]:
    """Walking or running: legs swing in opposite phase, each arm against its leg."""
    amplitude, phase = _deg(rng, *swing), float(rng.uniform(0, 2 * math.pi))
    front = math.sin(phase)
    legs = []
    for side in (1, -1):
        flex = side * amplitude * front
        bend = (math.radians(5) if flex > 0 else 0.0) + (-flex if flex < 0 else 0.2 * flex) + _deg(rng, *knee)
        legs.append(Limb(flex=flex, abduct=_deg(rng, 0, 8), bend=max(0.0, bend)))
    arms = [Limb(flex=-0.8 * leg.flex + _deg(rng, -5, 10), abduct=_deg(rng, 5, 15), twist=_deg(rng, 0, 30),
                 bend=_deg(rng, *elbow)) for leg in legs]
    return arms[0], arms[1], legs[0], legs[1]


POSE_FAMILIES = ("stand", "walk", "run", "wave", "arms_up", "point", "hands_on_hips", "arms_out", "squat", "free")
POSE_WEIGHTS = (0.20, 0.22, 0.07, 0.09, 0.08, 0.07, 0.06, 0.06, 0.07, 0.08)


def sample_pose(rng: np.random.Generator, family: str | None = None) -> Pose:
    """A pose of ``family`` (default: drawn with ``POSE_WEIGHTS``), facing any way."""
    family = family or POSE_FAMILIES[int(rng.choice(len(POSE_FAMILIES), p=POSE_WEIGHTS))]
    relaxed = (-10, 20), (4, 18), (0, 35)
    left_leg, right_leg = _standing_legs(rng)
    left_arm, right_arm = _arm(rng, *relaxed), _arm(rng, *relaxed)
    lean = _deg(rng, -6, 10)
    if family == "walk":
        left_arm, right_arm, left_leg, right_leg = _gait(rng, (12, 32), (0, 15), (5, 50))
    elif family == "run":
        left_arm, right_arm, left_leg, right_leg = _gait(rng, (28, 50), (20, 60), (60, 110))
        lean = _deg(rng, 5, 20)
    elif family == "wave":
        left_arm = _arm(rng, (-10, 40), (70, 150), (40, 120), (0, 60))
    elif family == "arms_up":
        left_arm = _arm(rng, (0, 60), (100, 175), (0, 50), (0, 30))
        right_arm = _arm(rng, (0, 60), (100, 175), (0, 50), (0, 30)) if rng.random() < 0.6 else right_arm
    elif family == "point":
        left_arm = _arm(rng, (40, 110), (0, 70), (0, 20))
    elif family == "hands_on_hips":
        left_arm, right_arm = _arm(rng, (-15, 5), (35, 55), (95, 130), (55, 90)), \
            _arm(rng, (-15, 5), (35, 55), (95, 130), (55, 90))
    elif family == "arms_out":
        left_arm, right_arm = _arm(rng, (-20, 40), (70, 100), (0, 25)), _arm(rng, (-20, 40), (70, 100), (0, 25))
    elif family == "squat":
        depth = float(rng.uniform(0, 1))
        left_leg = _leg(rng, (50 + 40 * depth, 60 + 50 * depth), (5, 25), (60 + 60 * depth, 75 + 60 * depth))
        right_leg = _leg(rng, (50 + 40 * depth, 60 + 50 * depth), (5, 25), (60 + 60 * depth, 75 + 60 * depth))
        left_arm, right_arm = _arm(rng, (20, 90), (5, 30), (10, 90)), _arm(rng, (20, 90), (5, 30), (10, 90))
        lean = _deg(rng, 15, 45)
    elif family == "free":
        left_arm, right_arm = _arm(rng, (-40, 170), (0, 160), (0, 140), (-30, 90)), \
            _arm(rng, (-40, 170), (0, 160), (0, 140), (-30, 90))
        left_leg, right_leg = _leg(rng, (-25, 80), (0, 40), (0, 110)), _leg(rng, (-25, 80), (0, 40), (0, 110))
        lean = _deg(rng, -10, 35)
    if family in ("wave", "point", "arms_up") and rng.random() < 0.5:  # either hand
        left_arm, right_arm = right_arm, left_arm
    return Pose(
        yaw=float(rng.uniform(0, 2 * math.pi)), camera_pitch=_deg(rng, -8, 14), lean=lean,
        side_bend=_deg(rng, -7, 7), twist=_deg(rng, -15, 15), head_turn=_deg(rng, -45, 45),
        head_nod=_deg(rng, -15, 25), head_tilt=_deg(rng, -12, 12),
        left_arm=left_arm, right_arm=right_arm, left_leg=left_leg, right_leg=right_leg)


def _random_colour(rng: np.random.Generator, saturation=(0.0, 0.9), value=(0.15, 0.95)) -> tuple[int, int, int]:
    hsv = np.uint8([[[rng.integers(0, 180), round(255 * rng.uniform(*saturation)),
                      round(255 * rng.uniform(*value))]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _jitter(rng: np.random.Generator, colour: tuple, amount: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * rng.uniform(1 - amount, 1 + amount), 0, 255)) for c in colour)


def sample_look(rng: np.random.Generator) -> Look:
    legs = (_jitter(rng, TROUSER_COLOURS[int(rng.integers(len(TROUSER_COLOURS)))], 0.15) if rng.random() < 0.6
            else _random_colour(rng))
    return Look(
        skin=_jitter(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], 0.08),
        hair=_jitter(rng, HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))], 0.1),
        shirt=_random_colour(rng), legs=legs,
        shoes=_jitter(rng, (30, 28, 26), 0.6) if rng.random() < 0.7 else _random_colour(rng),
        hair_style=str(rng.choice(("short", "long", "none"), p=(0.6, 0.3, 0.1))),
        sleeves=str(rng.choice(("long", "short", "none"), p=(0.45, 0.45, 0.1))),
        legwear=str(rng.choice(("trousers", "shorts", "skirt"), p=(0.65, 0.2, 0.15))),
        brightness=float(rng.uniform(0.7, 1.15)))


# ---------------------------------------------------------------------------------------------------------------------
# Skeleton


@dataclass
class Skeleton:
    """A posed body in the camera frame, in units of the standing height, feet on y = 0 under the origin; ``points``
    by name (joints, face points, limb ends), ``forward`` and ``left`` the torso's and ``head_forward`` the head's
    direction, ``head_up`` the head's up."""

    points: dict[str, np.ndarray]
    forward: np.ndarray
    left: np.ndarray
    head_forward: np.ndarray
    head_up: np.ndarray
    head_radius: float


def _limb_frame(limb: Limb, side: int) -> np.ndarray:
    """Rotation of a limb hanging straight down to its posed direction (its local y is along the limb)."""
    return _rot_x(-limb.flex) @ _rot_z(side * limb.abduct) @ _rot_y(-side * limb.twist)


def pose_skeleton(pose: Pose, body: Body | None = None) -> Skeleton:
    """The 3D joints of ``body`` in ``pose``, turned to ``pose.yaw`` and seen from ``pose.camera_pitch``."""
    body = body or Body()
    arm_scale, leg_scale = body.limbs * body.arms, body.limbs
    torso = _rot_y(pose.twist) @ _rot_z(pose.side_bend) @ _rot_x(pose.lean)
    head = torso @ _rot_y(pose.head_turn) @ _rot_x(pose.head_nod) @ _rot_z(pose.head_tilt)
    p: dict[str, np.ndarray] = {"pelvis": np.zeros(3)}
    neck = torso @ (_UP * SHOULDER_ABOVE_HIP)
    p["neck"] = neck
    head_radius = HEAD_RADIUS * body.head
    p["head"] = neck + torso @ (_UP * (HEAD_ABOVE_SHOULDER - 0.02 + 0.3 * head_radius))
    p["nose"] = p["head"] + head @ np.array([0.0, -0.08, 0.92]) * head_radius
    for side, name in ((1, "left"), (-1, "right")):
        p[f"{name}_eye"] = p["head"] + head @ np.array([side * 0.42, 0.22, 0.78]) * head_radius
        p[f"{name}_ear"] = p["head"] + head @ np.array([side * 0.96, 0.02, -0.12]) * head_radius
        shoulder = neck + torso @ (_LEFT * side * SHOULDER_HALF_WIDTH * body.shoulders)
        arm = torso @ _limb_frame(pose.left_arm if side == 1 else pose.right_arm, side)
        bend = (pose.left_arm if side == 1 else pose.right_arm).bend
        elbow = shoulder + arm @ _DOWN * UPPER_ARM * arm_scale
        forearm = arm @ _rot_x(-bend)
        wrist = elbow + forearm @ _DOWN * FOREARM * arm_scale
        p[f"{name}_shoulder"], p[f"{name}_elbow"], p[f"{name}_wrist"] = shoulder, elbow, wrist
        p[f"{name}_hand_tip"] = wrist + forearm @ _DOWN * HAND * arm_scale
        hip = _LEFT * side * HIP_HALF_WIDTH * body.girth ** 0.5
        leg_limb = pose.left_leg if side == 1 else pose.right_leg
        leg = _limb_frame(Limb(leg_limb.flex, leg_limb.abduct), side)
        knee = hip + leg @ _DOWN * THIGH * leg_scale
        shin = leg @ _rot_x(leg_limb.bend)
        ankle = knee + shin @ _DOWN * SHIN * leg_scale
        p[f"{name}_hip"], p[f"{name}_knee"], p[f"{name}_ankle"] = hip, knee, ankle
        foot = shin @ _rot_x(-math.pi / 2) @ _DOWN  # perpendicular to the shin, forward
        p[f"{name}_heel"] = ankle + shin @ _DOWN * ANKLE_HEIGHT * 0.8 - foot * 0.02
        p[f"{name}_toe"] = p[f"{name}_heel"] + foot * FOOT * body.limbs
    view = _rot_x(pose.camera_pitch) @ _rot_y(pose.yaw)
    ground = min(p[n][1] for n in ("left_heel", "right_heel", "left_toe", "right_toe"))
    points = {name: view @ (point - _UP * ground) for name, point in p.items()}
    return Skeleton(points, forward=view @ torso @ _FORWARD, left=view @ torso @ _LEFT,
                    head_forward=view @ head @ _FORWARD, head_up=view @ head @ _UP, head_radius=head_radius)


# ---------------------------------------------------------------------------------------------------------------------
# Figures: a skeleton placed in the image, its paint and its keypoints


@dataclass
class Primitive:
    part: str
    kind: str                     # "capsule" (two ends, two radii), "polygon", "circle"
    points: np.ndarray            # (n, 2) image points
    radii: tuple[float, ...]      # capsule: (r0, r1); circle: (r,)
    colour: tuple[int, int, int]
    depth: float                  # larger: nearer the camera
    order: int                    # ties: drawn in this order
    outline: bool = True


@dataclass
class Figure:
    """A person placed in the image: ``keypoints`` (by name: (x, y) pixels and whether that point is on the side
    facing the camera), the paint, and ``box`` (x0, y0, x1, y1) around all its keypoints, in the image or not."""

    keypoints: dict[str, tuple[float, float, bool]]
    primitives: list[Primitive]
    box: tuple[float, float, float, float]
    height_px: float
    skeleton: Skeleton


def _shade(colour: tuple, factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(c * factor)))) for c in colour)


def place_figure(pose: Pose, look: Look, foot: tuple[float, float], height_px: float,
                 body: Body | None = None) -> Figure:
    """``pose`` of a person ``height_px`` tall standing at image point ``foot`` (between the feet, on the floor)."""
    skeleton = pose_skeleton(pose, body)
    body = body or Body()
    scale, (u0, v0) = float(height_px), foot

    def image(point: np.ndarray) -> np.ndarray:
        return np.array([u0 + scale * point[0], v0 - scale * point[1]])

    pts = {name: image(point) for name, point in skeleton.points.items()}
    depth = {name: float(point[2]) for name, point in skeleton.points.items()}
    camera = np.array([0.0, 0.0, 1.0])
    prims: list[Primitive] = []
    light = look.brightness
    torso_depth = float(np.mean([depth[n] for n in ("neck", "pelvis")]))

    def shade_for(d: float) -> float:  # parts behind the torso are in its shadow
        return light * (0.78 if d < torso_depth - 0.04 else 1.0)

    def capsule(part: str, a: str, b: str, radii: tuple, colour: tuple, order: int) -> None:
        d = 0.5 * (depth[a] + depth[b])
        prims.append(Primitive(part, "capsule", np.stack([pts[a], pts[b]]),
                               tuple(r * body.girth * scale for r in radii), _shade(colour, shade_for(d)), d, order))

    # torso: the projected hull of a box from the shoulders to the hips
    sk = skeleton.points

    def unit(v: np.ndarray) -> np.ndarray:
        return v / (np.linalg.norm(v) + 1e-9)

    up = unit(sk["neck"] - sk["pelvis"])
    corners = []
    for centre, left, half_w, half_d, lift in (
            (sk["neck"], skeleton.left, TORSO_HALF_WIDTH[0] * body.shoulders, TORSO_HALF_DEPTH[0], 0.02),
            (sk["pelvis"], unit(sk["left_hip"] - sk["right_hip"]), TORSO_HALF_WIDTH[1], TORSO_HALF_DEPTH[1], -0.04)):
        forward = unit(np.cross(left, up))
        for sx in (-1, 1):
            for sz in (-1, 1):
                corners.append(centre + up * lift + (left * sx * half_w + forward * sz * half_d) * body.girth)
    hull = cv2.convexHull(np.array([image(c) for c in corners], dtype=np.float32)).reshape(-1, 2)
    torso_colour = look.shirt
    prims.append(Primitive("torso", "polygon", hull, (), _shade(torso_colour, light), torso_depth, 0))
    if look.legwear == "skirt":
        knees = 0.5 * (skeleton.points["left_knee"] + skeleton.points["right_knee"])
        hem = skeleton.points["pelvis"] + 0.8 * (knees - skeleton.points["pelvis"])
        spread = skeleton.points["left_hip"] - skeleton.points["right_hip"]
        skirt = [skeleton.points["pelvis"] + 0.6 * spread, skeleton.points["pelvis"] - 0.6 * spread,
                 hem - 1.1 * spread, hem + 1.1 * spread]
        skirt_hull = cv2.convexHull(np.array([image(c) for c in skirt], dtype=np.float32)).reshape(-1, 2)
        prims.append(Primitive("skirt", "polygon", skirt_hull, (), _shade(look.legs, light), torso_depth + 0.03, 4))

    sleeves = {"long": (look.shirt, look.shirt), "short": (look.shirt, look.skin), "none": (look.skin, look.skin)}
    upper_colour, fore_colour = sleeves[look.sleeves]
    thigh_colour = look.skin if look.legwear == "skirt" else look.legs
    shin_colour = look.legs if look.legwear == "trousers" else look.skin
    for name in ("left", "right"):
        capsule(f"{name}_thigh", f"{name}_hip", f"{name}_knee", RADII["thigh"], thigh_colour, 1)
        capsule(f"{name}_shin", f"{name}_knee", f"{name}_ankle", RADII["shin"], shin_colour, 1)
        capsule(f"{name}_foot", f"{name}_heel", f"{name}_toe", RADII["foot"], look.shoes, 1)
        capsule(f"{name}_upper_arm", f"{name}_shoulder", f"{name}_elbow", RADII["upper_arm"], upper_colour, 2)
        capsule(f"{name}_forearm", f"{name}_elbow", f"{name}_wrist", RADII["forearm"], fore_colour, 2)
        capsule(f"{name}_hand", f"{name}_wrist", f"{name}_hand_tip", RADII["hand"], look.skin, 3)
    neck_top = skeleton.points["head"] - skeleton.head_up * skeleton.head_radius * 0.6
    pts["neck_top"], depth["neck_top"] = image(neck_top), float(neck_top[2])
    capsule("neck", "neck", "neck_top", RADII["neck"], look.skin, 3)

    # head: the face (skin) and the hair, the hair in front when the back of the head faces the camera
    head_r = skeleton.head_radius * scale
    head_depth = depth["head"]
    faces_camera = float(skeleton.head_forward @ camera) > 0
    prims.append(Primitive("head", "circle", pts["head"][None], (head_r,), _shade(look.skin, light), head_depth, 5))
    if look.hair_style != "none":
        hair_centre = (skeleton.points["head"] + skeleton.head_up * 0.22 * skeleton.head_radius
                       - skeleton.head_forward * 0.28 * skeleton.head_radius)
        hair_order = 4 if faces_camera else 6
        prims.append(Primitive("hair", "circle", image(hair_centre)[None], (head_r * 1.02,),
                               _shade(look.hair, light), head_depth, hair_order, outline=False))
        if look.hair_style == "long":
            back = skeleton.points["head"] - skeleton.head_forward * 0.5 * skeleton.head_radius
            tail = back - skeleton.head_up * 2.2 * skeleton.head_radius
            prims.append(Primitive("hair", "capsule", np.stack([image(back), image(tail)]),
                                   (head_r * 0.85, head_r * 0.7), _shade(look.hair, light * 0.9),
                                   float(back[2]) - 0.02, 3, outline=False))
    for name in ("left", "right"):
        ear = skeleton.points[f"{name}_ear"] - skeleton.points["head"]
        if float(ear @ camera) / (np.linalg.norm(ear) + 1e-9) > 0.1:
            prims.append(Primitive(f"{name}_ear", "circle", pts[f"{name}_ear"][None], (head_r * 0.2,),
                                   _shade(look.skin, light * 0.92), head_depth, 7, outline=False))
    if faces_camera:
        for name in ("left_eye", "right_eye"):
            outward = skeleton.points[name] - skeleton.points["head"]
            if float(outward @ camera) / (np.linalg.norm(outward) + 1e-9) > _EYE_FACING:
                prims.append(Primitive("head", "circle", pts[name][None], (max(0.7, head_r * 0.13),),
                                       (25, 20, 20), head_depth, 8, outline=False))

    keypoints: dict[str, tuple[float, float, bool]] = {}
    for name in KEYPOINTS:
        facing = True
        if name.endswith(("eye", "ear")) or name == "nose":
            outward = skeleton.points[name] - skeleton.points["head"]
            cosine = float(outward @ camera) / (np.linalg.norm(outward) + 1e-9)
            facing = cosine > (_EAR_FACING if name.endswith("ear") else _EYE_FACING)
        elif name.startswith(("left_", "right_")):
            side = skeleton.left if name.startswith("left_") else -skeleton.left
            facing = float(side @ camera) > _FAR_SIDE
        x, y = pts[name]
        keypoints[name] = (float(x), float(y), facing)
    xy = np.array([(x, y) for x, y, _ in keypoints.values()])
    box = (float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max()))
    return Figure(keypoints, prims, box, float(height_px), skeleton)


# ---------------------------------------------------------------------------------------------------------------------
# Painting and visibility

_SHIFT = 4  # OpenCV sub-pixel bits
_ONE = 1 << _SHIFT


def _cv(points: np.ndarray) -> np.ndarray:
    """Image points (pixel i spans [i, i + 1)) -> OpenCV's fixed-point coordinates (pixel i's centre is i)."""
    return np.round((np.asarray(points, dtype=np.float64) - 0.5) * _ONE).astype(np.int32)


def _fill(targets: list[tuple[np.ndarray, object]], prim: Primitive, grow: float = 0.0) -> None:
    """Fills ``prim`` (grown by ``grow`` pixels) into each (image, value) target. A capsule is one thick line with
    round caps at its mean radius (OpenCV's widths are whole pixels; the taper is below that at these sizes)."""
    points = _cv(prim.points)
    if prim.kind == "polygon":
        for image, value in targets:
            cv2.fillPoly(image, [points[:, None]], value, cv2.LINE_8, _SHIFT)
            if grow:
                cv2.polylines(image, [points[:, None]], True, value, max(1, round(2 * grow)), cv2.LINE_8, _SHIFT)
    elif prim.kind == "circle":
        centre, radius = (int(points[0, 0]), int(points[0, 1])), max(_ONE // 2, round((prim.radii[0] + grow) * _ONE))
        for image, value in targets:
            cv2.circle(image, centre, radius, value, -1, cv2.LINE_8, _SHIFT)
    else:
        a, b = (int(points[0, 0]), int(points[0, 1])), (int(points[1, 0]), int(points[1, 1]))
        width = max(1, round(prim.radii[0] + prim.radii[1] + 2 * grow))
        for image, value in targets:
            cv2.line(image, a, b, value, width, cv2.LINE_8, _SHIFT)


def paint_figures(image: np.ndarray, ids: np.ndarray, figures: list[Figure], first_id: int = 0) -> None:
    """Paints ``figures`` (in the order given: far to near) into the RGB uint8 ``image`` and their part ids into the
    int32 ``ids`` (figure k, part j: ``(first_id + k) * PART_SLOTS + j + 1``), each figure's parts from back to
    front; parts are outlined in a darker shade when the figure is large enough for an outline to show."""
    for k, figure in enumerate(figures):
        base = (first_id + k) * PART_SLOTS + 1
        outline = figure.height_px >= 60
        for prim in sorted(figure.primitives, key=lambda q: (q.depth + 0.002 * q.order, q.order)):
            value = base + PART[prim.part]
            if outline and prim.outline:
                _fill([(image, _shade(prim.colour, 0.55))], prim, grow=0.8)
            _fill([(image, prim.colour), (ids, value)], prim)


def keypoint_visibility(figure: Figure, names: tuple[str, ...], ids: np.ndarray, figure_id: int) -> np.ndarray:
    """(len(names), 3) float32 rows (x, y, v) of ``figure``'s keypoints for ``names`` (COCO's v: 2 visible,
    1 labelled but hidden, 0 not labelled: not one of the figure's keypoints, outside the image, or on the far side
    of the head), judged on the final ``ids`` image (``paint_figures``; occluders painted over it afterwards count).

    A keypoint is visible when the part painted on top at its pixel is one of the parts it lies on
    (``KEYPOINT_PARTS``), and for a keypoint on the torso's far side, not the torso itself."""
    h, w = ids.shape
    rows = np.zeros((len(names), 3), dtype=np.float32)
    base = figure_id * PART_SLOTS + 1
    for i, name in enumerate(names):
        if name not in figure.keypoints:
            continue
        x, y, facing = figure.keypoints[name]
        rows[i, :2] = x, y
        if not (0 <= x < w and 0 <= y < h):
            continue
        if not facing and (name == "nose" or name.endswith(("eye", "ear"))):
            continue
        top = int(ids[int(y), int(x)]) - base
        own = {PART[part] for part in KEYPOINT_PARTS[name]}
        if not facing:
            own.discard(PART["torso"])
        rows[i, 2] = 2.0 if top in own else 1.0
    return rows
