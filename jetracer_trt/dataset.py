"""Dataset format v1: JPEG images plus an append-only JSON-lines index that survives a crash at any moment.

Layout of a dataset folder ``root``::

    root/dataset.json   manifest {"format": "jetracer_trt.dataset", "version": 1, "created": ..., "image_format": "jpg"}
    root/images/        one JPEG per sample, named <8 hex chars per writer>_<counter:06d>.jpg
    root/index.jsonl    one JSON object per line: {"image": "images/<name>.jpg", "x": ..., "y": ..., ...meta},
                        or a tombstone {"delete": "images/<name>.jpg"} that takes an earlier sample back out

Why it survives ``kill -9`` or a power cut: an image is written to a temporary name, fsynced, renamed into place and
its folder fsynced *before* its index line is appended, and each index line goes out in a single ``write()`` on an
``O_APPEND`` file descriptor. So a crash leaves at worst an image without an index line (invisible to readers) or a
torn last line (counted as corrupt and skipped). Writers hold an exclusive ``flock`` on the index for the moment of
each write, which lets several processes append to one dataset at once and lets a writer whose write or fsync
failed (a full disk) take its own bytes back out: a failed append leaves the index as it was. Readers never crash on
bad entries: they skip and count them. Removing a sample (``remove``, ``undo_last``) appends a tombstone line the
same way, so a removal is as crash-safe as an append and the index stays append-only. See ``docs/dataset_format.md``.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import math
import os
import secrets
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import JetracerError
from .fileio import atomic_write_bytes, fsync_dir
from .preprocess import check_frame

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FORMAT_NAME = "jetracer_trt.dataset"
MANIFEST_NAME = "dataset.json"
INDEX_NAME = "index.jsonl"
IMAGES_DIR = "images"
IMAGE_EXT = "jpg"
# An O_APPEND write() of a regular file is not interleaved with other writers' writes on Linux local file systems;
# keeping lines small also keeps them inside one page, which is what makes a torn line unlikely even on power loss.
MAX_LINE_BYTES = 4096
# Reading a badly damaged index must not flood the log: warn about the first lines, then only the summary.
MAX_LINE_WARNINGS = 20
_RESERVED_KEYS = ("image", "x", "y")
TOMBSTONE_KEY = "delete"  # {"delete": "images/<name>.jpg"}: the sample of that image is removed
# undo_last reaches back this many of a writer's own samples (the web page's "undo last"; no one clicks it 1000 times)
UNDO_DEPTH = 1000
_MANIFEST_TMP_PREFIX = "." + MANIFEST_NAME + "."


@dataclass(frozen=True)
class Sample:
    """One labelled frame of a dataset; the image itself is read lazily with ``load_image(sample.image_path)``."""

    image_path: Path  # absolute path to the JPEG
    x: float  # road target, image coordinates in [-1, 1], x to the right
    y: float  # y down
    meta: dict  # every other key of the index line (track_seed, frame, randomized, steering, speed, ...)


# ---------------------------------------------------------------------------------------------------------------------
# Manifest and folder inspection, shared by the writer and the readers


def _manifest(created: str | None = None) -> dict[str, Any]:
    created = created or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "created": created, "image_format": IMAGE_EXT}


def _write_manifest(root: Path) -> None:
    """Writes the manifest atomically (temp file + fsync + rename + folder fsync): never half of it, never lost."""
    atomic_write_bytes(root / MANIFEST_NAME, (json.dumps(_manifest(), indent=2) + "\n").encode(), fsync=True)


def _check_manifest(root: Path) -> None:
    """Raises JetracerError unless ``root/dataset.json`` describes a dataset of format version 1."""
    path = root / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise JetracerError(f"cannot read the dataset manifest {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise JetracerError(f"{path} is not a jetracer_trt dataset manifest (expected \"format\": \"{FORMAT_NAME}\")")
    version = manifest.get("version")
    if version != FORMAT_VERSION:
        raise JetracerError(
            f"dataset {root} has format version {version!r}, but this jetracer_trt reads only version "
            f"{FORMAT_VERSION}; use the jetracer_trt release that wrote it, or re-record the data"
        )


def _dataset_state(root: Path) -> str:
    """'dataset' (manifest checked), 'index_only' (manifest lost) or 'none'; raises if ``root`` is not a folder."""
    if not root.exists():
        raise JetracerError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise JetracerError(f"{root} is a file, not a dataset folder")
    if (root / MANIFEST_NAME).exists():
        _check_manifest(root)
        return "dataset"
    if (root / INDEX_NAME).exists():
        return "index_only"
    return "none"


def _is_empty_for_creation(root: Path) -> bool:
    """True if ``root`` holds nothing but leftovers of an interrupted manifest write, so we may create a dataset."""
    return all(name.startswith(_MANIFEST_TMP_PREFIX) for name in os.listdir(root))


# ---------------------------------------------------------------------------------------------------------------------
# Writing


def _check_label(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise JetracerError(f"label {name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise JetracerError(f"label {name}={value} is outside [-1, 1] (image coordinates of the road target)")
    return value


def _json_default(obj: Any) -> Any:
    """Lets numpy scalars through as plain numbers: simulators hand over np.float32 steering values all the time."""
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _index_line(image: str, x: float, y: float, meta: dict[str, Any]) -> bytes:
    clash = [key for key in (*_RESERVED_KEYS, TOMBSTONE_KEY) if key in meta]
    if clash:
        raise JetracerError(f"meta keys {clash} are reserved for the index itself; rename them")
    return _json_line({"image": image, "x": x, "y": y, **meta})


def _json_line(record: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(record, allow_nan=False, ensure_ascii=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise JetracerError(f"sample meta must be JSON serialisable with finite numbers: {exc}") from None
    line = (text + "\n").encode("ascii")
    if len(line) > MAX_LINE_BYTES:
        raise JetracerError(f"index line of {len(line)} bytes is over {MAX_LINE_BYTES}; store less meta per sample")
    return line


def _image_in_dataset(image: Any) -> str | None:
    """The normalised relative path of an index entry's image, or None when it is not a path inside the dataset."""
    if not isinstance(image, str) or not image:
        return None
    rel = os.path.normpath(image)
    if os.path.isabs(rel) or rel == ".." or rel.startswith(".." + os.sep):
        return None
    return rel


