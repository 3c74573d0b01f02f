"""Camera frames from the floor plane, without GL: a painted top-down floor texture sampled through a precomputed
pixel -> floor lookup.

Per run, the track, tape, floor pattern, light, shadows and distractors are painted once into a texture of
``texture_m_per_px`` resolution, and each camera variant's pixel -> floor-point table is computed once. Per frame,
one 2x3 affine transform moves the table by the car's pose (``cv2.transform``), one ``cv2.remap`` samples the
texture, and one blend fades the far floor into the background. The per-frame path allocates nothing.
"""
from __future__ import annotations

import cv2
import numpy as np

from .appearance import Appearance
from .camera import CameraModel
from .track import Track

MARGIN_M = 3.0  # floor painted around the track's bounding box


class FloorTexture:
    """The top-down floor image of one run and the world -> texture-pixel mapping."""

    def __init__(self, track: Track, look: Appearance, m_per_px: float, rng: np.random.Generator):
        lo = track.points.min(axis=0) - MARGIN_M
        hi = track.points.max(axis=0) + MARGIN_M
        self.m_per_px = m_per_px
        self.x0, self.y_top = float(lo[0]), float(hi[1])
        width, height = (int(np.ceil(v)) for v in (hi - lo) / m_per_px)
        self.image = _paint(track, look, self, (height, width), rng)

    def to_px(self, xy: np.ndarray) -> np.ndarray:
        """World metres (..., 2) -> texture pixel coordinates (col, row)."""
        return np.stack([(xy[..., 0] - self.x0) / self.m_per_px, (self.y_top - xy[..., 1]) / self.m_per_px], -1)


def _pattern(style: str, shape: tuple, m_per_px: float, rng: np.random.Generator) -> np.ndarray:
    """A zero-mean brightness pattern (float32, roughly in [-1, 1]) for a floor style."""
    h, w = shape

    def smooth_noise(cell_m: float) -> np.ndarray:
        cells = (max(2, int(w * m_per_px / cell_m)), max(2, int(h * m_per_px / cell_m)))
        small = rng.standard_normal((cells[1], cells[0])).astype(np.float32)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)

    fine = rng.standard_normal((h, w)).astype(np.float32)
    if style == "plain":
        return 0.4 * fine + 0.3 * smooth_noise(0.5)
    if style == "carpet":
        return 0.9 * fine + 0.3 * smooth_noise(0.05)
    if style == "concrete":
        return 0.3 * fine + 0.8 * smooth_noise(0.3) + 0.4 * smooth_noise(1.5)
    if style == "wood":
        plank_px = max(4, int(rng.uniform(0.08, 0.25) / m_per_px))
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        across = xx * np.cos(angle) + yy * np.sin(angle)
        along = -xx * np.sin(angle) + yy * np.cos(angle)
        plank = np.floor(across / plank_px).astype(np.int64)
        plank_shade = rng.uniform(-1, 1, int(plank.max() - plank.min()) + 1).astype(np.float32)[plank - plank.min()]
        grain = np.sin(along * 0.02 + across * 0.6 + 3 * smooth_noise(0.2)).astype(np.float32)
        seam = (np.mod(across, plank_px) < 1.0).astype(np.float32)
        return 0.6 * plank_shade + 0.3 * grain + 0.2 * fine - 1.5 * seam
    if style == "tiles":
        tile_px = max(8, int(rng.uniform(0.2, 0.6) / m_per_px))
        yy, xx = np.mgrid[0:h, 0:w]
        grout = ((xx % tile_px) < 2) | ((yy % tile_px) < 2)
        return 0.25 * fine + 0.2 * smooth_noise(0.4) - 1.5 * grout.astype(np.float32)
    raise ValueError(f"unknown floor style {style!r}")


