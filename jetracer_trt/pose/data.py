"""Synthetic people for pose training and evaluation, and the pose dataset format.

**Scenes** (``render_scene``): every scene comes from one integer seed, the same picture and labels every time.
A 224x224 RGB frame (trt_pose's input) holds zero to five articulated figures (``figures.py``) of 60 to 230 pixels,
standing anywhere, facing any way, in everyday poses, some cut by the frame's edges, nearer ones (lower feet)
covering farther ones, and with some probability a post, box or panel in front of them. The background is a
frame of the simulator (``sim``: its floors, tapes and walls, plain and randomized) or a procedural texture (smooth
colour fields, stripes, tiles, a room with a floor and a wall) with clutter on it, skin- and limb-like shapes among
it. Then the light (gain, tint, a gradient), blur, sensor noise and JPEG artefacts. Labels: per person, the 18
keypoints of the topology as (x, y, v) in pixels (pixel ``i`` spans ``[i, i + 1)``), COCO's visibility ``v`` (2 seen,
1 hidden behind something but in the frame, 0 not labelled: outside the frame or on the far side of the head), and
the box around all of the person's keypoints, in the frame or not (the PCK normaliser, ``evaluate.py``).

**Seeds**: scene seeds from ``EVALUATION_SEEDS`` (1,000,000) up are held out: ``VALIDATION_SEEDS`` (1,000,000...)
for choosing the best epoch, ``TEST_SEEDS`` (2,000,000...) for the reported PCK, ``CONVERSION_SEEDS``
(3,000,000...) for calibrating and verifying conversions. ``collect_pose`` refuses them.

**Pose dataset format v1**, a folder::

    pose_dataset.json  manifest {"format": "jetracer_trt.pose_dataset", "version": 1, "keypoints": [names], ...}
    images/            one JPEG per sample
    index.jsonl        one JSON object per sample: {"image": "images/<name>.jpg", "seed": N,
                       "people": [{"keypoints": [[x, y, v], ...], "box": [x0, y0, x1, y1]}, ...]}

Crash-safe as the road-following format is: an image is written under a temporary name, fsynced and renamed
(``fileio.atomic_write_bytes``) before its index line goes out in one ``O_APPEND`` write under an exclusive lock,
then fsynced; so several processes may append at once and a crash leaves at worst a torn last line, which readers
skip and count, as they skip lines naming a missing image.

numpy and OpenCV only: no torch here.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import math
import multiprocessing as mp
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ..errors import JetracerError
from ..fileio import atomic_write_bytes, fsync_dir
from .figures import (
    PART_SLOTS,
    keypoint_visibility,
    paint_figures,
    place_figure,
    sample_body,
    sample_look,
    sample_pose,
)
from .topology import PoseTopology, load_topology

log = logging.getLogger(__name__)

IMAGE_SIZE = 224
EVALUATION_SEEDS = 1_000_000   # scene seeds from here on are held out
VALIDATION_SEEDS = 1_000_000   # the first of the validation scenes
TEST_SEEDS = 2_000_000         # the first of the scenes the reported PCK is measured on
CONVERSION_SEEDS = 3_000_000   # the first of the scenes conversions calibrate and verify on (without --calib)
MAX_PEOPLE = 5
PEOPLE_WEIGHTS = (0.04, 0.34, 0.28, 0.18, 0.11, 0.05)  # 0 to MAX_PEOPLE people in a scene
HEIGHT_RANGE_PX = (60.0, 230.0)  # standing height, drawn log-uniformly
SIM_BACKGROUND_SHARE = 0.35
OCCLUDER_PROBABILITY = 0.3
_SCENE_SALT = 0x9E05E  # keeps scene seeds apart from the simulator's and the trainer's seeds
_OCCLUDER_ID = np.iinfo(np.int32).max  # painted into the id image where an occluder hides what is behind it

FORMAT_NAME = "jetracer_trt.pose_dataset"
FORMAT_VERSION = 1
MANIFEST_NAME = "pose_dataset.json"
INDEX_NAME = "index.jsonl"
IMAGES_DIR = "images"
JPEG_QUALITY = 92


@dataclass
class Scene:
    """One synthetic frame and its labels: ``keypoints`` (P, C, 3) float32 (x, y, v) in the topology's keypoint
    order, ``boxes`` (P, 4) float32 (x0, y0, x1, y1) around all of each person's keypoints."""

    image: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray
    seed: int


