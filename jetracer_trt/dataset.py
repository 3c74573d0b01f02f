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
same way, so a removal is as crash-safe as an append and the index stays append-only. ``compact_dataset`` is the
one writer that rewrites the index (without removed samples, tombstones and corrupt entries): it writes a new index
and renames it over the old one while holding the lock, and writers that were waiting for the lock follow the
rename. Every reader of samples goes through ``scan_dataset``. See ``docs/dataset_format.md``.
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
import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import JetracerError
from .fileio import atomic_write_bytes, fsync_dir, fsync_file
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
        self._check_open()
        check_frame(frame_rgb)
        x, y = _check_label("x", x), _check_label("y", y)
        bgr = cv2.cvtColor(np.ascontiguousarray(frame_rgb), cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise JetracerError(f"could not encode a {frame_rgb.shape} frame as JPEG")
        return self._store(jpeg.tobytes(), x, y, meta)

    def append_jpeg(self, jpeg: bytes, x: float, y: float, **meta: Any) -> str:
        """``append`` for a frame that already is a JPEG file's bytes (an imported dataset's image): stored as it
        is, without a second lossy encoding. Raises JetracerError unless the bytes decode as a colour JPEG."""
        self._check_open()
        x, y = _check_label("x", x), _check_label("y", y)
        decode_jpeg(jpeg)
        return self._store(bytes(jpeg), x, y, meta)

    def _check_open(self) -> None:
        if self._fd is None:
            raise JetracerError("this DatasetWriter is closed")

    def _store(self, jpeg: bytes, x: float, y: float, meta: dict[str, Any]) -> str:
        """Writes the image durably, then its index line; the append's crash and disk-error guarantees live here."""
        name = f"{self._prefix}_{self._names_used:06d}.{IMAGE_EXT}"
        rel = f"{IMAGES_DIR}/{name}"
        line = _index_line(rel, x, y, meta)  # validated before anything touches the disk
        self._names_used += 1  # from here on the name is spent, whatever happens
        image = self.root / IMAGES_DIR / name
        try:
            _write_file_durably(image, jpeg)
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
        self._check_open()
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
    def _index_lock(self, follow_replacement: bool = True):
        """Holds the index's exclusive flock: no other writer writes, or takes bytes back, meanwhile.

        ``compact_dataset`` replaces the index by a rewritten one while holding this lock on the old one; a writer
        that then gets the lock on the old file reopens ``index.jsonl`` and locks the new one, so its line lands in
        the index readers see. ``follow_replacement=False`` keeps the old file (to take back a line written there).
        """
        while True:
            locked = self._lock_index_fd()
            try:
                replaced = locked and follow_replacement and self._index_replaced()
            except OSError:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                raise
            if not replaced:
                break
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._reopen_index()
        try:
            yield
        finally:
            if locked:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _lock_index_fd(self) -> bool:
        """Takes the flock on the index; False on a file system without locks (then appends go without them)."""
        if not self._locking:
            return False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            return True
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise
            self._locking = False
            log.warning("%s: this file system has no file locks (%s); appending without them, and a failed "
                        "append may leave a corrupt line", self.root / INDEX_NAME, exc.strerror)
            return False

    def _index_replaced(self) -> bool:
        """True when ``index.jsonl`` is no longer the file this writer has open (a compaction replaced it)."""
        try:
            current = os.stat(self.root / INDEX_NAME)
        except FileNotFoundError:
            return False  # someone deleted the dataset's index: keep writing where we were, as before
        ours = os.fstat(self._fd)
        return (ours.st_dev, ours.st_ino) != (current.st_dev, current.st_ino)

    def _reopen_index(self) -> None:
        fd = os.open(self.root / INDEX_NAME, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        os.close(self._fd)
        self._fd = fd

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
            with self._index_lock(follow_replacement=False):
                if self._index_replaced():
                    return False  # a compaction copied our line into the new index: it is there to stay
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
    image it removes) or corrupt (``why``; ``image`` is still set when the line names one)."""

    number: int
    raw: bytes
    sample: Sample | None = None
    image: str = ""
    deletes: str | None = None
    why: str = ""


def _parse_line(root: Path, number: int, raw: bytes) -> _Entry:
    """One index line -> a sample (its image not looked at yet), a tombstone, or why it is corrupt."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _Entry(number, raw, why="not valid JSON (truncated or garbage)")
    if not isinstance(record, dict):
        return _Entry(number, raw, why="not a JSON object")
    if TOMBSTONE_KEY in record:
        deletes = _image_in_dataset(record[TOMBSTONE_KEY])
        if deletes is None:
            return _Entry(number, raw, why=f"tombstone {record[TOMBSTONE_KEY]!r} names no path inside the dataset")
        return _Entry(number, raw, deletes=deletes)
    image = record.get("image")
    if not isinstance(image, str) or not image:
        return _Entry(number, raw, why="no \"image\" path")
    rel = _image_in_dataset(image)
    if rel is None:
        return _Entry(number, raw, why=f"image path {image!r} points outside the dataset")
    x, y = _label(record, "x"), _label(record, "y")
    if x is None or y is None:
        return _Entry(number, raw, image=rel, why=f"labels x={record.get('x')!r}, y={record.get('y')!r} missing, "
                                                  "not finite or outside [-1, 1]")
    meta = {key: value for key, value in record.items() if key not in _RESERVED_KEYS}
    return _Entry(number, raw, sample=Sample(image_path=root / rel, x=x, y=y, meta=meta), image=rel)


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


def _readable_root(root: str | os.PathLike) -> Path:
    """The dataset folder, absolute; raises JetracerError when it holds no dataset to read."""
    root = Path(root).absolute()
    state = _dataset_state(root)
    if state == "none":
        raise JetracerError(f"{root} is not a jetracer_trt dataset (no {MANIFEST_NAME} or {INDEX_NAME})")
    if state == "index_only":
        log.warning("dataset %s has no %s (lost?); reading %s as format version 1", root, MANIFEST_NAME, INDEX_NAME)
    return root


@dataclass
class _Sorted:
    """Every entry of an index by what readers make of it."""

    live: list[_Entry]
    removed: list[_Entry]  # samples taken back out by a later tombstone
    corrupt: list[_Entry]  # with ``why``
    tombstones: int


def _sort_entries(root: Path, data: bytes) -> _Sorted:
    entries = [_parse_line(root, number, raw)
               for number, raw in enumerate(data.split(b"\n"), start=1)
               if raw.strip()]  # blank lines: the trailing newline's empty tail, or a writer ending a torn line
    # a tombstone removes the samples of its image written before it; a name that is in no sample removes nothing
    deleted = {entry.deletes: entry.number for entry in entries if entry.deletes}
    result = _Sorted([], [], [], 0)
    for entry in entries:
        if entry.sample is not None:
            if deleted.get(entry.image, 0) > entry.number:
                result.removed.append(entry)  # its image probably deleted too: not corrupt
                continue
            entry.why = _image_problem(entry)
            (result.corrupt if entry.why else result.live).append(entry)
        elif entry.deletes:
            result.tombstones += 1
        else:
            result.corrupt.append(entry)
    return result


@dataclass(frozen=True)
class DatasetScan:
    """What one reading of a dataset's index found; every reader of samples goes through ``scan_dataset``."""

    samples: list[Sample]  # usable, in index order
    removed: list[Sample]  # taken back out by tombstones (``remove``, ``undo_last``); their images are usually gone
    corrupt: int  # entries skipped: bad lines, bad labels, missing or empty images
    problems: list[tuple[int, str]]  # (index line number, why) of each corrupt entry


def scan_dataset(root: str | os.PathLike) -> DatasetScan:
    """Reads a dataset's index once: its usable samples, the removed ones and the corrupt entries (with a warning
    for the first ``MAX_LINE_WARNINGS``). Raises JetracerError only when the dataset cannot be read at all."""
    root = _readable_root(root)
    entries = _sort_entries(root, _read_index(root))
    samples = [entry.sample for entry in entries.live]
    problems = [(entry.number, entry.why) for entry in entries.corrupt]
    for number, why in problems[:MAX_LINE_WARNINGS]:
        log.warning("%s line %d skipped: %s", root / INDEX_NAME, number, why)
    if problems:
        more = f" (only the first {MAX_LINE_WARNINGS} shown)" if len(problems) > MAX_LINE_WARNINGS else ""
        log.warning("dataset %s: %d corrupt entries skipped%s, %d samples usable", root, len(problems), more,
                    len(samples))
    return DatasetScan(samples, [entry.sample for entry in entries.removed], len(problems), problems)


def read_dataset(root: str | os.PathLike) -> tuple[list[Sample], int]:
    """(usable samples in index order, number of corrupt entries); bad entries are skipped with a warning.

    Raises JetracerError only when the dataset cannot be read at all. Images are checked for existence and non-zero
    size but not decoded (that would take minutes on 100k samples); ``check_dataset(root, decode=True)`` does that.
    """
    scan = scan_dataset(root)
    return scan.samples, scan.corrupt


JPEG_MAGIC = b"\xff\xd8\xff"


def decode_image(data: bytes, what: str = "image") -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) -> an RGB uint8 (H, W, 3) array; raises JetracerError naming ``what``
    when they do not decode."""
    bgr = None
    if data:
        try:
            bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        except cv2.error:
            bgr = None
    if bgr is None:
        raise JetracerError(f"{what} cannot be decoded (empty, truncated or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_jpeg(data: bytes, what: str = "image") -> np.ndarray:
    """``decode_image`` for bytes that must be a JPEG (what a dataset stores)."""
    if not bytes(data[:3]) == JPEG_MAGIC:
        raise JetracerError(f"{what} is not a JPEG")
    return decode_image(data, what)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Reads a dataset image as an RGB uint8 (H, W, 3) array; raises JetracerError if missing or undecodable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JetracerError(f"image file {path} does not exist") from None
    except OSError as exc:
        raise JetracerError(f"cannot read image file {path}: {exc.strerror or exc}") from None
    return decode_image(data, f"image file {path}")


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


# ---------------------------------------------------------------------------------------------------------------------
# Compaction: the index rewritten without removed samples, tombstones and corrupt entries

# An image that no index line names is the leftover of an append that crashed between its image and its line; but
# for a moment it is also what every live append looks like, so compaction deletes only those older than this.
ORPHAN_MIN_AGE_S = 600.0
_INDEX_TMP_PREFIX = f".{INDEX_NAME}.tmp-"  # fileio.atomic_path's temporary name for the index


def compact_dataset(root: str | os.PathLike, out: str | os.PathLike | None = None,
                    on_progress=None) -> dict[str, int]:
    """Rewrites the dataset at ``root`` with only its usable samples, in index order and with their lines and images
    unchanged: removed samples, tombstones and corrupt entries are dropped, and so are their images.

    In place (``out`` None) the new index replaces the old one atomically while the index lock is held, so appends
    of running writers wait for it and then land in the new index (``DatasetWriter`` follows the replacement); a
    crash leaves the old index or the new one, never a mix. With ``out`` the compacted dataset is built beside
    ``out`` and renamed into place at the end, ``root`` is left as it was, and images are hard-linked when the file
    system allows it. Returns {"samples", "removed", "corrupt", "tombstones", "images_deleted"} (images_deleted: in
    place only, orphans of crashed appends included). ``on_progress(done, total)`` is called while copying to ``out``.
    """
    root = _readable_root(root)
    if out is None:
        return _compact_in_place(root)
    return _compact_into(root, Path(out).absolute(), on_progress)


def _compaction_counts(entries: _Sorted) -> dict[str, int]:
    return {"samples": len(entries.live), "removed": len(entries.removed), "corrupt": len(entries.corrupt),
            "tombstones": entries.tombstones}


@contextlib.contextmanager
def _locked_index(root: Path):
    """Yields a descriptor of ``root/index.jsonl`` holding its exclusive flock, the file the path names right now."""
    path = root / INDEX_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JetracerError(f"cannot open the dataset index {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_LOCKS:
                raise JetracerError(f"{path} is on a file system without file locks, so compacting in place could "
                                    "lose the samples of a running writer; stop every writer and compact with --out "
                                    "into a new folder") from None
            raise JetracerError(f"cannot lock the dataset index {path}: {exc.strerror or exc}") from None
        try:
            ours, current = os.fstat(fd), os.stat(path)
        except OSError:
            os.close(fd)
            raise
        if (ours.st_dev, ours.st_ino) == (current.st_dev, current.st_ino):
            break
        os.close(fd)  # another compaction replaced it while we waited: lock the new one
    try:
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


def _read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _compact_in_place(root: Path) -> dict[str, int]:
    try:
        with _locked_index(root) as fd:
            data = _read_fd(fd)
            entries = _sort_entries(root, data)
            compacted = b"".join(entry.raw + b"\n" for entry in entries.live)
            for name in os.listdir(root):  # under the lock no compaction is writing: these are from crashed ones
                if name.startswith(_INDEX_TMP_PREFIX):
                    with contextlib.suppress(OSError):
                        (root / name).unlink()
            if compacted != data:
                atomic_write_bytes(root / INDEX_NAME, compacted, fsync=True)
            if not (root / MANIFEST_NAME).exists():
                _write_manifest(root)
    except OSError as exc:
        raise JetracerError(f"cannot compact dataset {root}: {exc.strerror or exc}; its index is as it was") from None
    counts = _compaction_counts(entries)
    counts["images_deleted"] = _delete_unused_images(root, entries)
    return counts


def _delete_unused_images(root: Path, entries: _Sorted) -> int:
    """Deletes the images of dropped entries, and orphans older than ``ORPHAN_MIN_AGE_S``; never a live sample's."""
    live = {entry.image for entry in entries.live}
    dropped = {entry.image for entry in (*entries.removed, *entries.corrupt) if entry.image} - live
    images = root / IMAGES_DIR
    deleted = 0
    for rel in sorted(dropped):
        with contextlib.suppress(OSError):
            (root / rel).unlink()
            deleted += 1
    cutoff = datetime.datetime.now().timestamp() - ORPHAN_MIN_AGE_S
    try:
        names = os.listdir(images)
    except OSError:
        names = []
    for name in names:
        if f"{IMAGES_DIR}/{name}" in live:
            continue
        path = images / name
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
    if deleted:
        with contextlib.suppress(OSError):
            fsync_dir(images)
    return deleted


