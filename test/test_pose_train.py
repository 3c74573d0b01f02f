"""Pose training: trt_pose's targets drawn from the labels (and parsed back to them), mirroring, PCK, the settings,
and a run that writes checkpoints carrying the pose contract, resumes, and keeps to a time budget."""
import argparse
import json
import math

import numpy as np
import pytest
import torch

from jetracer_trt.contract import POSE, read_contract
from jetracer_trt.errors import JetracerError
from jetracer_trt.pose import load_topology
from jetracer_trt.pose import train as pose_train
from jetracer_trt.pose.data import VALIDATION_SEEDS, pad_people, render_scene
from jetracer_trt.pose.evaluate import frame_correct, pck_of_maps
from jetracer_trt.pose.people import Keypoint, Person

TOPOLOGY = load_topology()
NAMES = TOPOLOGY.keypoints


def reference_maps(keypoints: np.ndarray, stdev: float, size: int = 56, image: int = 224):
    """trt_pose's generate_cmap and generate_paf (trt_pose/train/*.cpp) as plain loops over pixels and people."""
    c, k = TOPOLOGY.num_keypoints, TOPOLOGY.num_links
    cmap, paf = np.zeros((c, size, size)), np.zeros((2 * k, size, size))
    scale = size / image
    for person in keypoints:
        for j in range(c):
            x, y, v = person[j]
            if v > 0:
                for i in range(size):
                    for jj in range(size):
                        d2 = (y * scale - (i + 0.5)) ** 2 + (x * scale - (jj + 0.5)) ** 2
                        cmap[j, i, jj] = max(cmap[j, i, jj], math.exp(-d2 / stdev ** 2))
        for link, (a, b) in enumerate(TOPOLOGY.skeleton):
            if person[a, 2] <= 0 or person[b, 2] <= 0:
                continue
            pa, pb = person[a, 1::-1] * scale, person[b, 1::-1] * scale  # (row, column)
            ab = pb - pa
            length = math.hypot(*ab) + 1e-5
            u = ab / length
            for i in range(size):
                for jj in range(size):
                    ac = np.array([i + 0.5, jj + 0.5]) - pa
                    dot = ac @ u
                    tan = dot if dot < 0 else dot - length if dot > length else 0.0
                    cross = ac[0] * u[1] - ac[1] * u[0]
                    s = math.exp(-(tan ** 2 + cross ** 2) / stdev ** 2)
                    paf[2 * link, i, jj] += s * u[0]
                    paf[2 * link + 1, i, jj] += s * u[1]
    return cmap, paf


def test_targets_are_trt_pose_confidence_maps_and_part_affinity_fields():
    scene = render_scene(1000003)
    people = scene.keypoints[:2]
    cmap, paf = pose_train.make_targets(torch.from_numpy(pad_people(people))[None], TOPOLOGY, (56, 56), (224, 224),
                                        1.5, 1.5)
    expected_cmap, expected_paf = reference_maps(people, 1.5)
    np.testing.assert_allclose(cmap[0].numpy(), expected_cmap, atol=1e-5)
    np.testing.assert_allclose(paf[0].numpy(), expected_paf, atol=1e-4)
    assert cmap.shape == (1, 18, 56, 56) and paf.shape == (1, 42, 56, 56)


def test_maps_drawn_from_the_labels_parse_back_to_them():
    scenes = [render_scene(seed) for seed in range(VALIDATION_SEEDS, VALIDATION_SEEDS + 40)]
    keypoints = torch.from_numpy(np.stack([pad_people(s.keypoints) for s in scenes]))
    cmap, paf = pose_train.make_targets(keypoints, TOPOLOGY, (56, 56), (224, 224), 2.0, 1.5)
    result = pck_of_maps(cmap.numpy(), paf.numpy(), [(s.keypoints, s.boxes) for s in scenes], TOPOLOGY, (224, 224))
    assert result.pck > 0.93 and result.people > 40