# ---------------------------------------------------------------------------------------------------------------------
# Backgrounds

_SIM_BANK: list[np.ndarray] = []
_SIM_TRACKS = ((0, False), (1, False), (2, False), (3, True), (4, True), (5, True), (6, True), (7, False))
_SIM_FRAMES_PER_TRACK = 24


def simulator_frames() -> list[np.ndarray]:
    """The simulator backgrounds: frames of a few fixed tracks, plain and randomized, from places along the road
    and off it, rendered once per process (the same frames in every process)."""
    if not _SIM_BANK:
        from ..sim import SimWorld

        for track_seed, randomize in _SIM_TRACKS:
            world = SimWorld(track_seed, randomize=randomize, run_seed=7)
            rng = np.random.default_rng([_SCENE_SALT, track_seed])
            points = world.track.points
            for _ in range(_SIM_FRAMES_PER_TRACK):
                x, y = points[int(rng.integers(len(points)))] + rng.normal(0, 0.3, 2)
                frame = world.renderer.render(float(x), float(y), float(rng.uniform(0, 2 * math.pi)),
                                              int(rng.integers(len(world.renderer.cameras))))
                frame = frame.copy()
                if randomize:
                    frame = world.renderer.camera_effects(frame, rng)
                _SIM_BANK.append(cv2.resize(frame, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA))
    return _SIM_BANK


