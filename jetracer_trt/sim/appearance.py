"""What the world and the camera look like for one run: the plain default, or a domain-randomized draw.

Everything is drawn from the run's seeded generator, so the same seed gives the same look. Per-run choices (floor,
tape, lighting, shadows, distractors, camera mount) are baked into the floor texture and lookups once; per-frame
effects (vibration, exposure, blur, noise, JPEG) are cheap image operations picked per frame.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

FLOOR_STYLES = ("plain", "carpet", "wood", "tiles", "concrete")
TAPE_COLOURS = {
    "white": (235, 235, 230), "yellow": (230, 200, 40), "blue": (40, 90, 200), "red": (200, 40, 40),
    "green": (40, 160, 70), "orange": (240, 130, 30), "black": (25, 25, 25),
}


@dataclass(frozen=True)
class Appearance:
    floor_style: str = "plain"
    floor_rgb: tuple = (112, 112, 118)
    floor_texture_strength: float = 0.06
    tape_rgb: tuple = TAPE_COLOURS["white"]
    tape_width_m: float = 0.04
    centre_line_rgb: tuple | None = None       # a dashed centre line, when not None
    light_variation: float = 0.0               # amplitude of slow brightness changes across the floor
    light_tint: tuple = (1.0, 1.0, 1.0)        # per-channel gain of the room light
    shadows: int = 0
    distractors: int = 0
    sky_top_rgb: tuple = (190, 195, 205)
    sky_bottom_rgb: tuple = (150, 150, 155)
    camera_height_scale: float = 1.0
    camera_pitch_offset_deg: float = 0.0
    camera_yaw_deg: float = 0.0
    camera_roll_deg: float = 0.0
    vibration_deg: float = 0.0                 # per-frame pitch jitter (one of a few precomputed lookups)
    exposure_jitter: float = 0.0               # per-frame relative brightness change
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    jpeg_quality: int | None = None


def _luma(rgb) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _random_rgb(rng: np.random.Generator, sat=(0.0, 0.5), val=(0.15, 0.9)) -> tuple:
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val))
    return (int(r * 255), int(g * 255), int(b * 255))


def sample_appearance(rng: np.random.Generator, randomize: bool) -> Appearance:
    """The default look, or a random one: floors, tape, light, clutter, camera mount and image quality."""
    if not randomize:
        return Appearance()
    floor = _random_rgb(rng)
    # tape must stay visible against the floor, as a person laying a track would make sure of
    candidates = [c for c in TAPE_COLOURS.values() if abs(_luma(c) - _luma(floor)) > 45]
    tape = candidates[int(rng.integers(len(candidates)))] if candidates else TAPE_COLOURS["white"]
    tape = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in tape)
    centre = None
    if rng.random() < 0.25:
        centre = tuple(TAPE_COLOURS[k] for k in ("white", "yellow", "orange"))[int(rng.integers(3))]
    return Appearance(
        floor_style=FLOOR_STYLES[int(rng.integers(len(FLOOR_STYLES)))],
        floor_rgb=floor,
        floor_texture_strength=float(rng.uniform(0.02, 0.25)),
        tape_rgb=tape,
        tape_width_m=float(rng.uniform(0.02, 0.06)),
        centre_line_rgb=centre,
        light_variation=float(rng.uniform(0.0, 0.35)),
        light_tint=tuple(float(v) for v in rng.uniform(0.8, 1.2, 3)),
        shadows=int(rng.integers(0, 7)),
        distractors=int(rng.integers(0, 40)),
        sky_top_rgb=_random_rgb(rng, val=(0.3, 1.0)),
        sky_bottom_rgb=_random_rgb(rng, val=(0.2, 0.9)),
        camera_height_scale=float(rng.uniform(0.85, 1.15)),
        camera_pitch_offset_deg=float(rng.uniform(-4, 4)),
        camera_yaw_deg=float(rng.uniform(-1.5, 1.5)),
        camera_roll_deg=float(rng.uniform(-2, 2)),
        vibration_deg=float(rng.uniform(0, 1.0)),
        exposure_jitter=float(rng.uniform(0, 0.1)),
        blur_sigma=float(rng.uniform(0.3, 1.3)) if rng.random() < 0.5 else 0.0,
        noise_sigma=float(rng.uniform(2, 9)) if rng.random() < 0.6 else 0.0,
        jpeg_quality=int(rng.integers(25, 90)) if rng.random() < 0.4 else None,
    )
