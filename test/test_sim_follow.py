"""The simulator's walking person and the closed follow-me loop: frame -> people -> FollowMe -> governor -> car."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jetracer_trt.config import load_config
from jetracer_trt.errors import JetracerError
from jetracer_trt.follow import FollowMe
from jetracer_trt.pose.estimator import PoseEstimator
from jetracer_trt.pose.topology import load_topology
from jetracer_trt.safety import SafetyGovernor
from jetracer_trt.sim import SimWorld, follow
from jetracer_trt.sim.walker import OracleEngine, WalkerSettings

MODEL = Path(__file__).resolve().parent.parent / "models" / "pose_resnet18_att.onnx"
KEYPOINTS = load_topology().keypoints
ANKLES = [KEYPOINTS.index("left_ankle"), KEYPOINTS.index("right_ankle")]
SHOULDERS = [KEYPOINTS.index("left_shoulder"), KEYPOINTS.index("right_shoulder")]
HIPS = [KEYPOINTS.index("left_hip"), KEYPOINTS.index("right_hip")]


def walker(**changes) -> WalkerSettings:
    return WalkerSettings.from_config(**changes)


def straight_start(world: SimWorld) -> None:
    """Puts the car on the road facing the walker, so the walker stands straight ahead of it."""
    wx, wy = world.walker.position()
    s = world.car.state
    s.yaw = math.atan2(wy - s.y, wx - s.x)


@pytest.mark.parametrize("ahead", [2.0, 3.0, 4.5])
def test_the_figure_stands_where_the_walker_projects(ahead):
    world = SimWorld(1001, walker=walker(start_ahead_m=ahead))
    straight_start(world)
    plain = SimWorld(1001)
    plain.car.state = world.car.state
    frame, background = world.observe().copy(), plain.observe().copy()
    camera = world.renderer.camera
    x, y = world.walker.in_car_frame(world.car.state.x, world.car.state.y, world.car.state.yaw)
    (u_foot, v_foot), (_, v_head) = camera.project(np.array([[x, y, 0.0], [x, y, 1.70]]))
    kp = world.walker_keypoints
    assert world.walker_in_view
    ankles = kp[ANKLES]
    assert (ankles[:, 2] > 0).all()
    # the feet on the foot point, within a few pixels (the ankles are a little above the floor, the stride apart)
    assert abs(ankles[:, 0].mean() - u_foot) < 4
    assert 0 < v_foot - ankles[:, 1].mean() < 0.08 * (v_foot - v_head) + 1
    # painted: the frame changed at the hips, not at the far side of the frame
    hip_u, hip_v = (int(c) for c in kp[HIPS, :2].mean(axis=0))
    assert np.abs(frame[hip_v, hip_u].astype(int) - background[hip_v, hip_u]).sum() > 20
    far_u = int(u_foot + camera.width / 2) % camera.width
    np.testing.assert_array_equal(frame[:, far_u], background[:, far_u])
    assert abs(world.walker_distance() - math.hypot(x - camera.forward_m, y)) < 1e-9


def test_the_figure_shrinks_with_distance_and_is_skipped_out_of_view():
    heights = []
    for ahead in (1.5, 2.5, 4.0):
        world = SimWorld(1001, walker=walker(start_ahead_m=ahead))
        straight_start(world)
        world.observe()
        kp = world.walker_keypoints
        heights.append(kp[ANKLES, 1].mean() - kp[HIPS, 1].mean())
    assert heights[0] > heights[1] > heights[2] > 5
    world = SimWorld(1001, walker=walker(start_ahead_m=2.0))
    straight_start(world)
    world.car.state.yaw += math.pi  # the walker behind the car
    frame = world.observe().copy()
    plain = SimWorld(1001)
    plain.car.state = world.car.state
    assert not world.walker_in_view and not world.walker_keypoints[:, 2].any()
    np.testing.assert_array_equal(frame, plain.observe())


def test_a_world_whose_walker_is_out_of_view_renders_the_plain_worlds_frames():
    """The walker draws nothing from the world's own random stream: with the walker behind the car, a randomized
    run gives exactly the frames and labels it gives without one."""
    plain = SimWorld(3, randomize=True, run_seed=1)
    walked = SimWorld(3, randomize=True, run_seed=1, walker=walker(start_ahead_m=2.0))
    for world in (plain, walked):
        world.car.state.yaw += math.pi
    for _ in range(5):
        a, b = plain.observe().copy(), walked.observe()
        assert not walked.walker_in_view
        np.testing.assert_array_equal(a, b)
        assert plain.label() == walked.label()
        plain.step(0.0, 0.0)
        walked.step(0.0, 0.0)


def test_the_walk_changes_speed_pauses_and_swings_the_legs_from_its_seed():
    def walk(seed):
        world = SimWorld(1001, walker=walker(seed=seed, pause_probability=0.5))
        speeds, ankles = [], []
        for _ in range(int(40 * world.rate_hz)):
            world.walker.step(1.0 / world.rate_hz)
            speeds.append(world.walker.speed)
        straight_start(world)
        for _ in range(10):
            world.walker.step(1.0 / world.rate_hz)
            world.walker.speed = max(world.walker.speed, 0.8)
            world.observe()
            ankles.append(world.walker_keypoints[ANKLES, 0].copy())
        return np.array(speeds), np.array(ankles)

    speeds, ankles = walk(1)
    again, _ = walk(1)
    other, _ = walk(2)
    np.testing.assert_array_equal(speeds, again)
    assert not np.array_equal(speeds, other)
    assert (speeds == 0).any() and speeds.max() > 0.5  # pauses and walks
    assert len(np.unique(np.round(speeds[speeds > 0.3], 2))) > 3  # at several speeds
    assert np.ptp(ankles[:, 0] - ankles[:, 1]) > 1.0  # the feet move against each other: a gait


@pytest.mark.parametrize("changes, message", [
    ({"speed_mps": 9}, "speed_mps must be in"), ({"pause_s": [3, 1]}, "pause_s"), ({"seed": -1}, "seed"),
    ({"speed": 1}, "unknown ['speed']"), ({"height_m": "tall"}, "invalid walker settings"),
])
def test_bad_walker_settings_are_refused_naming_the_setting(changes, message):
    with pytest.raises(JetracerError) as err:
        walker(**changes)
    assert message in str(err.value)


def follow_run(seconds, seed=0, governor=None, follow_me=None, **world_options):
    world = SimWorld(1001, walker=walker(seed=seed), **world_options)
    people = PoseEstimator(OracleEngine(world)).people
    return follow(world, people, follow_me or FollowMe(), governor or
                  SafetyGovernor.from_config("sim"), seconds)


def test_the_oracle_loop_follows_the_walker_without_losing_or_hitting_them():
    m = follow_run(15.0, seed=1)
    assert m["following_s"] == pytest.approx(15.0) and m["lost_s"] == 0 and m["lost_events"] == 0
    assert m["collisions"] == 0 and m["walker_distance_min_m"] > 1.2
    assert m["walker_distance_max_m"] < 3.0 and m["walker_lead_mean_m"] < 3.5  # kept up, not left behind
    assert m["walker_walked_m"] > 8 and m["distance_driven_m"] > 0.8 * m["walker_walked_m"]  # the car moved
    assert m["target_x_error_mean"] < 0.02  # the parser found the person where they are drawn


class RecordingGovernor(SafetyGovernor):
    """The sim profile's governor, keeping every command it sent."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent = []

    def update(self, now):
        self.sent.append(super().update(now))
        return self.sent[-1]


