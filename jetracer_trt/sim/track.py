"""Closed taped tracks generated from an integer seed, and the geometry queries the simulator needs.

A track is a closed, smooth centreline (a periodic cubic B-spline through random polar control points, some edges
made straight) sampled every few centimetres, with a road width that varies along it. Tracks are scaled up until
their tightest curve respects ``min_turn_radius_m`` and are rejected when two separate parts of the road come too
close; a rejected draw is retried with the next draw of the same seeded generator, so a seed always gives the same
track.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import JetracerError

MAX_ATTEMPTS = 200
SHAPING_SPACING = 0.05  # metres between vertices while corners are rounded


@dataclass(frozen=True)
class Track:
    seed: int
    points: np.ndarray     # (N, 2) centreline samples, closed (the last joins the first), counter-clockwise or not
    tangents: np.ndarray   # (N, 2) unit direction of travel
    normals: np.ndarray    # (N, 2) unit left normals
    widths: np.ndarray     # (N,) road width between the tape centres
    curvature: np.ndarray  # (N,) signed, 1/m, positive to the left
    spacing: float         # metres between samples

    @property
    def length(self) -> float:
        return self.spacing * len(self.points)

    def project(self, xy: np.ndarray, hint: int | None = None, window: int = 60) -> tuple[int, float]:
        """Nearest centreline sample to ``xy`` and the signed cross-track error (positive = left of the road).

        With ``hint`` (the last known index) only a window around it is searched, which is what a car moving a few
        centimetres per step needs; without it the whole track is searched.
        """
        n = len(self.points)
        if hint is None:
            idx = np.arange(n)
        else:
            idx = (np.arange(hint - window, hint + window + 1)) % n
        d = self.points[idx] - xy
        i = int(idx[np.argmin(np.einsum("ij,ij->i", d, d))])
        cte = float(np.dot(xy - self.points[i], self.normals[i]))
        return i, cte

    def ahead(self, index: int, distance: float) -> int:
        """Index of the centreline sample ``distance`` metres further along the track."""
        return (index + int(round(distance / self.spacing))) % len(self.points)


def _periodic_bspline(control: np.ndarray, samples_per_edge: int) -> np.ndarray:
    """Uniform cubic B-spline through a closed control polygon: C2-smooth, no overshoot, inside the hull."""
    t = np.linspace(0.0, 1.0, samples_per_edge, endpoint=False)
    basis = np.stack(
        [(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3], axis=1
    ) / 6.0
    n = len(control)
    pieces = [basis @ control[[(i - 1) % n, i, (i + 1) % n, (i + 2) % n]] for i in range(n)]
    return np.concatenate(pieces)


def _resample(points: np.ndarray, spacing: float) -> np.ndarray:
    """Resamples a closed polyline to equal arc-length steps."""
    closed = np.vstack([points, points[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    count = max(int(s[-1] / spacing), 16)
    s_new = np.linspace(0.0, s[-1], count, endpoint=False)
    return np.stack([np.interp(s_new, s, closed[:, 0]), np.interp(s_new, s, closed[:, 1])], axis=1)


def _frame(points: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangents, left normals and signed curvature of a closed, evenly sampled curve (central differences)."""
    forward = np.roll(points, -1, axis=0) - np.roll(points, 1, axis=0)
    tangents = forward / np.linalg.norm(forward, axis=1, keepdims=True)
    normals = np.stack([-tangents[:, 1], tangents[:, 0]], axis=1)
    heading = np.unwrap(np.arctan2(tangents[:, 1], tangents[:, 0]))
    dh = np.roll(heading, -1) - np.roll(heading, 1)
    dh = (dh + np.pi) % (2 * np.pi) - np.pi
    curvature = dh / (2 * spacing)
    # light smoothing: curvature from differences of a sampled curve is noisy at the centimetre scale
    kernel = np.ones(9) / 9
    curvature = np.convolve(np.concatenate([curvature[-4:], curvature, curvature[:4]]), kernel, mode="valid")
    return tangents, normals, curvature


def _turning_curvature(points: np.ndarray) -> np.ndarray:
    """Curvature at each vertex of a closed polyline: turning angle over the mean length of its two edges."""
    prev_edge = points - np.roll(points, 1, axis=0)
    next_edge = np.roll(points, -1, axis=0) - points
    cross = prev_edge[:, 0] * next_edge[:, 1] - prev_edge[:, 1] * next_edge[:, 0]
    dot = np.einsum("ij,ij->i", prev_edge, next_edge)
    mean_len = 0.5 * (np.linalg.norm(prev_edge, axis=1) + np.linalg.norm(next_edge, axis=1))
    return np.arctan2(cross, dot) / mean_len


def _round_tight_corners(points: np.ndarray, min_radius: float, iterations: int = 400) -> np.ndarray:
    """Rounds off the few places tighter than ``min_radius`` (where a hairpin joins the loop) by local Laplacian
    smoothing of just those stretches; the rest of the shape is untouched. Scaling the whole track instead would
    flatten every other feature."""
    limit = 0.95 / min_radius
    window = np.ones(9, dtype=bool)
    for iteration in range(iterations):
        tight = np.abs(_turning_curvature(points)) > limit
        if not tight.any():
            break
        mask = np.convolve(np.concatenate([tight[-4:], tight, tight[:4]]), window, mode="valid") > 0
        neighbours = 0.5 * (np.roll(points, 1, axis=0) + np.roll(points, -1, axis=0))
        points = np.where(mask[:, None], 0.5 * points + 0.5 * neighbours, points)
        if iteration % 25 == 24:
            points = _resample(points, SHAPING_SPACING)
    return points


