"""Dataset format v1: round trip, damaged indexes, bad input, crash (kill -9) and concurrent-writer robustness."""
from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from jetracer_trt import dataset
from jetracer_trt.dataset import DatasetWriter, check_dataset, load_image, read_dataset
from jetracer_trt.errors import JetracerError

REPO = Path(__file__).resolve().parent.parent


def _frame(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth gradient plus a seed-dependent offset: JPEG keeps it close, and frames differ from each other."""
    yy, xx = np.mgrid[0:h, 0:w]
    frame = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, (seed * 37) % 256)], axis=-1)
    return frame.astype(np.uint8)


def _write(root: Path, n: int, start: int = 0) -> None:
    with DatasetWriter(root) as writer:
        for i in range(start, start + n):
            writer.append(_frame(i), x=(i % 21 - 10) / 10, y=-0.5, frame=i, track_seed=7, randomized=bool(i % 2))
        assert writer.count == n


def _index_lines(root: Path) -> list[bytes]:
    return (root / "index.jsonl").read_bytes().splitlines()


def _run_writer_script(root: Path, body: str) -> subprocess.Popen:
    script = textwrap.dedent(
        f"""
        import numpy as np
        from jetracer_trt.dataset import DatasetWriter
        frame = np.full((32, 32, 3), 100, np.uint8)
        w = DatasetWriter({str(root)!r})
        """
    ) + textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO)


def test_round_trip(tmp_path):
    root = tmp_path / "data"
    _write(root, 12)
    manifest = json.loads((root / "dataset.json").read_text())
    assert manifest["format"] == "jetracer_trt.dataset" and manifest["version"] == dataset.FORMAT_VERSION
    samples, corrupt = read_dataset(root)
    assert corrupt == 0 and len(samples) == 12
    for i, sample in enumerate(samples):
        assert sample.image_path.is_absolute() and sample.image_path.is_file()
        assert sample.x == (i % 21 - 10) / 10 and sample.y == -0.5
        assert sample.meta == {"frame": i, "track_seed": 7, "randomized": bool(i % 2)}
        image = load_image(sample.image_path)
        assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
        assert np.abs(image.astype(int) - _frame(i).astype(int)).mean() < 3  # RGB order kept, JPEG loss small
    assert check_dataset(root, decode=True) == {"samples": 12, "corrupt": 0}


def test_numpy_scalars_in_meta_and_labels(tmp_path):
    with DatasetWriter(tmp_path / "d") as writer:
        writer.append(_frame(0), np.float32(0.25), np.float64(-1.0), steering=np.float32(0.5), frame=np.int64(3))
    (sample,), _ = read_dataset(tmp_path / "d")
    assert (sample.x, sample.y, sample.meta) == (0.25, -1.0, {"steering": 0.5, "frame": 3})


def test_second_writer_appends(tmp_path):
    root = tmp_path / "data"
    _write(root, 5)
    _write(root, 4, start=5)
    samples, corrupt = read_dataset(root)
    assert corrupt == 0 and [s.meta["frame"] for s in samples] == list(range(9))
    assert len({s.image_path for s in samples}) == 9


def test_empty_dataset(tmp_path):
    DatasetWriter(tmp_path / "d").close()
    assert read_dataset(tmp_path / "d") == ([], 0)
    (tmp_path / "d" / "index.jsonl").unlink()  # a manifest alone is a valid, empty dataset too
    assert read_dataset(tmp_path / "d") == ([], 0)


def test_truncated_last_line(tmp_path, caplog):
    root = tmp_path / "data"
    _write(root, 3)
    with open(root / "index.jsonl", "ab") as f:
        f.write(b'{"image": "images/x.jpg", "x": 0.1')  # a torn write: no closing brace, no newline
    samples, corrupt = read_dataset(root)
    assert (len(samples), corrupt) == (3, 1)
    assert "line 4" in caplog.text
    # a later writer must not glue its first line onto the torn one
    _write(root, 2, start=3)
    samples, corrupt = read_dataset(root)
    assert (len(samples), corrupt) == (5, 1)


def test_garbage_line_in_the_middle(tmp_path, caplog):
    root = tmp_path / "data"
    _write(root, 4)
    lines = _index_lines(root)
    bad = [b"\x00\xffgarbage", b"[1, 2]", b'{"x": 0, "y": 0}', b'{"image": "images/a.jpg", "x": 2, "y": 0}',
           b'{"image": "../../etc/passwd", "x": 0, "y": 0}', b'{"image": "images/a.jpg", "x": NaN, "y": 0}']
    (root / "index.jsonl").write_bytes(b"\n".join(lines[:2] + bad + lines[2:]) + b"\n")
    with caplog.at_level(logging.WARNING):
        samples, corrupt = read_dataset(root)
    assert corrupt == len(bad)
    assert [s.meta["frame"] for s in samples] == [0, 1, 2, 3]
    assert "line 3" in caplog.text and "line 8" in caplog.text


def test_missing_and_broken_image(tmp_path):
    root = tmp_path / "data"
    _write(root, 4)
    samples, _ = read_dataset(root)
    samples[1].image_path.unlink()
    samples[2].image_path.write_bytes(b"not a jpeg")
    after, corrupt = read_dataset(root)
    assert corrupt == 1 and [s.meta["frame"] for s in after] == [0, 2, 3]  # existence only, no decode
    assert check_dataset(root) == {"samples": 3, "corrupt": 1}
    assert check_dataset(root, decode=True) == {"samples": 2, "corrupt": 2}
    with pytest.raises(JetracerError, match="does not exist"):
        load_image(samples[1].image_path)
    with pytest.raises(JetracerError, match="cannot be decoded"):
        load_image(samples[2].image_path)


@pytest.mark.parametrize("x, y", [(1.5, 0.0), (0.0, -1.01), (float("nan"), 0.0), (0.0, float("inf")), ("0.1", 0.0)])
def test_bad_label_rejected(tmp_path, x, y):
    with DatasetWriter(tmp_path / "d") as writer:
        with pytest.raises(JetracerError):
            writer.append(_frame(0), x, y)
        assert writer.count == 0
    assert read_dataset(tmp_path / "d") == ([], 0)
    assert not list((tmp_path / "d" / "images").iterdir())  # validation happens before any file is written


@pytest.mark.parametrize(
    "frame",
    [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), [[0, 0, 0]]],
)
def test_bad_frame_rejected(tmp_path, frame):
    with DatasetWriter(tmp_path / "d") as writer, pytest.raises(JetracerError, match="uint8"):
        writer.append(frame, 0.0, 0.0)


def test_append_jpeg_stores_the_bytes_as_they_are(tmp_path):
    import cv2

    jpeg = cv2.imencode(".jpg", _frame(3), [cv2.IMWRITE_JPEG_QUALITY, 55])[1].tobytes()
    with DatasetWriter(tmp_path / "d") as writer:
        name = writer.append_jpeg(jpeg, 0.25, -0.5, frame=3)
        assert writer.count == 1 and writer.undo_last() == name
        writer.append_jpeg(jpeg, 0.25, -0.5, frame=4)
    (sample,), corrupt = read_dataset(tmp_path / "d")
    assert corrupt == 0 and sample.image_path.read_bytes() == jpeg and sample.meta == {"frame": 4}


@pytest.mark.parametrize("data, message", [
    (b"\x89PNG\r\n\x1a\n" + b"0" * 20, "not a JPEG"),
    (b"\xff\xd8\xff\xe0 cut short", "cannot be decoded"),
    (b"", "not a JPEG"),
])
def test_append_jpeg_refuses_what_is_not_a_jpeg_and_writes_nothing(tmp_path, data, message):
    with DatasetWriter(tmp_path / "d") as writer:
        with pytest.raises(JetracerError, match=message):
            writer.append_jpeg(data, 0.0, 0.0)
        with pytest.raises(JetracerError, match="outside"):
            writer.append_jpeg(data, 2.0, 0.0)
    assert read_dataset(tmp_path / "d") == ([], 0)
    assert not list((tmp_path / "d" / "images").iterdir())


def test_bad_meta_rejected(tmp_path):
    with DatasetWriter(tmp_path / "d") as writer:
        with pytest.raises(JetracerError, match="JSON"):
            writer.append(_frame(0), 0.0, 0.0, thing=object())
        with pytest.raises(JetracerError, match="reserved"):
            writer.append(_frame(0), 0.0, 0.0, image="x.jpg")
        with pytest.raises(JetracerError, match="JSON"):
            writer.append(_frame(0), 0.0, 0.0, speed=float("nan"))
        assert writer.count == 0


def test_unwritable_root(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("hello")
    with pytest.raises(JetracerError, match="is a file"):
        DatasetWriter(a_file)
    with pytest.raises(JetracerError, match="cannot write"):
        DatasetWriter(a_file / "data")
    with pytest.raises(JetracerError):
        DatasetWriter(tmp_path / "d", jpeg_quality=0)


def test_not_a_dataset(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(JetracerError, match="not a jetracer_trt dataset"):
        read_dataset(tmp_path / "photos")
    with pytest.raises(JetracerError, match="other files"):
        DatasetWriter(tmp_path / "photos")  # never scribble into an unrelated folder
    with pytest.raises(JetracerError, match="does not exist"):
        read_dataset(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(JetracerError, match="is a file"):
        read_dataset(tmp_path / "file")


def test_other_format_version(tmp_path):
    root = tmp_path / "data"
    _write(root, 1)
    (root / "dataset.json").write_text(json.dumps({"format": "jetracer_trt.dataset", "version": 2}))
    with pytest.raises(JetracerError, match="version 2"):
        read_dataset(root)
    with pytest.raises(JetracerError, match="version 2"):
        DatasetWriter(root)
    (root / "dataset.json").write_text(json.dumps({"format": "something.else", "version": 1}))
    with pytest.raises(JetracerError, match="not a jetracer_trt dataset manifest"):
        read_dataset(root)


def test_lost_manifest_still_readable(tmp_path, caplog):
    root = tmp_path / "data"
    _write(root, 3)
    (root / "dataset.json").unlink()
    samples, corrupt = read_dataset(root)
    assert (len(samples), corrupt) == (3, 0)
    assert "dataset.json" in caplog.text
    _write(root, 1, start=3)  # a writer restores the manifest
    assert (root / "dataset.json").is_file() and len(read_dataset(root)[0]) == 4


def test_kill_9_leaves_a_readable_dataset(tmp_path):
    root = tmp_path / "data"
    proc = _run_writer_script(root, "while True:\n    w.append(frame, 0.1, -0.2, frame=w.count, speed=1.5)\n")
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _has_lines(root):
            time.sleep(0.02)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    samples, corrupt = read_dataset(root)
    assert len(samples) > 0 and corrupt <= 1
    assert [s.meta["frame"] for s in samples] == list(range(len(samples)))


def _has_lines(root: Path) -> bool:
    try:
        return (root / "index.jsonl").stat().st_size > 0
    except FileNotFoundError:
        return False


def test_concurrent_writers(tmp_path):
    root = tmp_path / "data"  # both processes race to create it, too
    body = "for i in range(60):\n    w.append(frame, 0.5, 0.5, frame=i)\nw.close()\n"
    procs = [_run_writer_script(root, body) for _ in range(2)]
    assert [p.wait(timeout=30) for p in procs] == [0, 0]
    lines = _index_lines(root)
    assert len(lines) == 120 and all(json.loads(line)["x"] == 0.5 for line in lines)
    samples, corrupt = read_dataset(root)
    assert (len(samples), corrupt) == (120, 0)
    assert len({s.image_path for s in samples}) == 120


# --- CLI ---------------------------------------------------------------------------------------------------------


def _data_parser() -> argparse.ArgumentParser:
    from jetracer_trt.cli import data

    parser = argparse.ArgumentParser()
    data.register(parser.add_subparsers())
    return parser


def test_cli_check_json(tmp_path, capsys):
    root = tmp_path / "data"
    _write(root, 3)
    with open(root / "index.jsonl", "ab") as f:
        f.write(b"garbage\n")
    args = _data_parser().parse_args(["data", "check", str(root), "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out) == {"samples": 3, "corrupt": 1}
    args = _data_parser().parse_args(["data", "check", str(root)])
    assert args.func(args) == 0
    assert "3 usable samples, 1 corrupt" in capsys.readouterr().out


def test_cli_check_missing_dir_raises(tmp_path):
    args = _data_parser().parse_args(["data", "check", str(tmp_path / "nope")])
    with pytest.raises(JetracerError, match="does not exist"):
        args.func(args)


@pytest.mark.parametrize("all_verbs", [False, True], ids=["data_verb_only", "all_verbs"])
def test_main_data_check(tmp_path, capsys, monkeypatch, all_verbs):
    from jetracer_trt.cli import main as main_module

    if all_verbs:
        try:
            main_module.build_parser()
        except ImportError as exc:  # another verb's module is not written yet
            pytest.skip(f"cli.main cannot build its parser yet: {exc}")
    else:
        monkeypatch.setattr(main_module, "VERB_MODULES", ("data",))
    root = tmp_path / "data"
    _write(root, 2)
    assert main_module.main(["data", "check", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"samples": 2, "corrupt": 0}
    assert main_module.main(["data", "check", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "does not exist" in err[0]


# --- write errors (a full disk, a failing fsync) -----------------------------------------------------------------


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.fixture
def three_samples(tmp_path):
    """A writer that has appended frames 0-2, and the index bytes those left."""
    root = tmp_path / "data"
    writer = DatasetWriter(root)
    for i in range(3):
        writer.append(_frame(i), 0.1, -0.1, frame=i)
    yield writer, (root / "index.jsonl").read_bytes()
    writer.close()


def _images(root: Path) -> set[str]:
    return {p.name for p in (root / "images").iterdir()}


def _assert_reads_back_exactly(root: Path, frames: list[int]) -> None:
    samples, corrupt = read_dataset(root)
    assert corrupt == 0 and [s.meta["frame"] for s in samples] == frames
    assert len({s.image_path for s in samples}) == len(samples)  # no two samples share an image
    assert {s.image_path.name for s in samples} == _images(root)  # and no orphan image is left


def _fail_index_writes(monkeypatch, writer, how):
    """os.write on the writer's index does ``how(real_write, fd, data)``; every other write is untouched."""
    real_write = os.write

    def write(fd, data):
        return how(real_write, fd, data) if fd == writer._fd else real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def _short_write(real_write, fd, data):
    return real_write(fd, data[:17])  # the disk filled up 17 bytes into the line


def _write_then_raise(real_write, fd, data):
    real_write(fd, data[:17])
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("how", [_short_write, _write_then_raise], ids=["short_write", "enospc_midway"])
def test_a_failed_index_write_leaves_the_index_as_it_was(three_samples, monkeypatch, how):
    writer, before = three_samples
    _fail_index_writes(monkeypatch, writer, how)
    with pytest.raises(dataset.DatasetWriteError, match="cannot write to dataset .*not stored") as info:
        writer.append(_frame(3), 0.2, 0.2, frame=3)
    assert info.value.errno == errno.ENOSPC
    assert (writer.root / "index.jsonl").read_bytes() == before
    assert writer.count == 3 and len(_images(writer.root)) == 3  # the failed sample's image is gone again
    monkeypatch.undo()  # space is back
    writer.append(_frame(4), 0.3, 0.3, frame=4)
    assert writer.count == 4
    _assert_reads_back_exactly(writer.root, [0, 1, 2, 4])


def _failing_index_fsync(monkeypatch, writer, before_raising=lambda: None):
    """The next fsync of the writer's index fails with EIO (after ``before_raising()``); the ones after work."""
    real_fsync = os.fsync
    failed = []

    def fsync(fd):
        if fd == writer._fd and not failed:
            failed.append(fd)
            before_raising()
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failed


def test_a_failed_index_fsync_takes_the_line_back_and_never_reuses_the_image_name(three_samples, monkeypatch):
    writer, before = three_samples
    failed = _failing_index_fsync(monkeypatch, writer)
    with pytest.raises(dataset.DatasetWriteError, match="Input/output error.*not stored"):
        writer.append(_frame(3), 0.9, 0.9, frame=3)
    assert failed and (writer.root / "index.jsonl").read_bytes() == before
    writer.append(_frame(4), -0.9, -0.9, frame=4)  # fsync works again
    _assert_reads_back_exactly(writer.root, [0, 1, 2, 4])
    assert [s.x for s in read_dataset(writer.root)[0]] == [0.1, 0.1, 0.1, -0.9]


def test_a_failed_fsync_blanks_its_line_when_another_writer_appended_after_it(three_samples, monkeypatch):
    writer, _ = three_samples
    other = DatasetWriter(writer.root)
    _failing_index_fsync(monkeypatch, writer, before_raising=lambda: other.append(_frame(9), 0.5, 0.5, frame=9))
    with pytest.raises(dataset.DatasetWriteError):
        writer.append(_frame(3), 0.2, 0.2, frame=3)
    other.close()
    lines = _index_lines(writer.root)
    assert len(lines) == 5 and not lines[3].strip()  # our line became blank; the other writer's line is intact
    writer.append(_frame(4), 0.3, 0.3, frame=4)
    _assert_reads_back_exactly(writer.root, [0, 1, 2, 9, 4])


def test_append_syncs_the_image_and_its_folder_before_the_index_line(tmp_path, monkeypatch):
    writer = DatasetWriter(tmp_path / "data")
    events = []
    real_fsync, real_replace, real_write = os.fsync, os.replace, os.write
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", _fd_path(fd))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))[1])
    monkeypatch.setattr(os, "write", lambda fd, data: (events.append(("write", _fd_path(fd))), real_write(fd, data))[1])
    writer.append(_frame(0), 0.0, 0.0)
    monkeypatch.undo()
    writer.close()
    (image,) = (tmp_path / "data" / "images").iterdir()
    index, images = str(tmp_path / "data" / "index.jsonl"), str(tmp_path / "data" / "images")
    assert [e for e in events if e[1].startswith(str(tmp_path))] == [
        ("fsync", str(image.with_name(f".{image.name}.tmp-{os.getpid()}"))),
        ("replace", str(image)),
        ("fsync", images),
        ("write", index),
        ("fsync", index),
    ]
