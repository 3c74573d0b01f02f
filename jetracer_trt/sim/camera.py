"""The car's forward wide-angle camera: projection of floor points into the image and the pixel -> floor lookup.

Model: equidistant fisheye with one radial term, r_px = f * theta * (1 + k1 * theta^2), where theta is the angle
between a ray and the optical axis; the lens sits ``height_m`` above the floor, ``forward_m`` ahead of the rear axle,
pitched down by ``pitch_deg`` (plus small yaw/roll mount errors under domain randomization).

Car frame: X forward, Y left, Z up, origin on the floor under the rear axle. Camera frame: x right, y down, z along
the optical axis. Image coordinates: u right, v down; labels map them to [-1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class CameraModel:
    width: int = 224
    height: int = 224
    diagonal_fov_deg: float = 160.0
    distortion_k1: float = -0.05
    height_m: float = 0.12
    forward_m: float = 0.16
    pitch_deg: float = 20.0
    yaw_deg: float = 0.0    # mount error, positive = lens turned left
    roll_deg: float = 0.0

    @classmethod
    def from_config(cls, cfg: dict) -> "CameraModel":
        return cls(**{k: cfg[k] for k in ("width", "height", "diagonal_fov_deg", "distortion_k1", "height_m",
                                           "forward_m", "pitch_deg") if k in cfg})

    def with_mount(self, **changes) -> "CameraModel":
        return replace(self, **changes)

    @property
    def focal_px(self) -> float:
        """Focal length that puts the image corner at half the diagonal field of view."""
        half_diag_px = 0.5 * np.hypot(self.width, self.height)
        theta = np.radians(self.diagonal_fov_deg / 2)
        return float(half_diag_px / (theta * (1 + self.distortion_k1 * theta**2)))

    def rotation(self) -> np.ndarray:
        """Columns are the camera's x (right), y (down), z (optical axis) axes in the car frame."""
        p, yw, r = np.radians([self.pitch_deg, self.yaw_deg, self.roll_deg])
        forward = np.array([np.cos(p) * np.cos(yw), np.cos(p) * np.sin(yw), -np.sin(p)])
        right0 = np.array([np.sin(yw), -np.cos(yw), 0.0])
        down0 = np.cross(forward, right0)
        right = np.cos(r) * right0 + np.sin(r) * down0
        down = np.cross(forward, right)
        return np.stack([right, down, forward], axis=1)

    @property
    def position(self) -> np.ndarray:
        return np.array([self.forward_m, 0.0, self.height_m])

    def project(self, points_car: np.ndarray) -> np.ndarray:
        """(N, 3) points in the car frame -> (N, 2) pixel coordinates (u, v), may fall outside the image."""
        cam = (points_car - self.position) @ self.rotation()
        rho = np.hypot(cam[:, 0], cam[:, 1])
        theta = np.arctan2(rho, cam[:, 2])
        r_px = self.focal_px * theta * (1 + self.distortion_k1 * theta**2)
        scale = np.divide(r_px, rho, out=np.zeros_like(rho), where=rho > 1e-9)
        return np.stack([self.width / 2 + cam[:, 0] * scale, self.height / 2 + cam[:, 1] * scale], axis=1)

    def pixel_rays(self) -> np.ndarray:
        """(H, W, 3) unit rays in the car frame through each pixel centre."""
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        mx, my = u - self.width / 2, v - self.height / 2
        r_px = np.hypot(mx, my)
        theta = _invert_distortion(r_px / self.focal_px, self.distortion_k1)
        rho = np.maximum(r_px, 1e-9)
        dirs_cam = np.stack([np.sin(theta) * mx / rho, np.sin(theta) * my / rho, np.cos(theta)], axis=-1)
        return dirs_cam @ self.rotation().T

    def floor_lookup(self, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
        """Where each pixel's ray meets the floor (car frame, metres) and how far away that is.

        Returns ``xy`` (H, W, 2) float32 and ``distance`` (H, W) float32; pixels that see no floor within
        ``max_distance`` (sky, walls) get distance = inf and xy of the point straight ahead at that distance.
        """
        rays = self.pixel_rays()
        down = -rays[..., 2]
        hits = down > 1e-6
        t = np.where(hits, self.height_m / np.maximum(down, 1e-6), np.inf)
        xy = self.position[:2] + rays[..., :2] * np.where(np.isfinite(t), t, 0.0)[..., None]
        distance = np.hypot(xy[..., 0] - self.forward_m, xy[..., 1])
        far = ~hits | (distance > max_distance)
        distance = np.where(far, np.inf, distance)
        xy[far] = (self.forward_m + max_distance, 0.0)
        return xy.astype(np.float32), distance.astype(np.float32)


def _invert_distortion(r_norm: np.ndarray, k1: float, iterations: int = 8) -> np.ndarray:
    """Solves theta * (1 + k1 * theta^2) = r_norm for theta (Newton steps from theta = r_norm)."""
    theta = r_norm.copy()
    for _ in range(iterations):
        f = theta * (1 + k1 * theta**2) - r_norm
        theta -= f / (1 + 3 * k1 * theta**2)
    return np.clip(theta, 0.0, np.pi - 1e-3)


def image_to_label(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel coordinates -> the JetRacer label convention: (x, y) in [-1, 1], x right, y down, clipped."""
    return np.clip(np.stack([2 * uv[..., 0] / width - 1, 2 * uv[..., 1] / height - 1], axis=-1), -1.0, 1.0)
