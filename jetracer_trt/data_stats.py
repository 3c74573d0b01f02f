"""What a dataset holds, in numbers and pictures, so a bad recording session is seen at a glance (``data stats``).

``dataset_stats`` counts samples per origin (where they came from) and per session, the corrupt entries and the
removed samples, and the label ranges and histograms, as one JSON-ready dict. ``write_label_histograms`` plots the
x and y histograms (stacked by origin) and where the targets lie in the image (matplotlib, imported there only);
``write_contact_sheet`` tiles thumbnails of samples spread over every session, each with its target dot, the line
from the bottom centre (where the car is) to it, and its session and label written in the corners. Every picture is
written atomically. Samples come from ``scan_dataset``, so tombstones are honoured.
"""
from __future__ import annotations

import io
import math
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from .dataset import DatasetScan, Sample, load_image
from .errors import JetracerError
from .fileio import atomic_write_bytes

HISTOGRAM_BINS = 20
SHEET_COLUMNS, SHEET_ROWS = 8, 8
TILE_PX = 128
_HEADER_PX = 22
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def sample_origin(meta: dict) -> str:
    """Where a sample came from: the format it was imported from, the recorder's source (click, teleop,
    autopilot), ``sim`` for the simulator's expert, or ``unknown``."""
    for key in ("source_format", "source"):
        if isinstance(meta.get(key), str) and meta[key]:
            return meta[key]
    return "sim" if "track_seed" in meta else "unknown"


def sample_session(meta: dict) -> str:
    """The recording session of a sample (its ``session`` meta), or its origin when it has none."""
    session = meta.get("session")
    return session if isinstance(session, str) and session else sample_origin(meta)


def _label_stats(values: np.ndarray, edges: np.ndarray) -> dict:
    if not len(values):
        return {"min": None, "max": None, "mean": None, "std": None,
                "histogram": {"edges": edges.round(6).tolist(), "counts": [0] * (len(edges) - 1)}}
    counts, _ = np.histogram(values, bins=edges)
    return {"min": round(float(values.min()), 6), "max": round(float(values.max()), 6),
            "mean": round(float(values.mean()), 6), "std": round(float(values.std()), 6),
            "histogram": {"edges": edges.round(6).tolist(), "counts": counts.tolist()}}