def _write_file_durably(path: Path, data: bytes) -> None:
    """Writes ``data`` under a temporary name, fsyncs it, renames it and fsyncs the folder: ``path`` is complete or
    absent, never torn, and its name survives a power cut."""
    atomic_write_bytes(path, data, fsync=True)


# every byte but the newline becomes a space: a line overwritten with it keeps its length and reads back as blank
_BLANK = bytes(byte if byte == ord("\n") else ord(" ") for byte in range(256))


# flock errors that mean "this file system has no locks" (NFS without lockd, some FUSE mounts), not a failure
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class DatasetWriteError(JetracerError):
    """An append failed on the disk (full, quota, I/O error); ``errno`` says which. The dataset holds every earlier
    sample and the writer stays usable: the same append may be tried again once the cause is gone."""

    def __init__(self, message: str, errno_: int | None):
        super().__init__(message)
        self.errno = errno_


class DatasetWriter:
    """Appends samples to a format-v1 dataset, creating it if needed; safe against crashes and concurrent writers.

    Every ``append`` fsyncs its image, the images folder and its index line, so what was appended before a crash
    or power cut is kept. An append that fails on the disk (``DatasetWriteError``) leaves the index as it was and
    removes its image; its image name is never used again, so no two index lines ever share an image.
    """

    def __init__(self, root: str | os.PathLike, jpeg_quality: int = 90):
        if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100:
            raise JetracerError(f"jpeg_quality must be an integer in 1..100, got {jpeg_quality!r}")
        self.root = Path(root).absolute()
        self.jpeg_quality = jpeg_quality
        self._count = 0
        self._names_used = 0  # image names handed out, failed appends included: none is ever handed out twice
        self._undoable: deque[str] = deque(maxlen=UNDO_DEPTH)  # this writer's latest samples, newest last
        self._fd: int | None = None
        self._locking = True
        try:
            self._prepare_root()
            (self.root / IMAGES_DIR).mkdir(exist_ok=True)
            # O_RDWR: pread checks how the index ends; O_APPEND keeps every line at the end even without locks
            self._fd = os.open(self.root / INDEX_NAME, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            fsync_dir(self.root)  # the names images/ and index.jsonl
        except OSError as exc:
            self.close()
            raise JetracerError(f"cannot write dataset {self.root}: {exc.strerror or exc}") from None
        self._prefix = self._unused_prefix()
        log.debug("writing to dataset %s with image prefix %s", self.root, self._prefix)

    def _prepare_root(self) -> None:
        """Creates the folder and manifest, or checks an existing dataset; refuses to write into unrelated folders."""
        if self.root.exists() and not self.root.is_dir():
            raise JetracerError(f"{self.root} is a file, not a dataset folder; choose another output path")
        if not self.root.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.root.parent)
        state = _dataset_state(self.root)
        if state == "index_only":
            log.warning("dataset %s has an index but lost its %s; writing a new one", self.root, MANIFEST_NAME)
            _write_manifest(self.root)
        elif state == "none":
            if not _is_empty_for_creation(self.root):
                raise JetracerError(
                    f"{self.root} is a folder with other files and no {MANIFEST_NAME}; "
                    "write the dataset into a new or empty folder"
                )
            _write_manifest(self.root)

    def _unused_prefix(self) -> str:
        """A random per-writer name prefix, so concurrent writers never pick the same image name."""
        while True:
            prefix = secrets.token_hex(4)
            if not (self.root / IMAGES_DIR / f"{prefix}_{0:06d}.{IMAGE_EXT}").exists():
                return prefix

    @property
    def count(self) -> int:
        """Samples appended by this writer and not removed again (not the dataset's total)."""
        return self._count

    def append(self, frame_rgb: np.ndarray, x: float, y: float, **meta: Any) -> str:
        """Stores one RGB uint8 (H, W, 3) frame with its road target (x, y) in [-1, 1] and JSON-serialisable meta;
        returns the sample's image as named in the index ("images/<name>.jpg").

        Raises JetracerError for bad input (nothing written) and DatasetWriteError when the disk fails: then the
        index is as it was before the call and the sample's image is removed.
        """
        if self._fd is None:
            raise JetracerError("this DatasetWriter is closed")
        check_frame(frame_rgb)
        x, y = _check_label("x", x), _check_label("y", y)
        name = f"{self._prefix}_{self._names_used:06d}.{IMAGE_EXT}"
        rel = f"{IMAGES_DIR}/{name}"
        line = _index_line(rel, x, y, meta)  # validated before anything touches the disk
        bgr = cv2.cvtColor(np.ascontiguousarray(frame_rgb), cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise JetracerError(f"could not encode a {frame_rgb.shape} frame as JPEG")
        self._names_used += 1  # from here on the name is spent, whatever happens
        image = self.root / IMAGES_DIR / name
        try:
            _write_file_durably(image, jpeg.tobytes())
            self._append_line(line)
        except OSError as exc:
            line_kept = getattr(exc, "index_line_kept", False)
            if not line_kept:
                with contextlib.suppress(OSError):
                    image.unlink()  # an orphan image is invisible, but a full disk needs the space
            outcome = ("the sample may still be in the index" if line_kept
                       else "this sample was not stored; the dataset holds every earlier one")
            raise DatasetWriteError(f"cannot write to dataset {self.root}: {exc.strerror or exc}; {outcome}",
                                    exc.errno) from None
        self._count += 1
        self._undoable.append(rel)
        return rel

    def remove(self, image: str) -> None:
        """Takes the sample of ``image`` ("images/<name>.jpg", as ``append`` returned it) out of the dataset.

        Appends the tombstone line {"delete": image} with the same durability as a sample (one write, fsync), then
        deletes the image file, so a crash at any moment leaves the sample either fully there or gone for every
        reader. A name that is in no sample is harmless: readers ignore its tombstone. Raises JetracerError for a
        path outside the dataset and DatasetWriteError when the disk fails (then the sample is still there).
        """
        if self._fd is None:
            raise JetracerError("this DatasetWriter is closed")
        rel = _image_in_dataset(image)
        if rel is None:
            raise JetracerError(f"image {image!r} is not a path inside the dataset")
        try:
            self._append_line(_json_line({TOMBSTONE_KEY: rel}))
        except OSError as exc:
            outcome = ("the sample may be removed already" if getattr(exc, "index_line_kept", False)
                       else "the sample is still in the dataset")
            raise DatasetWriteError(f"cannot write to dataset {self.root}: {exc.strerror or exc}; {outcome}",
                                    exc.errno) from None
        with contextlib.suppress(OSError):  # already invisible to readers; deleting it frees the space
            (self.root / rel).unlink()
        if rel in self._undoable:
            self._undoable.remove(rel)
            self._count -= 1

    def undo_last(self) -> str | None:
        """Removes the newest sample this writer appended and has not removed yet (up to ``UNDO_DEPTH`` back);
        returns its image, or None when there is nothing left to undo."""
        if not self._undoable:
            return None
        image = self._undoable[-1]
        self.remove(image)
        return image

    def _append_line(self, line: bytes) -> None:
        """Appends one index line and fsyncs it. On an OSError the line is no longer in the index, unless even taking
        it back failed: the error then carries ``index_line_kept = True``."""
        start, end = self._write_line(line)  # a failed write() is cut back inside
        try:
            os.fsync(self._fd)
        except OSError as exc:
            exc.index_line_kept = not self._take_back(start, end)
            raise

    @contextlib.contextmanager
    def _index_lock(self):
        """Holds the index's exclusive flock: no other writer writes, or takes bytes back, meanwhile."""
        locked = False
        if self._locking:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                locked = True
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    raise
                self._locking = False
                log.warning("%s: this file system has no file locks (%s); appending without them, and a failed "
                            "append may leave a corrupt line", self.root / INDEX_NAME, exc.strerror)
        try:
            yield
        finally:
            if locked:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _write_line(self, line: bytes) -> tuple[int, int]:
        """Appends ``line`` in one write() and returns where its bytes lie; on failure the index is cut back to what
        it was, and the error raised."""
        with self._index_lock():
            start = os.fstat(self._fd).st_size
            if start and os.pread(self._fd, 1, start - 1) != b"\n":
                log.warning("%s ends with a torn line (an interrupted writer); it will be skipped as corrupt",
                            self.root / INDEX_NAME)
                line = b"\n" + line  # ends the torn line, so this one is not glued onto it
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"short write to the index ({written} of {len(line)} bytes): "
                                                "the disk is probably full")
            except OSError:
                self._cut_back(start)
                raise
        # an O_APPEND write leaves the file position at the end of its own bytes, with or without locks
        end = os.lseek(self._fd, 0, os.SEEK_CUR)
        return end - len(line), end

    def _cut_back(self, start: int) -> None:
        """Removes whatever a failed write left after ``start`` (the index lock is held, so it is all ours).

        Without file locks ``start`` may not be where the write went: the fragment stays, and the next append
        ends it with a newline (one line skipped as corrupt)."""
        if not self._locking:
            return
        try:
            if os.fstat(self._fd).st_size > start:
                os.ftruncate(self._fd, start)
        except OSError as exc:
            log.error("%s: cannot remove a partly written line (%s); it will be skipped as corrupt",
                      self.root / INDEX_NAME, exc.strerror or exc)

    def _take_back(self, start: int, end: int) -> bool:
        """Removes our line at [start, end) after its fsync failed; True when it is gone from the index.

        When no one appended since, the index is cut back to ``start``; otherwise the line is overwritten in place
        with spaces (read back as a blank line), leaving the lines of other writers alone.
        """
        path = self.root / INDEX_NAME
        try:
            with self._index_lock():
                size = os.fstat(self._fd).st_size
                if size == end and self._locking:
                    os.ftruncate(self._fd, start)
                elif size >= end:
                    blank_fd = os.open(path, os.O_WRONLY)  # pwrite on an O_APPEND descriptor would append
                    try:
                        data = os.pread(self._fd, end - start, start)
                        os.pwrite(blank_fd, data.translate(_BLANK), start)
                    finally:
                        os.close(blank_fd)
                else:
                    return False  # someone truncated the index under us: our line is not where we put it
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
        except OSError as exc:
            log.error("%s: cannot remove the line of a failed append (%s)", path, exc.strerror or exc)
            return False
        return True

    def close(self) -> None:
        """Closes the index (and fsyncs the folders once more)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)
        with contextlib.suppress(OSError):  # every append already synced what it wrote; this is belt and braces
            fsync_dir(self.root / IMAGES_DIR)
            fsync_dir(self.root)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------------------------
# Reading


def _label(record: dict, key: str) -> float | None:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and -1.0 <= value <= 1.0 else None


@dataclass(slots=True)  # not frozen: one per index line, and frozen dataclasses are slow to make
class _Entry:
    """One parsed index line: a sample (``image``: its normalised relative path), a tombstone (``deletes`` names the
    image it removes) or corrupt (``why``)."""

    number: int
    sample: Sample | None = None
    image: str = ""
    deletes: str | None = None
    why: str = ""


def _parse_line(root: Path, number: int, raw: bytes) -> _Entry:
    """One index line -> a sample (its image not looked at yet), a tombstone, or why it is corrupt."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _Entry(number, why="not valid JSON (truncated or garbage)")
    if not isinstance(record, dict):
        return _Entry(number, why="not a JSON object")
    if TOMBSTONE_KEY in record:
        deletes = _image_in_dataset(record[TOMBSTONE_KEY])
        if deletes is None:
            return _Entry(number, why=f"tombstone {record[TOMBSTONE_KEY]!r} names no path inside the dataset")
        return _Entry(number, deletes=deletes)
    image = record.get("image")
    if not isinstance(image, str) or not image:
        return _Entry(number, why="no \"image\" path")
    rel = _image_in_dataset(image)
    if rel is None:
        return _Entry(number, why=f"image path {image!r} points outside the dataset")
    x, y = _label(record, "x"), _label(record, "y")
    if x is None or y is None:
        return _Entry(number, why=f"labels x={record.get('x')!r}, y={record.get('y')!r} missing, not finite or "
                                  "outside [-1, 1]")
    meta = {key: value for key, value in record.items() if key not in _RESERVED_KEYS}
    return _Entry(number, sample=Sample(image_path=root / rel, x=x, y=y, meta=meta), image=rel)


