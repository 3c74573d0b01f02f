"""Datasets in and out: JetRacer road-following folders and donkeycar tubs, imported and exported."""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetracer_trt.control import ControlParams, compute_command, target_from_steering
from jetracer_trt.dataset import DatasetWriter, load_image, read_dataset, scan_dataset
from jetracer_trt.errors import JetracerError
from jetracer_trt.interop import InteropOptions, export_dataset, import_dataset
from jetracer_trt.interop import common as interop_common
from jetracer_trt.interop.jetracer_folders import label_from_pixel, pixel_from_label

REPO = Path(__file__).resolve().parent.parent


def _frame(seed: int, h: int = 224, w: int = 224) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, (seed * 37) % 256)], axis=-1).astype(np.uint8)


def _save_jpeg(path: Path, frame_rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))


def _notebook_labels(directory: Path, category: str) -> dict[str, tuple[float, float]]:
    """A transcription of the JetRacer notebooks' XYDataset (xy_dataset.py): glob <dir>/<category>/*.jpg, parse
    the name with split('_') and int(), and label 2 * (x / width - 0.5), 2 * (y / height - 0.5) with the image's
    own width and height."""
    labels = {}
    for image_path in glob.glob(os.path.join(directory, category, "*.jpg")):
        items = os.path.basename(image_path).split("_")
        x, y = int(items[0]), int(items[1])
        image = cv2.imread(image_path, cv2.IMREAD_COLOR)
        height, width = image.shape[:2]
        labels[os.path.basename(image_path)] = (2.0 * (x / width - 0.5), 2.0 * (y / height - 0.5))
    return labels


def _by_source(root: Path) -> dict:
    samples, corrupt = read_dataset(root)
    assert corrupt == 0
    return {s.meta["source_name"]: s for s in samples}


# --- jetracer: import -----------------------------------------------------------------------------------------------


@pytest.fixture
def jetracer_folder(tmp_path):
    """A JetRacer road_following_A folder: good samples in apex/, one at the top level, and everything that is not."""
    src = tmp_path / "road_following_A"
    good = {"apex/112_80_1b4e28ba-2fa1-11d2-883f-0016d3cca427.jpg": (112, 80),
            "apex/0_224_2c5ea4c0-4067-11e9-8bad-9b1deb4d3b7d.jpg": (0, 224),
            "apex/224_0_3d6f0a5e-4067-11e9-8bad-9b1deb4d3b7d.jpg": (224, 0),
            "apex/57_131_4e7f1b6f-4067-11e9-8bad-9b1deb4d3b7d.jpg": (57, 131),
            "17_203_5f801c70-4067-11e9-8bad-9b1deb4d3b7d.jpg": (17, 203)}
    for k, name in enumerate(good):
        _save_jpeg(src / name, _frame(k))
    _save_jpeg(src / "apex/wide" / "300_120_6a91-wide.jpg", _frame(9, h=240, w=320))  # a 320 x 240 camera
    (src / "apex/notes.txt").write_text("labelled on the track in the lab")
    (src / "apex/.ipynb_checkpoints").mkdir()
    (src / "apex/.ipynb_checkpoints/road_following-checkpoint.ipynb").write_text("{}")
    _save_jpeg(src / "apex/snapshot.jpg", _frame(5))
    _save_jpeg(src / "apex/x_12_7b02-aa.jpg", _frame(6))
    _save_jpeg(src / "apex/300_10_8c13-out-of-image.jpg", _frame(7))
    (src / "apex/100_100_9d24-torn.jpg").write_bytes(b"\xff\xd8\xff\xe0 only a header")
    return src, {**good, "apex/wide/300_120_6a91-wide.jpg": (300, 120)}