def dataset_stats(root: str | Path, scan: DatasetScan, bins: int = HISTOGRAM_BINS) -> dict:
    """{"dataset", "samples", "corrupt", "removed", "sources": {origin: n}, "sessions": {session: {"samples",
    "removed"}}, "x", "y": {"min", "max", "mean", "std", "histogram": {"edges", "counts"}}}."""
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= 1000:
        raise JetracerError(f"--bins must be an integer in 1..1000, got {bins!r}")
    samples = scan.samples
    sessions: dict[str, dict[str, int]] = {}
    for sample, kind in [(s, "samples") for s in samples] + [(s, "removed") for s in scan.removed]:
        counts = sessions.setdefault(sample_session(sample.meta), {"samples": 0, "removed": 0})
        counts[kind] += 1
    edges = np.linspace(-1.0, 1.0, bins + 1)
    return {
        "dataset": str(root),
        "samples": len(samples),
        "corrupt": scan.corrupt,
        "removed": len(scan.removed),
        "sources": dict(Counter(sample_origin(s.meta) for s in samples).most_common()),
        "sessions": sessions,
        "x": _label_stats(np.array([s.x for s in samples]), edges),
        "y": _label_stats(np.array([s.y for s in samples]), edges),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Pictures


def write_label_histograms(samples: list[Sample], path: Path, bins: int = HISTOGRAM_BINS, title: str = "") -> Path:
    """x and y histograms stacked by origin, and a 2-D histogram of the targets in image coordinates (y down)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise JetracerError("the label histograms need matplotlib: pip install -c constraints.txt -e '.[plot]'") \
            from None
    origins = list(dict.fromkeys(sample_origin(s.meta) for s in samples))
    fig = Figure(figsize=(14, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_x, ax_y, ax_xy = fig.subplots(1, 3)
    edges = np.linspace(-1.0, 1.0, bins + 1)
    for ax, name in ((ax_x, "x"), (ax_y, "y")):
        values = [[getattr(s, name) for s in samples if sample_origin(s.meta) == origin] for origin in origins]
        if samples:
            ax.hist(values, bins=edges, stacked=True, label=[f"{o} ({len(v)})" for o, v in zip(origins, values,
                                                                                              strict=True)])
            ax.legend(fontsize=8)
        ax.set(xlabel=f"{name} (image coordinates, {'-1 left, +1 right' if name == 'x' else '-1 top, +1 bottom'})",
               ylabel="samples", xlim=(-1, 1), title=f"label {name}")
        ax.grid(True, alpha=0.3)
    if samples:
        xs, ys = np.array([s.x for s in samples]), np.array([s.y for s in samples])
        counts, _, _ = np.histogram2d(ys, xs, bins=[edges, edges])
        image = ax_xy.imshow(counts, extent=(-1, 1, 1, -1), cmap="viridis", interpolation="nearest")
        fig.colorbar(image, ax=ax_xy, label="samples")
    ax_xy.set(xlabel="x", ylabel="y (down)", title="targets in the image", xlim=(-1, 1), ylim=(1, -1))
    fig.suptitle(title or f"{len(samples)} samples")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def pick_sheet_samples(samples: list[Sample], count: int) -> list[Sample]:
    """Up to ``count`` samples spread evenly over every session (each session gets at least one while there are
    fewer sessions than places, the rest in proportion to their sizes), in index order within a session."""
    if count <= 0 or not samples:
        return []
    by_session: dict[str, list[Sample]] = {}
    for sample in samples:
        by_session.setdefault(sample_session(sample.meta), []).append(sample)
    groups = list(by_session.values())
    if len(groups) >= count or len(samples) <= count:
        return [samples[i] for i in _spread(len(samples), min(count, len(samples)))]
    spare = count - len(groups)
    shares = [spare * len(group) / len(samples) for group in groups]
    places = [1 + math.floor(share) for share in shares]
    by_remainder = sorted(range(len(groups)), key=lambda k: shares[k] - math.floor(shares[k]), reverse=True)
    for k in by_remainder[:count - sum(places)]:
        places[k] += 1
    picked = []
    for group, n in zip(groups, places, strict=True):
        picked += [group[i] for i in _spread(len(group), min(n, len(group)))]
    return picked


def _spread(length: int, n: int) -> list[int]:
    return sorted(set(np.linspace(0, length - 1, n).round().astype(int).tolist())) if n else []


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.35,
          color=(255, 255, 255)) -> None:
    """Text with a dark shadow, readable on any frame."""
    for dx, dy in ((1, 1), (-1, -1), (1, -1), (-1, 1)):
        cv2.putText(image, text, (origin[0] + dx, origin[1] + dy), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, text, origin, _FONT, scale, color, 1, cv2.LINE_AA)


def _fit(text: str, width: int, scale: float) -> str:
    """``text`` cut (and ended with "~") until it is at most ``width`` pixels wide."""
    if cv2.getTextSize(text, _FONT, scale, 1)[0][0] <= width:
        return text
    while text and cv2.getTextSize(text + "~", _FONT, scale, 1)[0][0] > width:
        text = text[:-1]
    return text + "~"


def draw_tile(sample: Sample, size: int = TILE_PX) -> np.ndarray:
    """One BGR thumbnail: the frame (aspect kept), its target dot, the line from the bottom centre to the target,
    its session (top) and label (bottom); an unreadable image gives a red tile saying so."""
    tile = np.full((size, size, 3), 40, np.uint8)
    try:
        rgb = load_image(sample.image_path)
    except JetracerError:
        cv2.rectangle(tile, (0, 0), (size - 1, size - 1), (0, 0, 200), 2)
        _text(tile, "unreadable", (6, size // 2), color=(80, 80, 255))
    else:
        h, w = rgb.shape[:2]
        scale = min(size / w, size / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        ox, oy = (size - nw) // 2, (size - nh) // 2
        tile[oy:oy + nh, ox:ox + nw] = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (nw, nh),
                                                  interpolation=cv2.INTER_AREA)
        target = (min(ox + nw - 1, round(ox + (sample.x + 1) / 2 * nw)),  # x = 1 is the last pixel's far edge
                  min(oy + nh - 1, round(oy + (sample.y + 1) / 2 * nh)))
        cv2.line(tile, (ox + nw // 2, oy + nh - 1), target, (0, 220, 255), 1, cv2.LINE_AA)
        cv2.circle(tile, target, 4, (0, 255, 0), -1, cv2.LINE_AA)
        cv2.circle(tile, target, 4, (0, 0, 0), 1, cv2.LINE_AA)
    _text(tile, _fit(sample_session(sample.meta), size - 6, 0.35), (3, 11))
    _text(tile, f"{sample.x:+.2f} {sample.y:+.2f}", (3, size - 5))
    return tile


def write_contact_sheet(samples: list[Sample], path: Path, columns: int = SHEET_COLUMNS, rows: int = SHEET_ROWS,
                        tile_px: int = TILE_PX, title: str = "") -> Path:
    """A ``columns`` x ``rows`` grid of ``draw_tile`` thumbnails picked by ``pick_sheet_samples``, as a PNG."""
    picked = pick_sheet_samples(samples, columns * rows)
    rows = max(1, math.ceil(len(picked) / columns))  # a small dataset gets a short sheet
    sheet = np.full((_HEADER_PX + rows * tile_px, columns * tile_px, 3), 20, np.uint8)
    for k, sample in enumerate(picked):
        row, column = divmod(k, columns)
        top = _HEADER_PX + row * tile_px
        sheet[top:top + tile_px, column * tile_px:(column + 1) * tile_px] = draw_tile(sample, tile_px)
    header = title or f"{len(samples)} samples"
    _text(sheet, _fit(f"{header}, {len(picked)} shown", sheet.shape[1] - 8, 0.5), (4, 16), scale=0.5)
    ok, png = cv2.imencode(".png", sheet)
    if not ok:
        raise JetracerError("could not encode the contact sheet as PNG")
    atomic_write_bytes(path, png.tobytes())
    return path


def write_stats_pictures(root: Path, scan: DatasetScan, out: Path, bins: int = HISTOGRAM_BINS) -> dict[str, str]:
    """OUT/labels.png and OUT/contact_sheet.png for the dataset at ``root``; returns their paths by name."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JetracerError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    title = f"{root.name}: {len(scan.samples)} samples ({scan.corrupt} corrupt, {len(scan.removed)} removed)"
    try:
        labels = write_label_histograms(scan.samples, out / "labels.png", bins, title)
        sheet = write_contact_sheet(scan.samples, out / "contact_sheet.png", title=title)
    except OSError as exc:
        raise JetracerError(f"cannot write the pictures into {out}: {exc.strerror or exc}") from None
    return {"labels": str(labels), "contact_sheet": str(sheet)}