def _compact_into(root: Path, out: Path, on_progress) -> dict[str, int]:
    if out == root or root in out.parents:
        raise JetracerError(f"--out {out} must be outside the dataset {root}")
    entries = _sort_entries(root, _read_index(root))
    try:
        with atomic_folder(out, "compacting") as building:
            (building / IMAGES_DIR).mkdir()
            images = dict.fromkeys(entry.image for entry in entries.live)
            for done, rel in enumerate(images, start=1):
                _link_or_copy(root / rel, building / rel)
                if on_progress:
                    on_progress(done, len(images))
            fsync_dir(building / IMAGES_DIR)
            atomic_write_bytes(building / INDEX_NAME, b"".join(entry.raw + b"\n" for entry in entries.live))
            manifest = root / MANIFEST_NAME
            if manifest.exists():
                atomic_write_bytes(building / MANIFEST_NAME, manifest.read_bytes())
            else:
                _write_manifest(building)
    except OSError as exc:
        raise JetracerError(f"cannot write the compacted dataset {out}: {exc.strerror or exc}") from None
    return {**_compaction_counts(entries), "images_deleted": 0}


@contextlib.contextmanager
def atomic_folder(path: Path, purpose: str):
    """Yields a new folder beside ``path`` to fill; renamed onto ``path`` (which must be absent or an empty folder)
    when the block ends, removed on any error. A kill leaves only the hidden ``.<name>.<purpose>-<pid>`` folder,
    which the next run with the same ``path`` and ``purpose`` removes: ``path`` is never seen half written."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise JetracerError(f"{path} already exists and is not an empty folder; choose a new output folder")
    building = path.parent / f".{path.name}.{purpose}-{os.getpid()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.{purpose}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        building.mkdir()
        yield building
        fsync_dir(building)
        os.rename(building, path)  # an empty folder at ``path`` is replaced, atomically
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (images never change once written), else a durable copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        fsync_file(target)
