"""Synthetic people for pose training: articulated figures with human proportions whose keypoint labels say where
each joint is and whether it can be seen; seeded scenes; the crash-safe pose dataset format and its collection."""
import json
import math

import numpy as np
import pytest

from jetracer_trt.errors import JetracerError
from jetracer_trt.pose import load_topology
from jetracer_trt.pose import data as pose_data
from jetracer_trt.pose.figures import (
    HIP_HEIGHT,
    KEYPOINTS,
    UPPER_ARM,
    Look,
    Pose,
    keypoint_visibility,
    paint_figures,
    place_figure,
    sample_pose,
)

TOPOLOGY = load_topology()
LOOK = Look(skin=(200, 160, 130), hair=(40, 30, 20), shirt=(30, 120, 200), legs=(40, 40, 60), shoes=(20, 20, 20))
BACKGROUND = (255, 255, 255)


def painted(pose: Pose, height: float = 180.0, foot=(112.0, 215.0)):
    image = np.full((224, 224, 3), BACKGROUND, dtype=np.uint8)
    ids = np.zeros((224, 224), dtype=np.int32)
    figure = place_figure(pose, LOOK, foot, height)
    paint_figures(image, ids, [figure])
    return image, ids, figure


def rows(figure, ids):
    return dict(zip(KEYPOINTS, keypoint_visibility(figure, KEYPOINTS, ids, 0), strict=True))


def test_a_standing_person_has_human_proportions_and_faces_the_way_it_is_turned():
    _, ids, figure = painted(Pose())  # facing the camera
    kp = {name: np.array(figure.keypoints[name][:2]) for name in KEYPOINTS}
    height = 180.0
    assert kp["left_shoulder"][0] > kp["right_shoulder"][0]  # their left on the image's right
    assert 205 < kp["left_ankle"][1] < 212 and 205 < kp["right_ankle"][1] < 212  # ankles just above the floor
    assert kp["neck"][1] < kp["left_hip"][1] < kp["left_knee"][1] < kp["left_ankle"][1]
    hip_height = 215 - kp["left_hip"][1]
    assert abs(hip_height / height - HIP_HEIGHT) < 0.02
    assert abs(np.linalg.norm(kp["left_elbow"] - kp["left_shoulder"]) / height - UPPER_ARM) < 0.01
    np.testing.assert_allclose(kp["neck"], (kp["left_shoulder"] + kp["right_shoulder"]) / 2, atol=0.5)
    assert (rows(figure, ids)["nose"][2], rows(figure, ids)["left_eye"][2]) == (2, 2)
    _, ids, back = painted(Pose(yaw=math.pi))  # facing away: their left on the image's left, no face labelled
    assert back.keypoints["left_shoulder"][0] < back.keypoints["right_shoulder"][0]
    labels = rows(back, ids)
    assert labels["nose"][2] == labels["left_eye"][2] == labels["right_eye"][2] == 0
    assert labels["left_shoulder"][2] == labels["left_ankle"][2] == 2


def test_visible_keypoints_lie_on_their_own_painted_parts_and_hidden_ones_are_labelled_hidden():
    image, ids, figure = painted(Pose())
    labels = rows(figure, ids)
    for name, (x, y, v) in labels.items():
        if v == 2:
            assert tuple(image[int(y), int(x)]) != BACKGROUND, name
    assert sum(v == 2 for _, _, v in labels.values()) >= 16
    # something in front of the legs: the knees and ankles become hidden, the rest stays visible
    ids[150:] = np.iinfo(np.int32).max
    hidden = rows(figure, ids)
    assert hidden["left_knee"][2] == hidden["right_ankle"][2] == 1
    assert hidden["nose"][2] == hidden["left_shoulder"][2] == 2
    # in profile the far arm is behind the torso: hidden, not invisible
    _, ids, side = painted(Pose(yaw=math.pi / 2))  # facing the image's right: their left side is away
    profile = rows(side, ids)
    assert profile["left_shoulder"][2] == 1 and profile["right_shoulder"][2] == 2
    # a keypoint outside the frame is not labelled
    _, ids, cut = painted(Pose(), foot=(112.0, 300.0))
    assert rows(cut, ids)["left_ankle"][2] == 0


def test_every_pose_family_gives_a_whole_figure_inside_its_box():
    rng = np.random.default_rng(3)
    for family in ("stand", "walk", "run", "wave", "arms_up", "point", "hands_on_hips", "arms_out", "squat", "free"):
        figure = place_figure(sample_pose(rng, family), LOOK, (112, 200), 150)
        xy = np.array([figure.keypoints[name][:2] for name in KEYPOINTS])
        x0, y0, x1, y1 = figure.box
        assert np.isfinite(xy).all() and (xy[:, 0] >= x0).all() and (xy[:, 1] <= y1).all(), family
        assert 0.3 * 150 < max(x1 - x0, y1 - y0) < 1.2 * 150, family