def _image_problem(entry: _Entry) -> str:
    """Why a sample's image cannot be used (missing or empty), or "" when it can."""
    try:
        if entry.sample.image_path.stat().st_size == 0:
            return f"image {entry.image} is empty"
    except OSError:
        return f"image {entry.image} is missing"
    return ""


def _read_index(root: Path) -> bytes:
    path = root / INDEX_NAME
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise JetracerError(f"cannot read the dataset index {path}: {exc.strerror or exc}") from None


def read_dataset(root: str | os.PathLike) -> tuple[list[Sample], int]:
    """(usable samples in index order, number of corrupt entries); bad entries are skipped with a warning.

    Raises JetracerError only when the dataset cannot be read at all. Images are checked for existence and non-zero
    size but not decoded (that would take minutes on 100k samples); ``check_dataset(root, decode=True)`` does that.
    """
    root = Path(root).absolute()
    state = _dataset_state(root)
    if state == "none":
        raise JetracerError(f"{root} is not a jetracer_trt dataset (no {MANIFEST_NAME} or {INDEX_NAME})")
    if state == "index_only":
        log.warning("dataset %s has no %s (lost?); reading %s as format version 1", root, MANIFEST_NAME, INDEX_NAME)
    entries = [_parse_line(root, number, raw)
               for number, raw in enumerate(_read_index(root).split(b"\n"), start=1)
               if raw.strip()]  # blank lines: the trailing newline's empty tail, or a writer ending a torn line
    # a tombstone removes the samples of its image written before it; a name that is in no sample removes nothing
    deleted = {entry.deletes: entry.number for entry in entries if entry.deletes}
    samples: list[Sample] = []
    problems: list[tuple[int, str]] = []
    for entry in entries:
        if entry.sample is not None:
            if deleted.get(entry.image, 0) > entry.number:
                continue  # removed, its image probably deleted too: not corrupt
            why = _image_problem(entry)
            if not why:
                samples.append(entry.sample)
                continue
        elif entry.deletes:
            continue
        else:
            why = entry.why
        problems.append((entry.number, why))
    for number, why in problems[:MAX_LINE_WARNINGS]:
        log.warning("%s line %d skipped: %s", root / INDEX_NAME, number, why)
    corrupt = len(problems)
    if corrupt:
        more = f" (only the first {MAX_LINE_WARNINGS} shown)" if corrupt > MAX_LINE_WARNINGS else ""
        log.warning("dataset %s: %d corrupt entries skipped%s, %d samples usable", root, corrupt, more, len(samples))
    return samples, corrupt


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads a dataset image as an RGB uint8 (H, W, 3) array; raises JetracerError if missing or undecodable."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise JetracerError(f"image file {path} does not exist") from None
    except OSError as exc:
        raise JetracerError(f"cannot read image file {path}: {exc.strerror or exc}") from None
    bgr = None
    if data.size:
        try:
            bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        except cv2.error:
            bgr = None
    if bgr is None:
        raise JetracerError(f"image file {path} cannot be decoded (empty, truncated or not a JPEG)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_dataset(root: str | os.PathLike, decode: bool = False) -> dict[str, int]:
    """{"samples": usable, "corrupt": skipped}; with ``decode`` every image is also decoded (slow, but thorough)."""
    samples, corrupt = read_dataset(root)
    good = len(samples)
    if decode:
        for sample in samples:
            try:
                load_image(sample.image_path)
            except JetracerError as exc:
                log.warning("%s", exc)
                good -= 1
                corrupt += 1
    return {"samples": good, "corrupt": corrupt}
