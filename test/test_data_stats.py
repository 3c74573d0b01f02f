"""``data stats``: counts per source and session, label histograms and a contact sheet, honouring tombstones."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from jetracer_trt.data_stats import (
    TILE_PX,
    dataset_stats,
    draw_tile,
    pick_sheet_samples,
    sample_origin,
    sample_session,
    write_contact_sheet,
    write_stats_pictures,
)
from jetracer_trt.dataset import DatasetWriter, Sample, scan_dataset
from jetracer_trt.errors import JetracerError

RED, BLUE = (255, 0, 0), (0, 0, 255)  # RGB


def _frame(color) -> np.ndarray:
    return np.full((48, 64, 3), color, np.uint8)


@pytest.fixture
def mixed(tmp_path):
    """Sim samples, two recorded sessions (one gone bad: red frames), imported ones, a removed one, a corrupt line."""
    root = tmp_path / "data"
    with DatasetWriter(root) as writer:
        for i in range(6):
            writer.append(_frame(BLUE), -0.5 + i * 0.2, -0.1, track_seed=3, frame=i)
        for _ in range(3):
            writer.append(_frame(BLUE), 0.3, -0.12, source="teleop", session="monday", steering=0.3)
        for _ in range(2):
            writer.append(_frame(RED), 0.95, 0.9, source="teleop", session="tuesday", steering=0.95)
        imported = writer.append(_frame(BLUE), -0.9, 0.5, source_format="donkeycar", source_name="tub-1/0",
                                 session="tub_1/24-01-31_0")
        writer.append(_frame(BLUE), 0.0, 0.0, source_format="donkeycar", source_name="tub-1/1",
                      session="tub_1/24-01-31_0")
        writer.remove(imported)
    with open(root / "index.jsonl", "ab") as f:
        f.write(b'{"image": "images/never_written.jpg", "x": 0.1, "y": 0.1}\n')
    return root


def test_stats_count_sources_sessions_corrupt_and_removed(mixed):
    stats = dataset_stats(mixed, scan_dataset(mixed), bins=4)
    assert (stats["samples"], stats["corrupt"], stats["removed"]) == (12, 1, 1)
    assert stats["sources"] == {"sim": 6, "teleop": 5, "donkeycar": 1}
    assert stats["sessions"] == {"sim": {"samples": 6, "removed": 0}, "monday": {"samples": 3, "removed": 0},
                                 "tuesday": {"samples": 2, "removed": 0},
                                 "tub_1/24-01-31_0": {"samples": 1, "removed": 1}}
    assert stats["x"]["histogram"] == {"edges": [-1.0, -0.5, 0.0, 0.5, 1.0], "counts": [0, 3, 6, 3]}
    assert stats["y"]["histogram"]["counts"] == [0, 9, 1, 2] and sum(stats["y"]["histogram"]["counts"]) == 12
    assert (stats["x"]["min"], stats["x"]["max"]) == (-0.5, 0.95)
    assert stats["y"]["mean"] == pytest.approx((6 * -0.1 + 3 * -0.12 + 2 * 0.9 + 0.0) / 12, abs=1e-6)
    json.dumps(stats)  # plain JSON types only


def test_origin_and_session_of_every_kind_of_sample():
    assert sample_origin({"source_format": "jetracer", "source": "click"}) == "jetracer"
    assert sample_origin({"source": "autopilot"}) == "autopilot"
    assert sample_origin({"track_seed": 4}) == "sim" and sample_origin({}) == "unknown"
    assert sample_session({"session": "s1", "track_seed": 4}) == "s1"
    assert sample_session({"session": "", "source": "click"}) == "click"


def test_an_empty_dataset_has_stats_and_pictures(tmp_path):
    with DatasetWriter(tmp_path / "data"):
        pass
    scan = scan_dataset(tmp_path / "data")
    stats = dataset_stats(tmp_path / "data", scan)
    assert stats["samples"] == 0 and stats["x"]["min"] is None and sum(stats["x"]["histogram"]["counts"]) == 0
    pictures = write_stats_pictures(tmp_path / "data", scan, tmp_path / "out")
    assert all(Path(p).is_file() for p in pictures.values())


def test_stats_pictures_are_pngs_and_the_sheet_shows_every_session(mixed, tmp_path):
    scan = scan_dataset(mixed)
    pictures = write_stats_pictures(mixed, scan, tmp_path / "out")
    assert set(pictures) == {"labels", "contact_sheet"}
    for path in pictures.values():
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = cv2.imread(pictures["labels"])
    assert labels.shape[0] > 200 and labels.shape[1] > 600
    sheet = cv2.imread(pictures["contact_sheet"])
    assert sheet.shape[1] == 8 * TILE_PX and sheet.shape[0] == 22 + 2 * TILE_PX  # 12 samples: two rows of eight
    assert not list((tmp_path / "out").glob(".*"))  # written atomically: no temporary file left


def test_the_contact_sheet_gives_a_small_session_a_place_and_never_shows_removed_samples(tmp_path):
    samples = [Sample(Path(f"/x/{i}.jpg"), 0.0, 0.0, {"session": "long"}) for i in range(1000)]
    samples[500:502] = [Sample(Path(f"/x/bad{i}.jpg"), 0.0, 0.0, {"session": "bad"}) for i in range(2)]
    picked = pick_sheet_samples(samples, 64)
    assert len(picked) == 64 and sum(s.meta["session"] == "bad" for s in picked) >= 1
    assert len({s.image_path for s in picked}) == 64
    assert pick_sheet_samples(samples[:10], 64) == samples[:10]
    root = tmp_path / "data"
    with DatasetWriter(root) as writer:
        kept = writer.append(_frame(BLUE), 0.0, 0.0, session="a")
        writer.remove(writer.append(_frame(RED), 0.0, 0.0, session="b"))
    assert [s.image_path.name for s in pick_sheet_samples(scan_dataset(root).samples, 64)] == [Path(kept).name]


def test_a_tile_draws_the_target_and_survives_an_unreadable_image(tmp_path):
    root = tmp_path / "data"
    with DatasetWriter(root) as writer:
        writer.append(np.full((224, 224, 3), 60, np.uint8), 1.0, 1.0, session="s")
    (sample,) = scan_dataset(root).samples
    tile = draw_tile(sample, 128)
    assert tile.shape == (128, 128, 3)
    near_corner = tile[120:, 120:]  # the target dot, in the bottom-right corner (x = y = 1)
    assert (near_corner[..., 1] > 200).any()
    sample.image_path.write_bytes(b"\xff\xd8\xff not a picture")
    broken = draw_tile(sample, 128)
    assert broken[1, 64, 2] > 150  # red border
    write_contact_sheet([sample], tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").is_file()


def test_bad_bins_is_an_error(mixed):
    with pytest.raises(JetracerError, match="--bins"):
        dataset_stats(mixed, scan_dataset(mixed), bins=0)


def test_cli_stats_json_is_one_object_and_out_writes_pictures_and_stats_json(mixed, tmp_path, capsys, monkeypatch):
    from jetracer_trt.cli import main as main_module

    monkeypatch.setattr(main_module, "VERB_MODULES", ("data",))
    assert main_module.main(["data", "stats", str(mixed), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["samples"] == 12 and "pictures" not in stats
    assert main_module.main(["data", "stats", str(mixed), "--out", str(tmp_path / "st")]) == 0
    out = capsys.readouterr().out
    assert "12 samples (1 corrupt entries, 1 removed)" in out and "sources: sim 6, teleop 5, donkeycar 1" in out
    saved = json.loads((tmp_path / "st/stats.json").read_text())
    assert saved["pictures"]["contact_sheet"].endswith("contact_sheet.png") and saved["samples"] == 12
    assert main_module.main(["data", "stats", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "does not exist" in err[0]
