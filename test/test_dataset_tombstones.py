"""Removing samples from a dataset: tombstone lines in the index, honoured by every reader, as crash-safe as appends."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from jetracer_trt.dataset import DatasetWriteError, DatasetWriter, check_dataset, read_dataset
from jetracer_trt.errors import JetracerError

REPO = Path(__file__).resolve().parent.parent
FRAME = np.full((24, 32, 3), 90, np.uint8)


def _frames(root: Path) -> list[int]:
    samples, corrupt = read_dataset(root)
    assert corrupt == 0
    return [s.meta["frame"] for s in samples]


def _lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "index.jsonl").read_text().splitlines()]


def test_undo_last_removes_the_newest_sample_and_its_image(tmp_path):
    root = tmp_path / "d"
    with DatasetWriter(root) as writer:
        names = [writer.append(FRAME, 0.1, 0.2, frame=i) for i in range(3)]
        assert names[0].startswith("images/") and names[0].endswith(".jpg")
        assert writer.undo_last() == names[2]
        assert writer.count == 2
        assert _frames(root) == [0, 1]
    assert _lines(root)[-1] == {"delete": names[2]}
    assert not (root / names[2]).exists() and (root / names[1]).exists()
    assert check_dataset(root) == {"samples": 2, "corrupt": 0}


def test_undo_survives_reopen_and_only_undoes_the_writers_own_samples(tmp_path):
    root = tmp_path / "d"
    with DatasetWriter(root) as writer:
        for i in range(3):
            writer.append(FRAME, 0.0, 0.0, frame=i)
        writer.undo_last()
        writer.undo_last()
    assert _frames(root) == [0]
    with DatasetWriter(root) as writer:  # a new session: its undo reaches its own samples only
        assert writer.undo_last() is None
        writer.append(FRAME, 0.0, 0.0, frame=10)
        assert writer.undo_last() is not None and writer.undo_last() is None
        writer.append(FRAME, 0.0, 0.0, frame=11)
    assert _frames(root) == [0, 11]


def test_remove_any_sample_by_name(tmp_path):
    root = tmp_path / "d"
    with DatasetWriter(root) as writer:
        names = [writer.append(FRAME, 0.0, 0.0, frame=i) for i in range(3)]
    with DatasetWriter(root) as other:
        other.remove(names[1])
        assert other.count == 0  # not its sample
    assert _frames(root) == [0, 2]


def test_tombstone_for_an_unknown_name_is_harmless(tmp_path):
    root = tmp_path / "d"
    with DatasetWriter(root) as writer:
        writer.append(FRAME, 0.0, 0.0, frame=0)
        writer.remove("images/00000000_000000.jpg")
        writer.remove("images/../images/nothing.jpg")
        writer.append(FRAME, 0.0, 0.0, frame=1)
    assert _frames(root) == [0, 1]


def test_a_tombstone_removes_only_samples_written_before_it(tmp_path):
    root = tmp_path / "d"
    with DatasetWriter(root) as writer:
        name = writer.append(FRAME, 0.0, 0.0, frame=0)
    lines = (root / "index.jsonl").read_bytes()
    # the same image named again after its tombstone (writers never do this; a hand-edited index might)
    (root / "index.jsonl").write_bytes(json.dumps({"delete": name}).encode() + b"\n" + lines)
    assert _frames(root) == [0]


@pytest.mark.parametrize("line", [b'{"delete": 5}', b'{"delete": "../outside.jpg"}', b'{"delete": "/etc/passwd"}',
                                  b'{"delete": ""}'])
def test_malformed_tombstones_are_corrupt_lines(tmp_path, line):
    root = tmp_path / "d"
    with DatasetWriter(root) as writer:
        writer.append(FRAME, 0.0, 0.0, frame=0)
    with open(root / "index.jsonl", "ab") as f:
        f.write(line + b"\n")
    samples, corrupt = read_dataset(root)
    assert (len(samples), corrupt) == (1, 1)


def test_bad_remove_calls_are_refused(tmp_path):
    with DatasetWriter(tmp_path / "d") as writer:
        with pytest.raises(JetracerError, match="reserved"):
            writer.append(FRAME, 0.0, 0.0, delete="images/x.jpg")  # would read back as a tombstone
        with pytest.raises(JetracerError, match="not a path inside the dataset"):
            writer.remove("../../etc/passwd")
    with pytest.raises(JetracerError, match="closed"):
        writer.remove("images/x.jpg")


def test_a_failed_tombstone_write_leaves_the_sample(tmp_path, monkeypatch):
    root = tmp_path / "d"
    writer = DatasetWriter(root)
    name = writer.append(FRAME, 0.0, 0.0, frame=0)
    before = (root / "index.jsonl").read_bytes()
    real_fsync = os.fsync

    def fsync(fd):
        if fd == writer._fd:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(DatasetWriteError, match="the sample is still in the dataset"):
        writer.undo_last()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert (root / "index.jsonl").read_bytes() == before and (root / name).exists()
    assert _frames(root) == [0] and writer.count == 1
    assert writer.undo_last() == name  # the same undo works once the disk is back
    writer.close()
    assert _frames(root) == []


def test_kill_9_while_appending_and_undoing_leaves_a_readable_dataset(tmp_path):
    """Two appends and one undo per round: whatever moment the kill lands on, readers see the even frames (plus at
    most the odd one of the round in flight), and every sample they see has its image."""
    root = tmp_path / "d"
    script = textwrap.dedent(f"""
        import numpy as np
        from jetracer_trt.dataset import DatasetWriter
        frame = np.full((24, 32, 3), 90, np.uint8)
        w = DatasetWriter({str(root)!r})
        i = 0
        while True:
            w.append(frame, 0.1, 0.1, frame=i)
            w.append(frame, 0.1, 0.1, frame=i + 1)
            w.undo_last()
            i += 2
        """)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and b"delete" not in _index_bytes(root):
            time.sleep(0.02)
        time.sleep(0.4)
        assert proc.poll() is None, "the writer ended before it was killed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    samples, corrupt = read_dataset(root)
    assert corrupt <= 1 and len(samples) > 1
    frames = [s.meta["frame"] for s in samples]
    evens = [f for f in frames if f % 2 == 0]
    assert evens == list(range(0, 2 * len(evens), 2))
    assert frames[:len(evens)] == evens and len(frames) - len(evens) <= 1  # an odd one only at the end
    assert all(s.image_path.stat().st_size > 0 for s in samples)


def _index_bytes(root: Path) -> bytes:
    try:
        return (root / "index.jsonl").read_bytes()
    except FileNotFoundError:
        return b""