def test_mirroring_swaps_left_and_right_and_twice_is_nothing():
    flip = pose_train.mirror_index(TOPOLOGY)
    assert NAMES[flip[NAMES.index("left_wrist")]] == "right_wrist" and flip[NAMES.index("neck")] == NAMES.index("neck")
    scene = render_scene(5)
    images = torch.from_numpy(scene.image)[None]
    keypoints = torch.from_numpy(pad_people(scene.keypoints))[None]
    mirrored_images, mirrored = pose_train.mirror_batch(images, keypoints, flip)
    assert torch.equal(mirrored_images[0], images[0].flip(1))
    person = scene.keypoints[0]
    left, right = NAMES.index("left_shoulder"), NAMES.index("right_shoulder")
    assert mirrored[0, 0, left, 0] == pytest.approx(224 - person[right, 0])
    assert mirrored[0, 0, left, 2] == person[right, 2]
    back_images, back = pose_train.mirror_batch(mirrored_images, mirrored, flip)
    assert torch.equal(back_images, images) and torch.allclose(back, keypoints)


def person(points: dict) -> Person:
    return Person({name: Keypoint(x, y, 1.0) for name, (x, y) in points.items()})


def test_pck_matches_people_and_counts_visible_keypoints_within_a_tenth_of_the_box():
    labels = np.zeros((2, len(NAMES), 3), dtype=np.float32)
    labels[0, NAMES.index("nose")] = (50, 50, 2)
    labels[0, NAMES.index("neck")] = (50, 70, 2)
    labels[0, NAMES.index("left_ankle")] = (60, 150, 1)  # hidden: not scored
    labels[1, NAMES.index("nose")] = (150, 50, 2)
    boxes = np.array([[40, 40, 60, 150], [140, 40, 160, 150]], dtype=np.float32)  # 110 tall: within 11 px
    found = [person({"nose": (152, 55), "neck": (160, 90)}),  # the second person, found first
             person({"nose": (55, 58), "neck": (40, 72)})]
    correct, visible = frame_correct(found, labels, boxes, NAMES)
    assert visible.sum() == 3
    assert correct[0, NAMES.index("nose")] and correct[0, NAMES.index("neck")] and correct[1, NAMES.index("nose")]
    far = [person({"nose": (50, 62)})]  # 12 px away: wrong; and nobody for the second person
    correct, _ = frame_correct(far, labels, boxes, NAMES)
    assert not correct.any()


def test_settings_are_checked():
    with pytest.raises(JetracerError, match="epochs must be an integer >= 1"):
        pose_train.resolve_settings({"epochs": 0})
    with pytest.raises(JetracerError, match="unknown pose training setting"):
        pose_train.resolve_settings({"val_fraction": 0.1})
    with pytest.raises(JetracerError, match="mirror must be true or false"):
        pose_train.resolve_settings({"mirror": "yes"})
    assert pose_train.resolve_settings({"lr": 3e-4})["lr"] == 3e-4


def small(**changes) -> dict:
    return {"epochs": 1, "scenes_per_epoch": 2, "batch_size": 2, "val_scenes": 2, "workers": 0, "weights": "none",
            **changes}


def test_a_run_writes_pose_checkpoints_and_resumes(tmp_path):
    run = tmp_path / "run"
    result = pose_train.train_pose(["synthetic"], run, overrides=small(), device="cpu", progress=False)
    assert result.best_path is not None and result.global_step == 2  # one batch, then mirrored
    contract = read_contract(result.best_path)
    assert contract.task == POSE and contract.outputs == ("cmap", "paf")
    assert dict(contract.output_shapes) == {"cmap": (18, 56, 56), "paf": (42, 56, 56)}
    assert contract.pose_topology().keypoints == NAMES and list(contract.mean) == [0.485, 0.456, 0.406]
    best = torch.load(result.best_path, weights_only=True)
    assert best["state_dict"]["1.cmap_conv.weight"].dtype == torch.float16 and best["kind"] == "best"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"val_pck", "val_loss", "train_cmap_loss", "train_paf_loss"} <= set(rows[0])
    resumed = pose_train.train_pose(None, run, overrides={"epochs": 2}, resume=True, device="cpu", progress=False)
    assert resumed.epochs_done == 2 and resumed.global_step == 4