def test_jetracer_import_uses_the_notebooks_label_and_reports_every_skipped_file(jetracer_folder, tmp_path):
    src, good = jetracer_folder
    report = import_dataset("jetracer", src, tmp_path / "data")
    assert (report.imported, report.already_imported) == (len(good), 0)
    assert dict(report.skipped) == {"not an image file": 2, "name is not <x>_<y>_<uuid>.jpg": 2,
                                    "label outside the image": 1,
                                    "image cannot be decoded (empty, truncated or not an image)": 1}
    assert report.examples["not an image file"] == ["apex/notes.txt",  # a folder's files, then its folders
                                                    "apex/.ipynb_checkpoints/road_following-checkpoint.ipynb"]
    samples = _by_source(tmp_path / "data")
    assert set(samples) == set(good)
    for name, (u, v) in good.items():
        width, height = (320, 240) if "wide" in name else (224, 224)
        sample = samples[name]
        assert (sample.x, sample.y) == (2.0 * (u / width - 0.5), 2.0 * (v / height - 0.5))  # XYDataset's formula
        assert (sample.x, sample.y) == (2 * u / width - 1, 2 * v / height - 1)  # = this project's convention
        assert sample.meta["source_format"] == "jetracer" and sample.meta["source_px"] == [u, v]
    assert samples["apex/112_80_1b4e28ba-2fa1-11d2-883f-0016d3cca427.jpg"].meta["category"] == "apex"
    assert samples["apex/112_80_1b4e28ba-2fa1-11d2-883f-0016d3cca427.jpg"].meta["session"] == "road_following_A/apex"
    assert "category" not in samples["17_203_5f801c70-4067-11e9-8bad-9b1deb4d3b7d.jpg"].meta
    # the JPEG is stored byte for byte, not encoded a second time
    sample = samples["apex/57_131_4e7f1b6f-4067-11e9-8bad-9b1deb4d3b7d.jpg"]
    assert sample.image_path.read_bytes() == (src / "apex/57_131_4e7f1b6f-4067-11e9-8bad-9b1deb4d3b7d.jpg").read_bytes()


def test_a_png_is_imported_as_a_jpeg(tmp_path):
    src = tmp_path / "jr"
    src.mkdir()
    assert cv2.imwrite(str(src / "10_20_0aa1-png.png"), np.full((60, 80, 3), 128, np.uint8))
    import_dataset("jetracer", src, tmp_path / "data")
    (sample,) = read_dataset(tmp_path / "data")[0]
    assert sample.image_path.read_bytes()[:3] == b"\xff\xd8\xff" and load_image(sample.image_path).shape == (60, 80, 3)
    assert (sample.x, sample.y) == (2 * 10 / 80 - 1, 2 * 20 / 60 - 1)


def test_running_an_import_again_adds_nothing_and_a_removed_sample_stays_removed(jetracer_folder, tmp_path):
    src, good = jetracer_folder
    root = tmp_path / "data"
    import_dataset("jetracer", src, root)
    first = read_dataset(root)[0]
    with DatasetWriter(root) as writer:
        writer.remove(f"images/{first[0].image_path.name}")
    again = import_dataset("jetracer", src, root)
    assert (again.imported, again.already_imported) == (0, len(good))
    assert [s.image_path for s in read_dataset(root)[0]] == [s.image_path for s in first[1:]]


