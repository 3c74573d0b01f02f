"""Atomic file writes: a file is either its old complete self or its new complete self, never half written.

Every output that a crash must not tear (dataset manifest and images, calibration, checkpoints, metrics, plots,
exported models, engines) goes through ``atomic_path``: write to a temporary name beside the target (same file
system, so the rename is atomic), fsync it, ``os.replace`` it onto the target, then fsync the folder. The file's
fsync makes its bytes durable before the new name can point at them; the folder's fsync makes the rename itself
durable, without which a power cut soon after can bring the old file back. On any failure the temporary file is
removed and the target is left as it was.
"""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator

# Folders on some file systems (some FUSE and network mounts) refuse fsync; there the rename is as durable as the
# file system makes it, and refusing to write at all would help nobody.
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EROFS}


def fsync_file(path: str | os.PathLike) -> None:
    """Flushes ``path``'s bytes to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Makes renames, new and removed names inside the folder ``path`` durable.

    Raises OSError when the disk reports a failure (EIO); a folder that cannot be opened for reading, or a file
    system that does not support fsync on folders, is skipped.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, *_DIR_FSYNC_UNSUPPORTED):
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = True) -> Iterator[Path]:
    """Yields the temporary path to write; renames it onto ``path`` when the block ends without an exception.

    With ``fsync`` (the default) the file is fsynced before the rename and its folder after it, so once the block
    has ended the new file survives a power cut. ``fsync=False`` is for scratch outputs only: still atomic against
    a crash of the process, but a power cut may bring back the old file, or leave an empty one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    """Writes ``data`` to ``path`` through ``atomic_path`` (durable on return unless ``fsync`` is False)."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