def test_the_oracle_loop_keeps_a_walker_who_turns_a_corner_near_the_car_and_settles_behind_them():
    """Walker seed 0 turns a corner about 1.5 m ahead of the car, off to its side, with their upper body out of the
    frame: the car must creep round towards them (a stopped car cannot turn; their legs say how near they are),
    and while following it slows down and speeds up with them instead of going and stopping."""
    governor = RecordingGovernor.from_config("sim")
    m = follow_run(30.0, seed=0, governor=governor)
    assert m["following_s"] == pytest.approx(30.0) and m["lost_s"] == 0 and m["lost_events"] == 0
    assert m["collisions"] == 0 and m["walker_distance_min_m"] > 1.0 and m["walker_distance_max_m"] < 3.0
    throttles = np.array([t for _, t in governor.sent])
    moving = throttles > 0
    stops = int((moving[:-1] & ~moving[1:]).sum())  # moving -> standing
    slow = ((throttles > 0) & (throttles < governor.params.min_throttle)).mean()
    assert stops <= 3 and slow > 0.3  # speeds below the curve floor: the pace is smooth, not 0 or >= 0.30


class ScaleBlindGovernor(SafetyGovernor):
    """A governor that drops the follow target's throttle scale, as one that predates it would."""

    def on_target(self, x, y, captured_at, now=None, throttle_scale=1.0):
        return super().on_target(x, y, captured_at, now)