def _colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3) float32 random RGB colours (any hue, most saturations and brightnesses)."""
    hsv = np.stack([rng.integers(0, 180, count), rng.integers(0, 200, count), rng.integers(30, 250, count)], axis=1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0].astype(np.float32)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return _colours(rng, 1)[0]


def _smooth_field(rng: np.random.Generator, size: int) -> np.ndarray:
    cells = int(rng.integers(2, 14))
    grid = _colours(rng, cells * cells).reshape(cells, cells, 3)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _pattern(rng: np.random.Generator, size: int) -> np.ndarray:
    """Stripes or tiles between two colours (computed at half size: they are sharp-edged anyway)."""
    a, b = _colour(rng), _colour(rng)
    half = size // 2
    ys, xs = np.ogrid[0:half, 0:half]
    period = float(rng.uniform(3, 30))
    if rng.random() < 0.5:
        angle = float(rng.uniform(0, math.pi))
        phase = (xs * math.cos(angle) + ys * math.sin(angle)) / period
        mix = (np.sin(2 * math.pi * phase) > rng.uniform(-0.6, 0.6)).astype(np.float32)
    else:
        mix = ((np.floor(xs / period) + np.floor(ys / period)) % 2).astype(np.float32)
        mix[((xs % period) < 0.75) | ((ys % period) < 0.75)] = 0.5  # grout
    return _blend(a, b, cv2.resize(mix, (size, size), interpolation=cv2.INTER_NEAREST))


def _blend(a: np.ndarray, b: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """The (H, W, 3) float32 image ``a * mix + b * (1 - mix)`` of colours ``a``, ``b`` and an (H, W) ``mix``,
    computed on (H, W * 3) rows: numpy broadcasts a trailing axis of 3 several times slower."""
    h, w = mix.shape
    rows = np.repeat(mix.astype(np.float32), 3, axis=1)
    return (np.tile(b, w) + rows * np.tile(a - b, w)).reshape(h, w, 3)


def _room(rng: np.random.Generator, size: int) -> np.ndarray:
    """A wall above a floor, with a door or a window."""
    image = _smooth_field(rng, size)
    horizon = int(rng.uniform(0.2, 0.75) * size)
    image[horizon:] = cv2.addWeighted(_pattern(rng, size), 0.5, _smooth_field(rng, size), 0.5, 0.0)[horizon:]
    for _ in range(int(rng.integers(0, 3))):
        x0, w = int(rng.uniform(0, size)), int(rng.uniform(15, 70))
        y0, h = int(rng.uniform(0, horizon)), int(rng.uniform(20, 120))
        cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), _colour(rng).tolist(), -1)
    return image


def _clutter(image: np.ndarray, rng: np.random.Generator) -> None:
    """Shapes on the background, some of them skin-coloured bars and blobs that look like limbs and heads."""
    size = image.shape[0]
    count = int(rng.integers(3, 30))
    for colour in _colours(rng, count).tolist():
        if rng.random() < 0.15:
            colour = [float(c) for c in (rng.uniform(150, 255), rng.uniform(100, 200), rng.uniform(70, 170))]
        kind = rng.random()
        x, y = rng.uniform(-20, size + 20, 2)
        if kind < 0.35:
            w, h = rng.uniform(4, 70, 2)
            cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), colour, -1)
        elif kind < 0.6:
            axes = (int(rng.uniform(3, 30)), int(rng.uniform(3, 30)))
            cv2.ellipse(image, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            dx, dy = rng.normal(0, 35, 2)
            cv2.line(image, (int(x), int(y)), (int(x + dx), int(y + dy)), colour, int(rng.integers(2, 16)))


def background(rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """An RGB uint8 background: a simulator frame, zoomed, mirrored and recoloured, or a procedural texture."""
    if rng.random() < SIM_BACKGROUND_SHARE:
        frames = simulator_frames()
        frame = frames[int(rng.integers(len(frames)))].astype(np.float32)
        zoom = float(rng.uniform(1.0, 1.6))
        crop = int(round(size / zoom))
        x0, y0 = (int(rng.integers(0, size - crop + 1)) for _ in range(2))
        image = cv2.resize(frame[y0:y0 + crop, x0:x0 + crop], (size, size), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            image = image[:, ::-1]
        image = cv2.multiply(np.ascontiguousarray(image), (*rng.uniform(0.8, 1.2, 3).tolist(), 0.0))
    else:
        kind = rng.random()
        image = _smooth_field(rng, size) if kind < 0.3 else _pattern(rng, size) if kind < 0.6 else _room(rng, size)
        image = np.ascontiguousarray(image)
        if rng.random() < 0.7:
            _clutter(image, rng)
    return np.ascontiguousarray(np.clip(image, 0, 255)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------------
# Scenes


def scene_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([_SCENE_SALT, int(seed)])


def _place_people(rng: np.random.Generator, count: int, size: int) -> list[tuple[tuple[float, float], float]]:
    """(foot point, height) of ``count`` people, farthest (highest feet) first, none hiding most of another."""
    placed: list[tuple[tuple[float, float], float]] = []
    for _ in range(count * 6):
        if len(placed) == count:
            break
        height = float(math.exp(rng.uniform(*np.log(HEIGHT_RANGE_PX))))
        v = float(rng.uniform(0.45, 1.15) * size)
        v = max(v, height * rng.uniform(0.7, 1.0))  # most heads stay in the frame
        u = float(rng.uniform(-0.05, 1.05) * size)
        crowded = any(abs(u - pu) < 0.18 * min(height, ph) and abs(v - pv) < 0.25 * min(height, ph)
                      for (pu, pv), ph in placed)
        if not crowded:
            placed.append(((u, v), height))
    return sorted(placed, key=lambda item: item[0][1])


def _occluders(image: np.ndarray, ids: np.ndarray, rng: np.random.Generator, boxes: list) -> None:
    """A post, a box or a panel in front of some of the people."""
    for _ in range(int(rng.integers(1, 3))):
        x0, y0, x1, y1 = boxes[int(rng.integers(len(boxes)))]
        w, h = x1 - x0, y1 - y0
        kind = rng.random()
        if kind < 0.4:  # a post
            width = rng.uniform(0.1, 0.35) * max(w, 10)
            cx = rng.uniform(x0, x1)
            rect = (cx - width / 2, -10, cx + width / 2, image.shape[0] + 10)
        elif kind < 0.8:  # a box or a table in front of the legs
            top = rng.uniform(y0 + 0.4 * h, y1)
            rect = (rng.uniform(x0 - w, x0 + 0.5 * w), top, rng.uniform(x0 + 0.5 * w, x1 + w), image.shape[0] + 10)
        else:  # a panel from the side
            edge = rng.uniform(x0, x1)
            rect = (-10, rng.uniform(y0 - h, y0 + 0.5 * h), edge, rng.uniform(y1 - 0.3 * h, y1 + h))
        a, b = (int(rect[0]), int(rect[1])), (int(rect[2]), int(rect[3]))
        cv2.rectangle(image, a, b, _colour(rng).tolist(), -1)
        cv2.rectangle(ids, a, b, _OCCLUDER_ID, -1)


_NOISE: list[np.ndarray] = []


def _noise_bank() -> np.ndarray:
    """A fixed 256x256x3 float32 image of unit Gaussian noise (per process, the same everywhere): a scene's noise
    is a crop of it, far cheaper than drawing 150,000 normal numbers per scene."""
    if not _NOISE:
        _NOISE.append(np.random.default_rng(_SCENE_SALT).standard_normal((256, 256, 3), dtype=np.float32))
    return _NOISE[0]


def _camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light, blur, sensor noise and JPEG artefacts."""
    size = image.shape[0]
    gain = rng.uniform(0.6, 1.3) * rng.uniform(0.9, 1.1, 3)
    x = cv2.multiply(image.astype(np.float32), (*gain.tolist(), 0.0))
    if rng.random() < 0.5:  # light falling off across the frame
        angle, strength = rng.uniform(0, 2 * math.pi), rng.uniform(0.1, 0.35)
        ramp = (np.cos(angle) * np.arange(size)[None, :] + np.sin(angle) * np.arange(size)[:, None]) / size
        light = (1 + strength * (ramp - ramp.mean())).astype(np.float32)
        x = (x.reshape(size, -1) * np.repeat(light, 3, axis=1)).reshape(size, size, 3)
    if rng.random() < 0.25:
        x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.4, 1.3)))
    std = rng.uniform(0, 7)
    if std > 0.5:
        noise = _noise_bank()
        y0, x0 = (int(v) for v in rng.integers(0, noise.shape[0] - size + 1, 2))
        x += noise[y0:y0 + size, x0:x0 + size] * np.float32(std)
    image = np.clip(x, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 90))])
        image = cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)
    return image


