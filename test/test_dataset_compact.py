"""``data compact``: the index rewritten without removed samples, tombstones and corrupt entries, crash-safely, while
writers keep appending."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from jetracer_trt import dataset
from jetracer_trt.dataset import DatasetWriteError, DatasetWriter, compact_dataset, read_dataset, scan_dataset
from jetracer_trt.errors import JetracerError

REPO = Path(__file__).resolve().parent.parent
FRAME = np.full((24, 32, 3), 90, np.uint8)


@pytest.fixture
def messy(tmp_path):
    """Frames 0-5 of which 1 and 4 were removed, plus a garbage line, a bad-label line (with an image) and a line
    whose image is missing; returns the dataset and the index lines of the samples that stay."""
    root = tmp_path / "data"
    with DatasetWriter(root) as writer:
        names = [writer.append(FRAME, 0.1 * i, -0.1, frame=i) for i in range(6)]
        writer.remove(names[1])
        writer.remove(names[4])
    kept = [line for line in (root / "index.jsonl").read_bytes().splitlines()
            if json.loads(line).get("frame") in (0, 2, 3, 5)]
    (root / "images/badlabel.jpg").write_bytes((root / names[0]).read_bytes())
    with open(root / "index.jsonl", "ab") as f:
        f.write(b"{not json\n")
        f.write(b'{"image": "images/badlabel.jpg", "x": 7, "y": 0}\n')
        f.write(b'{"image": "images/gone.jpg", "x": 0.0, "y": 0.0}\n')
        f.write(b"   \n")
    (root / names[4]).write_bytes(b"left behind by a crash between its tombstone and the deletion")
    return root, names, kept


def _frames(root: Path) -> list[int]:
    samples, corrupt = read_dataset(root)
    assert corrupt == 0
    return [s.meta["frame"] for s in samples]


def test_compact_in_place_keeps_the_usable_samples_line_for_line_and_deletes_the_rest(messy):
    root, names, kept = messy
    before = read_dataset(root)[0]
    counts = compact_dataset(root)
    assert counts == {"samples": 4, "removed": 2, "corrupt": 3, "tombstones": 2, "images_deleted": 2}
    assert (root / "index.jsonl").read_bytes().splitlines() == kept
    assert read_dataset(root) == (before, 0)
    assert sorted(p.name for p in (root / "images").iterdir()) == sorted(Path(names[i]).name for i in (0, 2, 3, 5))
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert compact_dataset(root) == {"samples": 4, "removed": 0, "corrupt": 0, "tombstones": 0, "images_deleted": 0}


def test_compact_into_out_leaves_the_dataset_as_it_was(messy, tmp_path):
    root, names, kept = messy
    index_before = (root / "index.jsonl").read_bytes()
    images_before = sorted(p.name for p in (root / "images").iterdir())
    counts = compact_dataset(root, tmp_path / "clean")
    assert (counts["samples"], counts["removed"], counts["corrupt"]) == (4, 2, 3)
    assert (root / "index.jsonl").read_bytes() == index_before
    assert sorted(p.name for p in (root / "images").iterdir()) == images_before
    assert (tmp_path / "clean/index.jsonl").read_bytes().splitlines() == kept
    assert (tmp_path / "clean/dataset.json").read_bytes() == (root / "dataset.json").read_bytes()
    assert _frames(tmp_path / "clean") == [0, 2, 3, 5]
    assert len(list((tmp_path / "clean/images").iterdir())) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_compact_into_refuses_a_folder_in_use_and_the_dataset_itself(messy, tmp_path):
    root, _, _ = messy
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/file").write_text("x")
    with pytest.raises(JetracerError, match="not an empty folder"):
        compact_dataset(root, tmp_path / "busy")
    with pytest.raises(JetracerError, match="outside the dataset"):
        compact_dataset(root, root / "inner")
    with pytest.raises(JetracerError, match="does not exist"):
        compact_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    compact_dataset(root, tmp_path / "empty")  # an empty folder is fine
    assert _frames(tmp_path / "empty") == [0, 2, 3, 5]


def test_a_compaction_that_fails_leaves_the_index_as_it_was(messy, monkeypatch):
    root, _, _ = messy
    before = (root / "index.jsonl").read_bytes()
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("index.jsonl"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(JetracerError, match="index is as it was"):
        compact_dataset(root)
    assert (root / "index.jsonl").read_bytes() == before
    assert not [p for p in root.iterdir() if p.name.startswith(".index")]


def test_a_killed_compaction_into_out_is_finished_by_the_next_one(messy, tmp_path, monkeypatch):
    root, _, _ = messy

    def killed(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compact_dataset(root, tmp_path / "clean", on_progress=killed)
    assert not (tmp_path / "clean").exists()  # built beside it, renamed only when complete
    stale = tmp_path / ".clean.compacting-12345"  # what a kill -9 leaves
    stale.mkdir()
    compact_dataset(root, tmp_path / "clean")
    assert _frames(tmp_path / "clean") == [0, 2, 3, 5] and not stale.exists()


def test_old_orphan_images_are_deleted_and_fresh_ones_kept(tmp_path):
    root = tmp_path / "data"
    with DatasetWriter(root) as writer:
        writer.append(FRAME, 0.0, 0.0, frame=0)
    old, fresh = root / "images/deadbeef_000000.jpg", root / "images/.cafe_000001.jpg.tmp-99"
    for path in (old, fresh):
        path.write_bytes(b"an append that crashed before its index line")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    assert compact_dataset(root)["images_deleted"] == 1
    assert not old.exists() and fresh.exists()  # fresh: perhaps a running writer's, about to be indexed
    assert _frames(root) == [0]


def test_writers_keep_appending_safely_while_the_dataset_is_compacted(tmp_path):
    root = tmp_path / "data"
    with DatasetWriter(root) as writer:  # something to drop, so every compaction rewrites the index
        writer.remove(writer.append(FRAME, 0.0, 0.0, frame=-1))
    script = textwrap.dedent(f"""
        import numpy as np
        from jetracer_trt.dataset import DatasetWriter
        frame = np.full((24, 32, 3), 90, np.uint8)
        with DatasetWriter({str(root)!r}) as w:
            for i in range(150):
                name = w.append(frame, 0.5, 0.5, frame=i)
                if i % 10 == 9:
                    w.remove(name)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO) for _ in range(2)]
    compactions = 0
    while any(p.poll() is None for p in procs) or compactions < 3:
        compact_dataset(root)
        compactions += 1
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    frames = sorted(_frames(root))
    expected = sorted(2 * [i for i in range(150) if i % 10 != 9])
    assert frames == expected  # every append kept, every removal honoured, nothing lost to a replaced index
    compact_dataset(root)
    assert sorted(_frames(root)) == expected
    assert len(list((root / "images").iterdir())) == len(expected)