def test_scenes_are_the_same_for_a_seed_and_differ_between_seeds():
    a, b, c = pose_data.render_scene(7), pose_data.render_scene(7), pose_data.render_scene(8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.keypoints, b.keypoints)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (224, 224, 3) and a.image.dtype == np.uint8
    assert a.keypoints.shape[1:] == (TOPOLOGY.num_keypoints, 3) and a.boxes.shape == (len(a.keypoints), 4)


def test_scenes_hold_several_people_some_hidden_or_cut_by_the_frame():
    scenes = [pose_data.render_scene(seed) for seed in range(60)]
    counts = [len(s.keypoints) for s in scenes]
    assert max(counts) >= 3 and min(counts) <= 1 and np.mean(counts) > 1.5
    v = np.concatenate([s.keypoints[:, :, 2].ravel() for s in scenes])
    assert {0, 1, 2} <= set(v.tolist())
    assert 0.4 < (v == 2).mean() < 0.95 and (v == 1).mean() > 0.03  # visible, hidden and unlabelled all occur
    for scene in scenes:  # every labelled keypoint lies in the frame
        labelled = scene.keypoints[scene.keypoints[:, :, 2] > 0]
        assert ((labelled[:, :2] >= 0) & (labelled[:, :2] < 224)).all()


def test_the_pose_dataset_round_trips_and_survives_a_torn_line(tmp_path):
    root = tmp_path / "poses"
    scenes = [pose_data.render_scene(seed) for seed in (1, 2, 3)]
    with pose_data.PoseDatasetWriter(root) as writer:
        names = [writer.append(scene) for scene in scenes]
    samples, skipped = pose_data.read_pose_dataset(root)
    assert skipped == 0 and [s.seed for s in samples] == [1, 2, 3]
    for sample, scene in zip(samples, scenes, strict=True):
        np.testing.assert_allclose(sample.keypoints, scene.keypoints, atol=0.006)
        np.testing.assert_allclose(sample.boxes, scene.boxes, atol=0.006)
    manifest = json.loads((root / pose_data.MANIFEST_NAME).read_text())
    assert manifest["format"] == pose_data.FORMAT_NAME and manifest["keypoints"] == list(TOPOLOGY.keypoints)
    (root / names[1]).unlink()  # an image gone
    with open(root / pose_data.INDEX_NAME, "ab") as index:
        index.write(b'{"image": "images/x.jpg", "people": [{"keyp')  # a crash in the middle of a line
    samples, skipped = pose_data.read_pose_dataset(root)
    assert [s.seed for s in samples] == [1, 3] and skipped == 2
    assert pose_data.next_seed(root) == 4


def test_bad_folders_and_held_out_seeds_are_refused(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(JetracerError, match="folder with other files"):
        pose_data.PoseDatasetWriter(tmp_path / "other")
    with pytest.raises(JetracerError, match="not a pose dataset"):
        pose_data.read_pose_dataset(tmp_path / "other")
    with pytest.raises(JetracerError, match="held out for evaluation"):
        pose_data.collect_pose(tmp_path / "poses", [5, pose_data.EVALUATION_SEEDS + 3])
    assert not (tmp_path / "poses").exists()


def test_collect_pose_records_the_scenes_of_its_seeds(tmp_path):
    root = tmp_path / "poses"
    seen = []
    assert pose_data.collect_pose(root, [10, 11], workers=1, on_progress=seen.append) == 2
    assert pose_data.collect_pose(root, [12], workers=1) == 1  # appends
    samples, _ = pose_data.read_pose_dataset(root)
    assert sorted(s.seed for s in samples) == [10, 11, 12] and sum(seen) == 2
    stored = next(s for s in samples if s.seed == 11)
    np.testing.assert_allclose(stored.keypoints, pose_data.render_scene(11).keypoints, atol=0.006)


def test_sim_collect_task_pose_records_scenes_after_the_last(tmp_path, capsys):
    from jetracer_trt.cli.main import main

    out = tmp_path / "poses"
    assert main(["sim", "collect", "--task", "pose", "--out", str(out), "--frames", "2"]) == 0
    assert main(["sim", "collect", "--task", "pose", "--out", str(out), "--frames", "1"]) == 0
    assert sorted(s.seed for s in pose_data.read_pose_dataset(out)[0]) == [0, 1, 2]
    assert "recorded 1 scenes (seeds 2..2)" in capsys.readouterr().out
    for extra, message in ((["--randomize"], "for road-following data"),
                           (["--seeds", "1000000-1000004"], "held out for evaluation"),
                           (["--seeds", "5-6"], "names 2 scenes, fewer than the 3 frames")):
        assert main(["sim", "collect", "--task", "pose", "--out", str(out), "--frames", "3", *extra]) == 2
        assert message in capsys.readouterr().err