def render_scene(seed: int, topology: PoseTopology | None = None, size: int = IMAGE_SIZE) -> Scene:
    """The scene of ``seed`` (see the module docstring), labelled for ``topology`` (default
    ``config/human_pose.json``): keypoints the figures do not have are labelled v = 0."""
    topology = topology or load_topology()
    rng = scene_rng(seed)
    image = background(rng, size)
    ids = np.zeros((size, size), dtype=np.int32)
    count = int(rng.choice(len(PEOPLE_WEIGHTS), p=PEOPLE_WEIGHTS))
    figures = [place_figure(sample_pose(rng), sample_look(rng), foot, height, sample_body(rng))
               for foot, height in _place_people(rng, count, size)]
    paint_figures(image, ids, figures)
    if figures and rng.random() < OCCLUDER_PROBABILITY:
        _occluders(image, ids, rng, [f.box for f in figures])
    keypoints = np.zeros((len(figures), topology.num_keypoints, 3), dtype=np.float32)
    for p, figure in enumerate(figures):
        keypoints[p] = keypoint_visibility(figure, topology.keypoints, ids, p)
    boxes = np.array([f.box for f in figures], dtype=np.float32).reshape(-1, 4)
    return Scene(_camera(image, rng), keypoints, boxes, int(seed))


assert MAX_PEOPLE * PART_SLOTS < _OCCLUDER_ID and len(PEOPLE_WEIGHTS) == MAX_PEOPLE + 1


# ---------------------------------------------------------------------------------------------------------------------
# The pose dataset format


@dataclass(frozen=True)
class PoseSample:
    """One stored frame: its JPEG and its labels (``keypoints`` (P, C, 3), ``boxes`` (P, 4), as in ``Scene``)."""

    image_path: Path
    keypoints: np.ndarray
    boxes: np.ndarray
    seed: int | None