def _hairpin(at: np.ndarray, angle: float, cfg: dict, rng: np.random.Generator) -> list[np.ndarray]:
    """Control points of a finger that leaves the loop at ``at``, runs out, turns 180 degrees and comes back.

    The turn is a semicircle of control points every 30 degrees (a cubic B-spline through them keeps ~95% of the
    radius), the legs are straight, and the legs flare at the base so that entering the finger is a curve, not a
    corner. The finger points outwards or inwards at random.
    """
    radius = rng.uniform(*cfg["hairpin_radius_m"])
    length = rng.uniform(*cfg["hairpin_length_m"])
    out = np.array([np.cos(angle), np.sin(angle)]) * (1 if rng.random() < 0.6 else -1)
    along = np.array([-np.sin(angle), np.cos(angle)])  # direction of travel along the loop here
    flare = radius + 0.3
    tip = at + out * length
    turn = [tip + radius * (np.cos(phi) * along + np.sin(phi) * out) for phi in np.linspace(np.pi, 0, 7)]
    return ([at - along * flare, at - along * radius + out * 0.4 * length] + turn
            + [at + along * radius + out * 0.4 * length, at + along * flare])


def _clearance_ok(points: np.ndarray, spacing: float, min_distance: float, max_width: float) -> bool:
    """True when parts of the road that are far apart along the track are also far apart on the floor."""
    step = max(1, int(0.1 / spacing))
    p = points[::step]
    n = len(p)
    d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    k = np.arange(n)
    along = np.abs(k[:, None] - k[None, :]) * spacing * step
    along = np.minimum(along, n * spacing * step - along)
    # nearby along the track means the same stretch of road: only compare stretches at least a hairpin apart
    far_along = along > np.pi * (min_distance + max_width)
    return bool(np.all(d[far_along] > min_distance + max_width))


def generate_track(seed: int, cfg: dict) -> Track:
    """The track for ``seed``; ``cfg`` is the ``track`` section of config/sim.yaml."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise JetracerError(f"track seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([int(seed), 0x7EAC])
    spacing = float(cfg["sample_spacing_m"])
    for _ in range(MAX_ATTEMPTS):
        n = int(rng.integers(cfg["control_points"][0], cfg["control_points"][1] + 1))
        angles = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * (2 * np.pi / n)
        outer = rng.uniform(*cfg["radius_m"])
        radii = outer * rng.uniform(*cfg["inner_ratio"], n)
        notches = rng.random(n) < cfg["notch_probability"]
        radii[notches] = outer * rng.uniform(*cfg["notch_ratio"], int(notches.sum()))
        control = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        hairpin_at = int(rng.integers(n)) if rng.random() < cfg["hairpin_probability"] else -1
        # a straight: two extra control points on an edge make four collinear ones, a straight spline piece
        expanded = []
        for i in range(n):
            a, b = control[i], control[(i + 1) % n]
            if i == hairpin_at:
                expanded += _hairpin(a, angles[i], cfg, rng)
            else:
                expanded.append(a)
            if rng.random() < cfg["straight_probability"]:
                expanded += [a + (b - a) / 3, a + 2 * (b - a) / 3]
        if rng.random() < 0.5:  # drive clockwise half of the time, so left and right curves are balanced
            expanded = expanded[::-1]
        points = _resample(_periodic_bspline(np.array(expanded), 64), SHAPING_SPACING)
        if hairpin_at >= 0:  # round the corners where the finger leaves the loop, unless that reshapes the track
            rounded = _round_tight_corners(points, cfg["min_turn_radius_m"])
            if len(rounded) < 0.93 * len(points):
                continue
            points = rounded
        points = _resample(points, spacing)
        _, _, curvature = _frame(points, spacing)
        # scale up until the tightest curve is drivable; a draw that needs much scaling has its features flattened
        scale = max(1.0, float(np.max(np.abs(curvature))) * cfg["min_turn_radius_m"] * 1.03)
        if scale > cfg["max_scale"]:
            continue
        points = _resample(points * scale, spacing)
        length = spacing * len(points)
        if length > cfg["max_length_m"]:
            continue
        tangents, normals, curvature = _frame(points, spacing)
        if np.max(np.abs(curvature)) * cfg["min_turn_radius_m"] > 1.1:
            continue
        s = np.arange(len(points)) * spacing
        mean_width = rng.uniform(*cfg["road_width_m"])
        waves = int(rng.integers(1, 5))
        widths = mean_width + cfg["road_width_variation_m"] * rng.uniform(0, 1) * np.sin(
            2 * np.pi * waves * s / length + rng.uniform(0, 2 * np.pi)
        )
        if not _clearance_ok(points, spacing, cfg["min_clearance_m"], float(widths.max())):
            continue
        return Track(int(seed), points, tangents, normals, widths, curvature, spacing)
    raise JetracerError(f"could not generate a valid track for seed {seed} in {MAX_ATTEMPTS} attempts")


def parse_seeds(text: str) -> list[int]:
    """'5' -> [5]; '0-99' -> [0..99]; '1,4,10-12' -> [1, 4, 10, 11, 12]. Raises JetracerError otherwise."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise JetracerError(f"bad seed list {text!r}: use N, A-B or a comma-separated mix such as 1,4,10-12") from None
    if not seeds or min(seeds) < 0:
        raise JetracerError(f"bad seed list {text!r}: seeds are non-negative integers")
    return seeds