def _paint(track: Track, look: Appearance, tex: FloorTexture, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    pattern = _pattern(look.floor_style, shape, tex.m_per_px, rng)
    floor = np.asarray(look.floor_rgb, np.float32) * (1 + look.floor_texture_strength * pattern[..., None])
    if look.light_variation > 0:
        cells = (max(2, shape[1] // 150), max(2, shape[0] // 150))
        light = cv2.resize(rng.uniform(-1, 1, (cells[1], cells[0])).astype(np.float32), (shape[1], shape[0]),
                           interpolation=cv2.INTER_CUBIC)
        floor *= (1 + look.light_variation * light)[..., None]
    image = np.clip(floor, 0, 255).astype(np.uint8)

    shift = 4  # sub-pixel precision for OpenCV drawing
    def poly(xy):
        return np.round(tex.to_px(xy) * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)

    if look.distractors:
        _draw_distractors(image, track, look, tex, rng, poly, shift)
    tape_px = max(1, int(round(look.tape_width_m / tex.m_per_px)))
    half = track.widths[:, None] / 2
    for side in (1, -1):
        edge = track.points + side * track.normals * half
        cv2.polylines(image, [poly(edge)], True, look.tape_rgb, tape_px, cv2.LINE_AA, shift)
    if look.centre_line_rgb is not None:
        dash = max(2, int(0.15 / track.spacing))
        for start in range(0, len(track.points) - dash, 2 * dash):
            cv2.polylines(image, [poly(track.points[start:start + dash])], False, look.centre_line_rgb,
                          max(1, tape_px // 2 + 1), cv2.LINE_AA, shift)
    if look.shadows:
        mask = np.zeros(shape, np.float32)
        for _ in range(look.shadows):
            centre = track.points[int(rng.integers(len(track.points)))] + rng.normal(0, 0.8, 2)
            corners = centre + rng.normal(0, rng.uniform(0.2, 0.8), (int(rng.integers(3, 7)), 2))
            cv2.fillPoly(mask, [poly(corners)], float(rng.uniform(0.25, 0.6)), cv2.LINE_AA, shift)
        mask = cv2.GaussianBlur(mask, (0, 0), float(rng.uniform(2, 15)))
        image = (image * (1 - mask[..., None])).astype(np.uint8)
    tint = np.asarray(look.light_tint, np.float32)
    if not np.allclose(tint, 1):
        image = np.clip(image * tint, 0, 255).astype(np.uint8)
    # prefilter: a 1 cm texel is smaller than most camera pixels' footprint, so take the edge off the aliasing
    return cv2.GaussianBlur(image, (3, 3), 0.7)


def _draw_distractors(image, track, look, tex, rng, poly, shift) -> None:
    """Paper sheets, tape scraps, cables and blobs on the floor, mostly off the road, some on it."""
    lo = track.points.min(axis=0) - MARGIN_M / 2
    hi = track.points.max(axis=0) + MARGIN_M / 2
    for _ in range(look.distractors):
        centre = rng.uniform(lo, hi)
        _, cte = track.project(centre)
        on_road = abs(cte) < track.widths.mean() / 2 + 0.05
        if on_road and rng.random() < 0.8:
            continue
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(4)
        size = rng.uniform(0.05, 0.35) * (0.4 if on_road else 1.0)
        if kind == 0:  # sheet of paper or a box seen from above
            angle = rng.uniform(0, np.pi)
            corners = np.array([[-1, -0.7], [1, -0.7], [1, 0.7], [-1, 0.7]]) * size
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            cv2.fillPoly(image, [poly(centre + corners @ rot.T)], colour, cv2.LINE_AA, shift)
        elif kind == 1:  # blob, stain
            px = tex.to_px(centre)
            cv2.circle(image, (int(px[0] * 16), int(px[1] * 16)), int(size / tex.m_per_px * 16), colour, -1,
                       cv2.LINE_AA, shift)
        else:  # cable or a scrap of tape: a short wiggly line
            steps = np.cumsum(rng.normal(0, size / 3, (6, 2)), axis=0) + centre
            width = max(1, int(rng.uniform(0.008, 0.04) / tex.m_per_px))
            cv2.polylines(image, [poly(steps)], False, colour, width, cv2.LINE_AA, shift)


class Renderer:
    """Renders the car's camera view for a pose; owns every per-frame buffer."""

    def __init__(self, track: Track, camera: CameraModel, look: Appearance, cfg: dict, rng: np.random.Generator):
        self.camera = camera
        self.look = look
        self.texture = FloorTexture(track, look, float(cfg["track"]["texture_m_per_px"]), rng)
        cam_cfg = cfg["camera"]
        fog_start, fog_end = float(cam_cfg["fog_start_m"]), float(cam_cfg["fog_end_m"])
        pitches = [0.0] if look.vibration_deg == 0 else [-look.vibration_deg, 0.0, look.vibration_deg]
        self.cameras = [camera.with_mount(pitch_deg=camera.pitch_deg + p) for p in pitches]
        h, w = camera.height, camera.width
        self._floor_xy, self._weights = [], []
        for cam in self.cameras:
            xy, dist = cam.floor_lookup(fog_end)
            fog = np.clip((dist - fog_start) / (fog_end - fog_start), 0, 1).astype(np.float32)
            fog[~np.isfinite(dist)] = 1.0
            rows = int(np.nonzero(fog.max(axis=1) > 0)[0].max()) + 1 if (fog > 0).any() else 0
            self._floor_xy.append(xy)
            self._weights.append((rows, np.ascontiguousarray(1 - fog[:rows]), np.ascontiguousarray(fog[:rows])))
        ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        sky = (1 - ramp) * np.asarray(look.sky_top_rgb, np.float32) + ramp * np.asarray(look.sky_bottom_rgb, np.float32)
        self._background = np.ascontiguousarray(np.broadcast_to(sky, (h, w, 3)).astype(np.uint8))
        self._maps = np.empty((h, w, 2), np.float32)
        self.frame = np.empty((h, w, 3), np.uint8)
        self.figure_ids: np.ndarray | None = None  # part ids of the last figure drawn (made on the first one)
        self._noise_bank = []
        if look.noise_sigma > 0:
            for _ in range(4):
                noise = rng.normal(0, look.noise_sigma, (h, w, 3))
                self._noise_bank.append((np.clip(noise, 0, 255).astype(np.uint8),
                                         np.clip(-noise, 0, 255).astype(np.uint8)))

    def render(self, x: float, y: float, yaw: float, variant: int = 0) -> np.ndarray:
        """The geometric camera view of the car at (x, y, yaw) (rear axle, world frame); ``self.frame`` reused."""
        tex = self.texture
        c, s = np.cos(yaw), np.sin(yaw)
        k = 1.0 / tex.m_per_px
        transform = np.array([[c * k, -s * k, (x - tex.x0) * k], [-s * k, -c * k, (tex.y_top - y) * k]], np.float32)
        cv2.transform(self._floor_xy[variant], transform, dst=self._maps)
        cv2.remap(tex.image, self._maps, None, cv2.INTER_LINEAR, dst=self.frame, borderMode=cv2.BORDER_REFLECT101)
        rows, w_floor, w_bg = self._weights[variant]
        if rows:
            self.frame[:rows] = cv2.blendLinear(self.frame[:rows], self._background[:rows], w_floor, w_bg)
        return self.frame

    def draw_figure(self, figure) -> np.ndarray:
        """Paints a person (``pose.figures``) over ``self.frame`` (nothing in the simulator stands in front of
        them); returns the frame's part-id image (``figures.paint_figures``, figure id 0), a reused buffer."""
        from ..pose.figures import paint_figures  # the pose package (SciPy) only for worlds with people

        if self.figure_ids is None:
            self.figure_ids = np.zeros(self.frame.shape[:2], np.int32)
        else:
            self.figure_ids.fill(0)
        paint_figures(self.frame, self.figure_ids, [figure])
        return self.figure_ids

    def camera_effects(self, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Per-frame exposure, blur, sensor noise and JPEG artefacts of a randomized run (in place when possible)."""
        look = self.look
        if look.exposure_jitter:
            gain = 1 + rng.uniform(-look.exposure_jitter, look.exposure_jitter)
            cv2.convertScaleAbs(frame, dst=frame, alpha=gain)
        if look.blur_sigma:
            cv2.GaussianBlur(frame, (0, 0), look.blur_sigma, dst=frame)
        if self._noise_bank:
            plus, minus = self._noise_bank[int(rng.integers(len(self._noise_bank)))]
            cv2.add(frame, plus, dst=frame)
            cv2.subtract(frame, minus, dst=frame)
        if look.jpeg_quality:
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, look.jpeg_quality])
            frame[:] = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        return frame