def test_a_killed_import_continues_where_it_stopped_and_never_duplicates(tmp_path):
    src, root = tmp_path / "jr", tmp_path / "data"
    names = [f"apex/{k % 32}_{3 * k % 32}_{k:04d}-aaaa.jpg" for k in range(40)]
    for k, name in enumerate(names):
        _save_jpeg(src / name, _frame(k, 32, 32))
    script = textwrap.dedent(f"""
        import time
        from jetracer_trt.interop import import_dataset
        import_dataset("jetracer", {str(src)!r}, {str(root)!r}, on_progress=lambda done, total: time.sleep(0.05))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _lines(root) < 5:
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = len(read_dataset(root)[0])
    assert 5 <= done_before < len(names)
    report = import_dataset("jetracer", src, root)
    assert report.already_imported == done_before and report.imported == len(names) - done_before
    samples, corrupt = read_dataset(root)
    assert corrupt == 0 and sorted(s.meta["source_name"] for s in samples) == sorted(names)


def _lines(root: Path) -> int:
    try:
        return len((root / "index.jsonl").read_bytes().splitlines())
    except FileNotFoundError:
        return 0


def test_import_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(JetracerError, match="does not exist"):
        import_dataset("jetracer", tmp_path / "nope", tmp_path / "data")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/readme.md").write_text("nothing here")
    with pytest.raises(JetracerError, match="holds no jetracer samples; 1 not an image file"):
        import_dataset("jetracer", tmp_path / "empty", tmp_path / "data")
    assert not (tmp_path / "data").exists()  # nothing created for nothing
    with pytest.raises(JetracerError, match="unknown dataset format 'kitti'"):
        import_dataset("kitti", tmp_path / "empty", tmp_path / "data")


# --- jetracer: export -----------------------------------------------------------------------------------------------


def _dataset(root: Path, labels: list[tuple[float, float]], **meta) -> list[str]:
    with DatasetWriter(root) as writer:
        return [writer.append(_frame(k), x, y, frame=k, **meta) for k, (x, y) in enumerate(labels)]


def test_jetracer_export_is_read_back_by_the_notebooks_xydataset_within_half_a_pixel(tmp_path):
    rng = np.random.default_rng(3)
    labels = [(-1.0, -1.0), (1.0, 1.0), (0.0, 0.0)] + [tuple(v) for v in rng.uniform(-1, 1, (30, 2)).round(6)]
    root, out = tmp_path / "data", tmp_path / "road_following_A"
    images = _dataset(root, labels)
    with DatasetWriter(root) as writer:
        writer.remove(images[3])  # tombstoned: not exported
    counts = export_dataset("jetracer", root, out)
    assert (counts["exported"], counts["already_exported"]) == (len(labels) - 1, 0)
    read_back = list(_notebook_labels(out, "apex").values())
    expected = labels[:3] + labels[4:]
    assert len(read_back) == len(expected)
    for ex, ey in expected:  # each label comes back from the nearest pixel: within half a pixel, 1/224
        near = [k for k, (x, y) in enumerate(read_back) if max(abs(x - ex), abs(y - ey)) <= 1 / 224 + 1e-12]
        assert near, (ex, ey)
        read_back.pop(near[0])
    read_back = list(_notebook_labels(out, "apex").values())
    assert (-1.0, -1.0) in read_back and (1.0, 1.0) in read_back and (0.0, 0.0) in read_back  # exact on pixels
    # our importer reads the export exactly as the notebook does
    import_dataset("jetracer", out, tmp_path / "again")
    ours = {name.split("/")[-1]: (s.x, s.y) for name, s in _by_source(tmp_path / "again").items()}
    assert ours == _notebook_labels(out, "apex")
    # and a second export writes no second copy
    assert export_dataset("jetracer", root, out)["already_exported"] == len(labels) - 1
    assert len(list((out / "apex").iterdir())) == len(labels) - 1


def test_jetracer_folder_in_and_out_keeps_every_pixel_label(jetracer_folder, tmp_path):
    src, good = jetracer_folder
    import_dataset("jetracer", src, tmp_path / "data")
    export_dataset("jetracer", tmp_path / "data", tmp_path / "out", InteropOptions(category="apex"))
    exported = sorted(tuple(int(v) for v in p.name.split("_")[:2]) for p in (tmp_path / "out/apex").iterdir())
    assert exported == sorted(good.values())


def test_pixel_rounding_is_to_the_nearest_pixel_and_clamped_to_the_image():
    assert pixel_from_label(*label_from_pixel(37, 190, 224, 224), 224, 224) == (37, 190)
    assert pixel_from_label(2 * 10.49 / 224 - 1, 2 * 10.5 / 224 - 1, 224, 224) == (10, 11)
    assert pixel_from_label(-1.0, 1.0, 160, 120) == (0, 120)


def test_jetracer_export_refuses_a_dataset_folder_and_a_bad_category(tmp_path):
    _dataset(tmp_path / "data", [(0.1, 0.2)])
    with pytest.raises(JetracerError, match="is a jetracer_trt dataset"):
        export_dataset("jetracer", tmp_path / "data", tmp_path / "data")
    with pytest.raises(JetracerError, match="plain folder name"):
        export_dataset("jetracer", tmp_path / "data", tmp_path / "out", InteropOptions(category="../up"))


# --- donkeycar: a tub written by hand, as donkeycar 5.x writes it ----------------------------------------------------


def _hand_made_tub(tub: Path, records: list[dict], deleted: list[int], max_len: int = 3,
                   created_at: float = 1706700000.25) -> None:
    """The files of donkeycar 5.3.0's Tub: manifest.json (5 lines), catalog_<k>.catalog (+ .catalog_manifest)."""
    (tub / "images").mkdir(parents=True)
    paths = []
    for k, start in enumerate(range(0, len(records), max_len)):
        lines = [json.dumps(r, sort_keys=True) + "\n" for r in records[start:start + max_len]]
        (tub / f"catalog_{k}.catalog").write_text("".join(lines))
        (tub / f"catalog_{k}.catalog_manifest").write_text(json.dumps(
            {"created_at": created_at, "line_lengths": [len(line) for line in lines],
             "path": f"catalog_{k}.catalog_manifest", "start_index": start}, sort_keys=True) + "\n")
        paths.append(f"catalog_{k}.catalog")
    sessions = {"all_full_ids": ["24-01-31_0"], "last_id": 0, "last_full_id": "24-01-31_0"}
    manifest = [["cam/image_array", "user/angle", "user/throttle", "user/mode"],
                ["image_array", "float", "float", "str"], {}, {"created_at": created_at, "sessions": sessions},
                {"paths": paths, "current_index": len(records), "max_len": max_len, "deleted_indexes": deleted}]
    (tub / "manifest.json").write_text("".join(json.dumps(line) + "\n" for line in manifest))


def _record(index: int, angle: float, throttle: float = 0.3, mode: str = "user") -> dict:
    return {"_index": index, "_session_id": "24-01-31_0", "_timestamp_ms": 1706700000000 + index,
            "cam/image_array": f"{index}_cam_image_array_.jpg", "user/angle": angle, "user/mode": mode,
            "user/throttle": throttle}


@pytest.fixture
def hand_made_tub(tmp_path):
    tub = tmp_path / "tub_1_24-01-31"
    angles = [-1.0, -0.5, 0.0, 0.25, 0.5, 0.9, 1.0]
    records = [_record(i, a) for i, a in enumerate(angles)] + [_record(7, 0.3, mode="local_angle")]
    _hand_made_tub(tub, records, deleted=[1, 4])
    for r in records:
        _save_jpeg(tub / "images" / r["cam/image_array"], _frame(r["_index"], 120, 160))
    return tub, angles


def test_donkeycar_import_of_a_hand_made_tub(hand_made_tub, tmp_path):
    tub, angles = hand_made_tub
    with open(tub / "catalog_2.catalog", "a") as f:
        f.write('{"_index": 8, "_session_id": "24-01-31_0", "cam/ima')  # torn by a crash while recording
    (tub / "images/6_cam_image_array_.jpg").unlink()
    report = import_dataset("donkeycar", tub, tmp_path / "data")
    assert report.imported == 4  # 0, 2, 3, 5
    assert dict(report.skipped) == {
        "deleted in the tub (manifest.json deleted_indexes)": 2,
        "driven by the pilot (user/mode 'local_angle'), so user/angle is not what steered": 1,
        "catalog line is not valid JSON (cut short by a crash?)": 1,
        "image file missing": 1}
    samples = _by_source(tmp_path / "data")
    params = ControlParams.from_config(profile="car")
    assert sorted(s.meta["source_index"] for s in samples.values()) == [0, 2, 3, 5]
    for sample in samples.values():
        angle = angles[sample.meta["source_index"]]
        assert (sample.x, sample.y) == target_from_steering(angle, params, -0.12) == (angle, -0.12)
        assert sample.meta["steering"] == angle and sample.meta["throttle"] == 0.3 and sample.meta["mode"] == "user"
        assert sample.meta["session"] == "tub_1_24-01-31/24-01-31_0"
    assert set(samples) == {f"tub-1706700000.25/{i}" for i in (0, 2, 3, 5)}


def test_donkeycar_labels_follow_the_control_law_and_the_options(hand_made_tub, tmp_path, monkeypatch):
    tub, angles = hand_made_tub
    law = ControlParams.from_config({"steering_gain": 2.0, "steering_offset": 0.1}, profile="car")
    monkeypatch.setattr(interop_common.InteropOptions, "control_params", lambda self: law)
    options = InteropOptions(label_y=0.3, include_pilot_modes=True)
    import_dataset("donkeycar", tub, tmp_path / "data", options)
    samples = _by_source(tmp_path / "data")
    assert sorted(s.meta["source_index"] for s in samples.values()) == [0, 2, 3, 5, 6, 7]
    for sample in samples.values():
        angle = 0.3 if sample.meta["source_index"] == 7 else angles[sample.meta["source_index"]]
        assert sample.x == pytest.approx(max(-1.0, min(1.0, (angle - 0.1) / 2.0))) and sample.y == 0.3


def test_a_folder_of_tubs_is_imported_tub_by_tub_and_same_indexes_do_not_clash(hand_made_tub, tmp_path):
    tub, _ = hand_made_tub
    second = tmp_path / "tub_2_24-02-01"
    _hand_made_tub(second, [_record(0, 0.4)], deleted=[], created_at=1706800000.5)
    _save_jpeg(second / "images/0_cam_image_array_.jpg", _frame(0, 120, 160))
    report = import_dataset("donkeycar", tmp_path, tmp_path / "data")
    assert report.imported == 6
    assert "tub-1706800000.5/0" in _by_source(tmp_path / "data") and "tub-1706700000.25/0" in _by_source(
        tmp_path / "data")


@pytest.mark.parametrize("manifest, message", [
    (None, "is not a donkeycar tub"),
    ('["cam/image_array"]\n["image_array"]\n{}\n', "five JSON lines"),
    ('["cam/image_array"]\n["image_array"]\n{}\n{}\n{"paths": []}\n', "records no user/angle"),
    ("garbage\n", "cannot read the donkeycar manifest"),
])
def test_a_broken_tub_is_one_clear_error(tmp_path, manifest, message):
    tub = tmp_path / "tub"
    tub.mkdir()
    if manifest is not None:
        (tub / "manifest.json").write_text(manifest)
    with pytest.raises(JetracerError, match=message):
        import_dataset("donkeycar", tub, tmp_path / "data")


# --- donkeycar: the real thing ---------------------------------------------------------------------------------------


@pytest.fixture
def donkeycar_tub_class():
    return pytest.importorskip("donkeycar.parts.tub_v2").Tub


def test_donkeycar_import_of_a_tub_written_by_donkeycar(donkeycar_tub_class, tmp_path):
    Tub = donkeycar_tub_class
    inputs, types = ["cam/image_array", "user/angle", "user/throttle", "user/mode"], ["image_array", "float", "float",
                                                                                      "str"]
    path = tmp_path / "tub"
    tub = Tub(str(path), inputs=inputs, types=types, max_catalog_len=4)
    angles = [round(-0.9 + 0.2 * i, 3) for i in range(10)]
    for i, angle in enumerate(angles):
        tub.write_record({"cam/image_array": _frame(i, 120, 160), "user/angle": angle, "user/throttle": 0.25 + i / 100,
                          "user/mode": "user"})
    tub.delete_records([3, 8])
    tub.close()
    tub = Tub(str(path), inputs=inputs, types=types, max_catalog_len=4)  # a second session
    tub.write_record({"cam/image_array": _frame(10, 120, 160), "user/angle": 0.77, "user/throttle": 0.4,
                      "user/mode": "user"})
    tub.write_record({"cam/image_array": _frame(11, 120, 160), "user/angle": 0.1, "user/throttle": 0.4,
                      "user/mode": "local"})
    tub.close()
    report = import_dataset("donkeycar", path, tmp_path / "data")
    assert report.imported == 9 and report.skipped["deleted in the tub (manifest.json deleted_indexes)"] == 2
    samples = {s.meta["source_index"]: s for s in _by_source(tmp_path / "data").values()}
    assert sorted(samples) == [0, 1, 2, 4, 5, 6, 7, 9, 10]
    all_angles = angles + [0.77]
    for index, sample in samples.items():
        assert (sample.x, sample.y) == (all_angles[index], -0.12)
        assert sample.meta["throttle"] == pytest.approx(0.4 if index == 10 else 0.25 + index / 100)
        assert sample.image_path.read_bytes() == (path / "images" / f"{index}_cam_image_array_.jpg").read_bytes()
    assert len({s.meta["session"] for s in samples.values()}) == 2
    assert import_dataset("donkeycar", path, tmp_path / "data").already_imported == 9


def test_donkeycar_export_is_a_tub_donkeycar_reads_and_comes_back_with_the_same_labels(donkeycar_tub_class, tmp_path,
                                                                                       monkeypatch):
    from jetracer_trt.interop import donkeycar_tub

    Tub = donkeycar_tub_class
    monkeypatch.setattr(donkeycar_tub, "CATALOG_LEN", 5)  # as a 1000-record catalog fills up
    labels = [(round(-1 + k / 6, 4), -0.12) for k in range(13)]
    root = tmp_path / "data"
    images = _dataset(root, labels[:3], throttle=0.35)
    with DatasetWriter(root) as writer:
        writer.remove(images[1])
        for k, (x, y) in enumerate(labels[3:]):
            writer.append(_frame(k, 24, 32), x, y)
    counts = export_dataset("donkeycar", root, tmp_path / "tub")
    assert counts["exported"] == len(labels) - 1
    assert sorted(p.name for p in (tmp_path / "tub").glob("catalog_*")) == [
        "catalog_0.catalog", "catalog_0.catalog_manifest", "catalog_1.catalog", "catalog_1.catalog_manifest",
        "catalog_2.catalog", "catalog_2.catalog_manifest"]
    kept = [labels[0]] + labels[2:]
    tub = Tub(str(tmp_path / "tub"), read_only=True)
    try:
        records = list(tub)
    finally:
        tub.close()
    params = ControlParams.from_config(profile="car")
    assert len(records) == len(kept)
    for record, (x, y) in zip(records, kept, strict=True):
        assert record["user/angle"] == compute_command(x, y, params)[0]
        assert (tmp_path / "tub/images" / record["cam/image_array"]).is_file()
    assert [r["user/throttle"] for r in records[:2]] == [0.35, 0.35]  # recorded throttle kept, else the law's
    assert records[2]["user/throttle"] == compute_command(*kept[2], params)[1]
    import_dataset("donkeycar", tmp_path / "tub", tmp_path / "again")
    back = sorted((s.meta["source_index"], s.x, s.y) for s in _by_source(tmp_path / "again").values())
    assert [(x, y) for _, x, y in back] == kept


def test_donkeycar_export_without_donkeycar_reads_back_through_our_importer(tmp_path):
    root = tmp_path / "data"
    _dataset(root, [(0.5, 0.1), (-0.25, 0.2)])
    export_dataset("donkeycar", root, tmp_path / "tub")
    manifest = (tmp_path / "tub/manifest.json").read_text().splitlines()
    assert json.loads(manifest[4]) == {"paths": ["catalog_0.catalog"], "current_index": 2, "max_len": 1000,
                                       "deleted_indexes": []}
    import_dataset("donkeycar", tmp_path / "tub", tmp_path / "again")
    assert sorted((s.x, s.y) for s in read_dataset(tmp_path / "again")[0]) == [(-0.25, -0.12), (0.5, -0.12)]
    with pytest.raises(JetracerError, match="not an empty folder"):
        export_dataset("donkeycar", root, tmp_path / "tub")


def test_a_killed_donkeycar_export_leaves_no_half_tub(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _dataset(root, [(0.0, 0.0)] * 4)

    def killed(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_dataset("donkeycar", root, tmp_path / "tub", on_progress=killed)
    assert not (tmp_path / "tub").exists()
    assert export_dataset("donkeycar", root, tmp_path / "tub")["exported"] == 4  # the next run starts over
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tub")] == []


# --- CLI ---------------------------------------------------------------------------------------------------------


def test_cli_import_and_export_print_one_json_object_and_bad_input_exits_2(jetracer_folder, tmp_path, capsys,
                                                                            monkeypatch):
    from jetracer_trt.cli import main as main_module

    monkeypatch.setattr(main_module, "VERB_MODULES", ("data",))
    src, good = jetracer_folder
    assert main_module.main(["data", "import", "--format", "jetracer", str(src), str(tmp_path / "d"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["imported"] == len(good) and result["skipped"] == 6
    assert result["skipped_reasons"]["label outside the image"] == {
        "count": 1, "examples": ["apex/300_10_8c13-out-of-image.jpg"]}
    assert main_module.main(["data", "import", "--format", "jetracer", str(src), str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert f"imported 0 samples from {src} (jetracer)" in out and f"{len(good)} were already there" in out
    assert main_module.main(["data", "export", "--format", "jetracer", str(tmp_path / "d"), str(tmp_path / "jr"),
                             "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["exported"] == len(good)
    for argv in (["data", "import", "--format", "donkeycar", str(tmp_path / "nope"), str(tmp_path / "d")],
                 ["data", "import", "--format", "donkeycar", str(src), str(tmp_path / "d"), "--label-y", "3"]):
        assert main_module.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")


def test_every_export_honours_tombstones(tmp_path):
    root = tmp_path / "data"
    images = _dataset(root, [(0.1, 0.1), (0.2, 0.2), (0.3, 0.3)])
    with DatasetWriter(root) as writer:
        writer.remove(images[0])
    assert len(scan_dataset(root).removed) == 1
    assert export_dataset("jetracer", root, tmp_path / "jr")["exported"] == 2
    assert export_dataset("donkeycar", root, tmp_path / "tub")["exported"] == 2
