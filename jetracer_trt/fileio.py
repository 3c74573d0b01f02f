"""Atomic file writes: a file is either its old complete self or its new complete self, never half written.

Every output that a crash must not tear (dataset manifest and images, checkpoints, metrics, plots, exported models)
goes through ``atomic_path``: write to a temporary name beside the target (same file system, so the rename is
atomic), optionally fsync, then ``os.replace``; on any failure the temporary file is removed and the target is left
as it was.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yields the temporary path to write; renames it onto ``path`` when the block ends without an exception."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