def is_pose_dataset(root: str | os.PathLike) -> bool:
    return (Path(root) / MANIFEST_NAME).is_file()


def _manifest(topology: PoseTopology) -> dict[str, Any]:
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "keypoints": list(topology.keypoints),
            "image_size": [IMAGE_SIZE, IMAGE_SIZE], "image_format": "jpg",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JetracerError(f"{root} is not a pose dataset (no {MANIFEST_NAME}); record one with "
                            "`jetracer-trt sim collect --task pose`") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise JetracerError(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise JetracerError(f"{path} is not a {FORMAT_NAME} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise JetracerError(f"{path} is pose dataset version {manifest.get('version')!r}; this jetracer_trt reads "
                            f"version {FORMAT_VERSION}")
    return manifest


class PoseDatasetWriter:
    """Appends scenes to a pose dataset (created when missing); crash-safe, several writers at once (see the module
    docstring)."""

    def __init__(self, root: str | os.PathLike, topology: PoseTopology | None = None):
        self.root = Path(root).absolute()
        self.topology = topology or load_topology()
        try:
            if self.root.exists() and not self.root.is_dir():
                raise JetracerError(f"{self.root} is a file, not a dataset folder; choose another --out")
            self.root.mkdir(parents=True, exist_ok=True)
            if is_pose_dataset(self.root):
                names = _read_manifest(self.root).get("keypoints")
                if names != list(self.topology.keypoints):
                    raise JetracerError(f"{self.root} holds keypoints {names}, not those of {self.topology.source}")
            elif any(self.root.iterdir()):
                raise JetracerError(f"{self.root} is a folder with other files and no {MANIFEST_NAME}; write the "
                                    "pose dataset into a new or empty folder")
            else:
                atomic_write_bytes(self.root / MANIFEST_NAME, (json.dumps(_manifest(self.topology)) + "\n").encode())
            (self.root / IMAGES_DIR).mkdir(exist_ok=True)
            self._fd = os.open(self.root / INDEX_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            fsync_dir(self.root)
        except OSError as exc:
            raise JetracerError(f"cannot write pose dataset {self.root}: {exc.strerror or exc}") from None
        self._prefix = secrets.token_hex(4)
        self._count = 0

    def append(self, scene: Scene) -> str:
        """Stores ``scene``; returns its image as named in the index."""
        if self._fd is None:
            raise JetracerError("this PoseDatasetWriter is closed")
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise JetracerError(f"could not encode a {scene.image.shape} frame as JPEG")
        rel = f"{IMAGES_DIR}/{self._prefix}_{self._count:07d}.jpg"
        self._count += 1
        people = [{"keypoints": [[round(float(x), 2), round(float(y), 2), int(v)] for x, y, v in kps],
                   "box": [round(float(c), 2) for c in box]} for kps, box in zip(scene.keypoints, scene.boxes,
                                                                                   strict=True)]
        line = (json.dumps({"image": rel, "seed": scene.seed, "people": people}) + "\n").encode()
        try:
            atomic_write_bytes(self.root / rel, jpeg.tobytes())
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                written = os.write(self._fd, line)
                os.fsync(self._fd)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError as exc:
            raise JetracerError(f"cannot write to pose dataset {self.root}: {exc.strerror or exc}") from None
        if written != len(line):
            raise JetracerError(f"a short write to {self.root / INDEX_NAME}: the disk is full?")
        return rel

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PoseDatasetWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _parse_people(record: dict, channels: int) -> tuple[np.ndarray, np.ndarray]:
    people = record["people"]
    keypoints = np.array([p["keypoints"] for p in people], dtype=np.float32).reshape(-1, channels, 3)
    boxes = np.array([p["box"] for p in people], dtype=np.float32).reshape(-1, 4)
    if len(keypoints) != len(boxes) or not (np.isfinite(keypoints).all() and np.isfinite(boxes).all()):
        raise ValueError("people, keypoints and boxes do not fit together")
    if not np.isin(keypoints[:, :, 2], (0, 1, 2)).all():
        raise ValueError("visibility other than 0, 1, 2")
    return keypoints, boxes


def read_pose_dataset(root: str | os.PathLike) -> tuple[list[PoseSample], int]:
    """(usable samples in index order, entries skipped): lines that are not valid JSON or whose labels do not fit
    the manifest's keypoints, and samples whose image is missing, are skipped with a warning."""
    root = Path(root)
    channels = len(_read_manifest(root)["keypoints"])
    try:
        lines = (root / INDEX_NAME).read_bytes().splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as exc:
        raise JetracerError(f"cannot read {root / INDEX_NAME}: {exc.strerror or exc}") from None
    samples, problems = [], []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            keypoints, boxes = _parse_people(record, channels)
            rel = os.path.normpath(str(record["image"]))
            if os.path.isabs(rel) or rel.startswith(".."):
                raise ValueError(f"image {record['image']!r} points outside the dataset")
            path = root / rel
            if not path.is_file():
                raise ValueError(f"image {record['image']!r} is missing")
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"line {number}: {exc}")
            continue
        seed = record.get("seed")
        samples.append(PoseSample(path, keypoints, boxes, seed if isinstance(seed, int) else None))
    for problem in problems[:20]:
        log.warning("%s %s skipped", root / INDEX_NAME, problem)
    return samples, len(problems)


def pad_people(keypoints: np.ndarray, max_people: int = MAX_PEOPLE) -> np.ndarray:
    """(max_people, C, 3) float32: the first ``max_people`` people, then rows of v = 0 (no one)."""
    out = np.zeros((max_people, keypoints.shape[1], 3), dtype=np.float32)
    out[:min(len(keypoints), max_people)] = keypoints[:max_people]
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Collection


def check_training_seeds(seeds: Sequence[int]) -> None:
    held_out = [s for s in seeds if s >= EVALUATION_SEEDS]
    if held_out:
        raise JetracerError(f"scene seeds {EVALUATION_SEEDS} and above are held out for evaluation (got "
                            f"{held_out[0]}); collect pose data on seeds below {EVALUATION_SEEDS}")


_writer: PoseDatasetWriter | None = None


def _init_worker(root: str) -> None:
    global _writer
    cv2.setNumThreads(1)
    _writer = PoseDatasetWriter(root)


def _record(seeds: Sequence[int]) -> int:
    for seed in seeds:
        _writer.append(render_scene(seed))
    return len(seeds)


def collect_pose(out: str | os.PathLike, seeds: Sequence[int], workers: int = 1, allow_evaluation_seeds: bool = False,
                 on_progress=None) -> int:
    """Renders the scenes of ``seeds`` into the pose dataset ``out`` (appending); returns how many were written."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise JetracerError("no scene seeds to record")
    if not allow_evaluation_seeds:
        check_training_seeds(seeds)
    PoseDatasetWriter(out).close()  # creates (or checks) the dataset before any worker starts
    chunks = [seeds[i:i + 64] for i in range(0, len(seeds), 64)]
    written = 0
    with contextlib.ExitStack() as stack:
        if workers <= 1:  # here, with this process's writer
            _init_worker(str(out))
            stack.callback(_writer.close)
            recorded = map(_record, chunks)
        else:  # forkserver, not fork: forking a process that runs DDS or CUDA threads can deadlock the child
            pool = stack.enter_context(mp.get_context("forkserver").Pool(workers, initializer=_init_worker,
                                                                         initargs=(str(out),)))
            recorded = pool.imap_unordered(_record, chunks)
        for count in recorded:
            written += count
            if on_progress:
                on_progress(count)
    return written


def next_seed(root: str | os.PathLike) -> int:
    """The scene seed after the largest already in the pose dataset ``root`` (0 when there is none): where
    appending more scenes starts."""
    if not is_pose_dataset(root):
        return 0
    seeds = [s.seed for s in read_pose_dataset(root)[0] if s.seed is not None and s.seed < EVALUATION_SEEDS]
    return max(seeds, default=-1) + 1
