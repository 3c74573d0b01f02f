"""Pictures of a run: the driven path from above (matplotlib, imported only here) and the camera-view video."""
from __future__ import annotations

import textwrap
from pathlib import Path

import cv2
import numpy as np

from ..errors import JetracerError
from .world import SimWorld


def ensure_parent_dir(path: str | Path) -> Path:
    """Creates the folder of an output file, or raises JetracerError saying why it cannot."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JetracerError(f"cannot create the folder for {path}: {exc.strerror}") from None
    return path


TITLE_CHARS = 60  # a title wider than the 7-inch axes is cut at the figure's edge: wrap it instead


def error_scale_m(errors: np.ndarray) -> float:
    """The colour bar's top: the largest error of the run rounded up to a centimetre (at least 1 cm), so the
    colours spread over what happened rather than over the whole road width."""
    largest = float(np.max(errors)) if len(errors) else 0.0
    return max(0.01, float(np.ceil(largest * 100) / 100))


def plot_run(world: SimWorld, path: str | Path, title: str = "") -> Path:
    """Track edges and the car centre's path from above, coloured by |cross-track error|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    path = ensure_parent_dir(path)
    track = world.track
    fig, ax = plt.subplots(figsize=(7, 7))
    for side in (1, -1):
        edge = track.points + side * track.normals * track.widths[:, None] / 2
        edge = np.vstack([edge, edge[:1]])
        ax.plot(edge[:, 0], edge[:, 1], color="0.3", lw=1)
    driven = np.asarray(world.stats.path) if world.stats.path else np.zeros((0, 3))
    if len(driven) > 1:
        segments = np.stack([driven[:-1, :2], driven[1:, :2]], axis=1)
        jumps = np.linalg.norm(segments[:, 1] - segments[:, 0], axis=1) > 0.5  # resets after off-track events
        lines = LineCollection(segments[~jumps], cmap="viridis", linewidths=2)
        errors = np.abs(driven[1:, 2])[~jumps]
        lines.set_array(errors)
        lines.set_clim(0, error_scale_m(errors))
        ax.add_collection(lines)
        fig.colorbar(lines, ax=ax, label="|cross-track error| (m)", shrink=0.7)
    ax.plot(*track.points[0], "r>", ms=10, label="start")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(textwrap.fill(title or f"track seed {track.seed}", TITLE_CHARS))
    ax.legend(loc="upper right")
    try:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    except OSError as exc:
        raise JetracerError(f"cannot write plot {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)
    return path


class RunVideo:
    """Writes the camera view, 2x enlarged, with the predicted road target drawn on it."""

    def __init__(self, path: str | Path, fps: float, size: int = 448):
        self.path = ensure_parent_dir(path)
        self.size = size
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
        if not self.writer.isOpened():
            raise JetracerError(f"cannot open video file {self.path} for writing (is the folder writable?)")
        self._canvas = np.empty((size, size, 3), np.uint8)

    def __call__(self, frame: np.ndarray, target: tuple, world: SimWorld) -> None:
        cv2.resize(frame, (self.size, self.size), dst=self._canvas, interpolation=cv2.INTER_NEAREST)
        cv2.cvtColor(self._canvas, cv2.COLOR_RGB2BGR, dst=self._canvas)
        if np.isfinite(target).all():  # no target (follow-me lost its person): the view alone
            u = int((target[0] + 1) / 2 * self.size)
            v = int((target[1] + 1) / 2 * self.size)
            cv2.circle(self._canvas, (u, v), 8, (0, 255, 0), 2)
            cv2.line(self._canvas, (self.size // 2, self.size - 1), (u, v), (0, 255, 0), 1)
        self.writer.write(self._canvas)

    def close(self) -> None:
        self.writer.release()
