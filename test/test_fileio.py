"""Atomic writes: the file is synced before its rename and its folder after, so a power cut keeps the new file."""
import errno
import os

import pytest

from jetracer_trt.fileio import atomic_path, atomic_write_bytes, fsync_dir


@pytest.fixture
def disk_events(monkeypatch):
    """Records every os.fsync (as the path of its descriptor) and os.replace (as its target), in order."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_atomic_write_syncs_the_file_then_renames_then_syncs_the_folder(tmp_path, disk_events):
    target = tmp_path / "calibration.yaml"
    target.write_text("old")
    atomic_write_bytes(target, b"new")  # durable by default: calibration, checkpoints, engines rely on it
    assert target.read_bytes() == b"new"
    assert disk_events == [
        ("fsync", str(tmp_path / f".calibration.yaml.tmp-{os.getpid()}")),
        ("replace", str(target)),
        ("fsync", str(tmp_path)),
    ]


def test_atomic_path_without_fsync_only_renames(tmp_path, disk_events):
    with atomic_path(tmp_path / "scratch.png", fsync=False) as tmp:
        tmp.write_bytes(b"png")
    assert disk_events == [("replace", str(tmp_path / "scratch.png"))]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, disk_events):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("export failed")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.onnx"]
    assert disk_events == []


def test_folder_fsync_reports_disk_errors_and_skips_unsupported_file_systems(tmp_path, monkeypatch):
    def failing(code):
        def fsync(fd):
            raise OSError(code, os.strerror(code))
        return fsync

    monkeypatch.setattr(os, "fsync", failing(errno.EINVAL))  # some FUSE and network mounts
    fsync_dir(tmp_path)
    monkeypatch.setattr(os, "fsync", failing(errno.EIO))
    with pytest.raises(OSError, match="Input/output error"):
        fsync_dir(tmp_path)
    with pytest.raises(OSError, match="Input/output error"):
        atomic_write_bytes(tmp_path / "x", b"x")
    assert os.listdir(tmp_path) == []  # the temporary file is gone, no target appeared