def test_an_append_whose_fsync_fails_after_a_compaction_copied_its_line_keeps_its_image(tmp_path, monkeypatch):
    root = tmp_path / "data"
    writer = DatasetWriter(root)
    writer.remove(writer.append(FRAME, 0.0, 0.0, frame=0))
    real_fsync = os.fsync

    def fsync(fd):
        if fd == writer._fd:  # the index line is written: a compaction takes it into the new index, then EIO
            monkeypatch.setattr(os, "fsync", real_fsync)
            compact_dataset(root)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(DatasetWriteError, match="may still be in the index"):
        writer.append(FRAME, 0.2, 0.2, frame=1)
    writer.close()
    assert _frames(root) == [1]  # the line stayed in the new index, and its image with it


def test_compaction_needs_file_locks(messy, monkeypatch):
    root, _, _ = messy

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(dataset.fcntl, "flock", no_locks)
    with pytest.raises(JetracerError, match="without file locks.*--out"):
        compact_dataset(root)


def test_every_reader_honours_tombstones_after_and_before_compaction(messy):
    root, _, _ = messy
    scan = scan_dataset(root)
    assert [s.meta["frame"] for s in scan.samples] == [0, 2, 3, 5]
    assert sorted(s.meta["frame"] for s in scan.removed) == [1, 4] and scan.corrupt == 3
    compact_dataset(root)
    scan = scan_dataset(root)
    assert [s.meta["frame"] for s in scan.samples] == [0, 2, 3, 5] and scan.removed == [] and scan.corrupt == 0


def test_cli_compact_json_and_bad_input(messy, tmp_path, capsys, monkeypatch):
    from jetracer_trt.cli import main as main_module

    monkeypatch.setattr(main_module, "VERB_MODULES", ("data",))
    root, _, _ = messy
    assert main_module.main(["data", "compact", str(root), "--out", str(tmp_path / "c"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 4
    assert main_module.main(["data", "compact", str(root)]) == 0
    assert "4 samples kept; dropped 2 removed samples, 2 tombstones and 3 corrupt entries" in capsys.readouterr().out
    assert main_module.main(["data", "compact", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