def test_arch_trains_the_small_network_and_resume_and_init_keep_the_file_s_own(tmp_path):
    from jetracer_trt.pose.network import SMALL_VARIANT

    run = tmp_path / "run"
    result = pose_train.train_pose(["synthetic"], run, overrides=small(arch=SMALL_VARIANT), device="cpu",
                                   progress=False)
    for name in ("best.pt", "last.pt"):
        data = torch.load(run / name, weights_only=True)
        assert data["architecture"] == SMALL_VARIANT and data["train_config"]["arch"] == SMALL_VARIANT
        assert "0.layer2.1.conv2.weight" in data["state_dict"]
    resumed = pose_train.train_pose(None, run, overrides={"epochs": 2}, resume=True, device="cpu", progress=False)
    assert resumed.epochs_done == 2
    assert torch.load(run / "last.pt", weights_only=True)["architecture"] == SMALL_VARIANT
    tuned = pose_train.train_pose(["synthetic"], tmp_path / "tuned", overrides=small(val_scenes=0), device="cpu",
                                  init=str(result.best_path), progress=False)  # no --arch: the file's network
    assert torch.load(tuned.best_path, weights_only=True)["architecture"] == SMALL_VARIANT
    with pytest.raises(JetracerError, match="holds a pose_small_resnet18_l2, not a resnet18_baseline_att"):
        pose_train.train_pose(["synthetic"], tmp_path / "bad", overrides=small(arch="resnet18_baseline_att"),
                              device="cpu", init=str(result.best_path), progress=False)


def test_a_time_budget_ends_the_run_with_the_learning_rate_annealed(tmp_path):
    result = pose_train.train_pose(["synthetic"], tmp_path / "run", device="cpu", progress=False,
                                   overrides=small(epochs=1000, val_scenes=0, minutes=0.1, lr=1e-3))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result.epochs_done < 1000 and rows[-1]["lr"] < 0.2 * 1e-3  # by steps it would still be warming up


def test_pose_data_folders_train_too_and_bad_data_is_refused(tmp_path):
    from jetracer_trt.pose.data import collect_pose

    collect_pose(tmp_path / "poses", [1, 2, 3, 4])
    result = pose_train.train_pose([str(tmp_path / "poses")], tmp_path / "run", device="cpu", progress=False,
                                   overrides=small(val_scenes=0, mirror=False))
    assert result.global_step == 2 and result.best_path is not None
    with pytest.raises(JetracerError, match="either synthetic or pose dataset folders"):
        pose_train.train_pose(["synthetic", str(tmp_path / "poses")], tmp_path / "run2", overrides=small())
    with pytest.raises(JetracerError, match="--data synthetic"):
        pose_train.train_pose([], tmp_path / "run3", overrides=small())


def test_run_cli_trains_in_one_process_only(monkeypatch, tmp_path):
    args = argparse.Namespace(data=["synthetic"], out=str(tmp_path / "run"), resume=False, device="cpu",
                              max_steps=None, init=None, epochs=None, batch_size=None, lr=None, weight_decay=None,
                              seed=None, workers=None, weights=None, no_export=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(JetracerError, match="one process"):
        pose_train.run_cli(args)


def test_arch_is_refused_for_road_following_in_one_line(tmp_path, capsys):
    from jetracer_trt.cli import train as train_cli

    assert train_cli.main(["--arch", "pose_small_resnet18_l2", "--data", str(tmp_path), "--out",
                           str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == ("error: --arch picks a pose network (--task pose); road following "
                                               "trains its ResNet18")