def test_a_governor_that_ignores_the_throttle_scale_runs_into_the_walker():
    blind = ScaleBlindGovernor.from_config("sim")
    m = follow_run(10.0, seed=1, governor=blind)
    assert m["collisions"] >= 1 and m["walker_distance_min_m"] < 0.35


@pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL.name} is not here (gitignored, 41.6 MB: "
                    "models/POSE_MODEL_CARD.md makes it); the oracle loop covers the rest of the chain")
def test_the_pose_model_follows_the_walker():
    from jetracer_trt.contract import POSE
    from jetracer_trt.engines import create_engine

    cfg = load_config("sim")
    cfg["rate_hz"] = 10  # the model takes 140-220 ms a frame on a CPU: fewer frames, same simulated seconds
    world = SimWorld(1001, cfg=cfg, walker=walker(seed=1))
    estimator = PoseEstimator(create_engine("onnxruntime", str(MODEL), task=POSE))
    m = follow(world, estimator.people, FollowMe(), SafetyGovernor.from_config("sim"), 6.0)
    assert m["following_s"] >= 5.0 and m["collisions"] == 0
    assert m["walker_distance_min_m"] > 1.0 and m["distance_driven_m"] > 2.0
    assert m["target_x_error_mean"] < 0.15


def run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "jetracer_trt.cli.main", *argv], capture_output=True, text=True,
                          timeout=300)


def test_sim_follow_json_is_one_object_with_the_follow_metrics():
    result = run_cli("sim", "follow", "--oracle", "--seconds", "2", "--seed", "3", "--set", "walker.speed_mps=0.6",
                     "--set", "stop_size=0.13", "--set", "throttle=0.5", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["frames"] == 60 and data["following_s"] == pytest.approx(2.0)
    assert data["walker"]["seed"] == 3 and data["walker"]["speed_mps"] == 0.6
    assert data["follow"]["stop_size"] == 0.13 and data["control"]["throttle"] == 0.5
    for key in ("lost_s", "collisions", "walker_distance_min_m", "walker_distance_mean_m", "walker_lead_mean_m"):
        assert key in data


@pytest.mark.parametrize("argv, message", [
    (["--seconds", "0"], "--seconds must be a positive number"),
    (["--set", "walker.speed=1"], "unknown ['speed']"),
    (["--set", "stop_size=0.01"], "stop_size (0.01) must be larger than far_size"),
    (["--model", "{tmp}/none.onnx"], "none.onnx"),
])
def test_sim_follow_bad_input_is_one_clear_line(tmp_path, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    result = run_cli("sim", "follow", *(argv if "--model" in argv else ["--oracle", *argv]))
    assert result.returncode == 2
    err = result.stderr.strip().splitlines()
    assert err and err[-1].startswith("error: ") and message in err[-1] and "Traceback" not in result.stderr


def test_the_sim_node_draws_the_walker_and_reports_its_distance():
    pytest.importorskip("rclpy")
    from in_process_node import node_maker

    from jetracer_trt.nodes.sim_node import SimNode

    with node_maker(SimNode, lockstep=True) as make:
        node = make(walker=True, walker_seed=2, walker_start_m=2.0)
        assert node.world.walker is not None and node.world.walker.settings.seed == 2
        assert node.world.walker_in_view  # the first frame was published with the person in it
        sent = []
        node.diag_pub.publish = sent.append
        node.report()
        values = {kv.key: kv.value for kv in sent[-1].status[0].values}
        assert 1.5 < float(values["walker_distance_m"]) < 2.5
        assert {"collisions", "walker_out_of_view_s", "walker_lead_mean_m"} <= set(values)
    with node_maker(SimNode, lockstep=True) as make:
        assert make().world.walker is None
