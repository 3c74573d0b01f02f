"""The drive graph's description and the pip runner's pieces, without starting a node: graph defaults per source,
the parameter precedence on the command line, the params-file reader, the last resort's decision and the summary
text. The runner with real processes is in test_ros_graph.py."""
import pytest

from jetracer_trt.errors import JetracerError
from jetracer_trt.graph import drive_graph, params_file_values
from jetracer_trt.launcher import LastResort, ros_arguments
from jetracer_trt.safety import SafetyLimits


def by_name(specs):
    return {s.name: s for s in specs}


@pytest.mark.parametrize("source, actuator", [("csi", "pca9685"), ("v4l2", "pca9685"), ("video", "none"),
                                              ("folder", "none"), ("sim", "sim")])
def test_each_source_drives_its_default_actuator(source, actuator):
    control = by_name(drive_graph(source=source))["control"]
    assert control.effective_parameters()["actuator"] == actuator
    assert "actuator" in control.defaults  # not given: a params file may choose another


@pytest.mark.parametrize("source, profile, armed", [("sim", "sim", True), ("csi", "car", False),
                                                    ("video", "car", False)])
def test_the_simulator_arms_itself_with_its_own_profile_and_a_car_starts_disarmed(source, profile, armed):
    control = by_name(drive_graph(source=source))["control"].effective_parameters()
    assert (control["profile"], control["armed_at_start"]) == (profile, armed)


def test_given_arguments_override_the_params_file_and_defaults_do_not():
    sim, inference, control = drive_graph(track_seed="1001", check="true", actuator="none")
    assert sim.parameters == {"track_seed": 1001}  # given, even equal to its default
    assert sim.defaults == {"randomize": False, "lockstep": False, "plot": ""}
    assert inference.parameters == {} and inference.defaults["backend"] == "auto"
    assert control.parameters == {"check": True, "actuator": "none"}
    assert control.effective_parameters({"actuator": "pca9685", "steering_gain": 0.7}) == {
        **control.defaults, "steering_gain": 0.7, "check": True, "actuator": "none"}


def test_the_command_line_puts_defaults_before_the_params_file_and_given_values_after_it():
    sim = drive_graph(track_seed=1005, plot="runs/1.png")[0]
    args = ros_arguments(sim, "car.yaml")
    file_at = args.index("--params-file")
    assert args[file_at + 1] == "car.yaml"
    before, after = args[:file_at], args[file_at + 2:]
    assert "randomize:=false" in before and "lockstep:=false" in before
    # given values go to the node's own section, which rcl applies after every section of the file
    assert after == ["-p", "sim:track_seed:=1005", "-p", "sim:plot:='runs/1.png'"]


def test_strings_stay_strings_on_the_command_line():
    inference = drive_graph(model="1.onnx", backend="it's")[1]
    assert ros_arguments(inference)[-4:] == ["-p", "inference:model:='1.onnx'", "-p", "inference:backend:='it''s'"]


def test_params_file_sections_apply_to_the_nodes_they_name(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    a: 1\n    b: 1\n"
                    "control:\n  ros__parameters:\n    b: 2\n    gains: {steering: 0.5}\n"
                    "/sim:\n  ros__parameters:\n    a: 3\n")
    assert params_file_values(path, "control") == {"a": 1, "b": 2, "gains.steering": 0.5}
    assert params_file_values(path, "sim") == {"a": 3, "b": 1}
    assert params_file_values("", "sim") == {}


@pytest.mark.parametrize("content, message", [(None, "not found"), ("a: [1\n", "cannot read"),
                                              ("- 1\n", "expected")])
def test_a_bad_params_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "p.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(JetracerError, match=message):
        params_file_values(path, "control")


def test_launch_drive_refuses_a_missing_params_file_before_starting_anything(capsys):
    from jetracer_trt.cli.main import main

    assert main(["launch", "drive", "--params-file", "/nonexistent/car.yaml"]) == 2
    assert capsys.readouterr().err.strip() == "error: params file /nonexistent/car.yaml not found"


def record_neutral_writes(monkeypatch) -> list:
    """Stands in for the last resort's board write (``actuators.neutral.write_neutral``): records (kind,
    calibration) and reports success. Shared by the runner and launch file tests."""
    import jetracer_trt.actuators.neutral as neutral

    calls = []
    monkeypatch.setattr(neutral, "write_neutral", lambda kind, calibration=None: calls.append((kind, calibration))
                        or True)
    return calls


class Exited:
    def __init__(self, returncode):
        self.returncode = returncode

    def poll(self):
        return self.returncode


@pytest.mark.parametrize("returncode, writes", [(None, False), (0, False), (2, True), (-9, True)])
def test_the_last_resort_sets_neutral_once_when_the_control_node_ended_without_its_own(monkeypatch, tmp_path,
                                                                                       returncode, writes):
    calls = record_neutral_writes(monkeypatch)
    params = tmp_path / "car.yaml"
    params.write_text("control:\n  ros__parameters:\n    calibration_file: /home/jetson/car.yaml\n")
    last_resort = LastResort(drive_graph(source="csi"), str(params))
    for _ in range(2):  # checked on every loop of the runner: it writes once
        last_resort.check({"control": Exited(returncode)})
    assert calls == ([("pca9685", "/home/jetson/car.yaml")] if writes else [])
    assert (last_resort.done and last_resort.landed) == writes


def summary(**changes):
    base = {"frames": 10, "e2e_latency_ms": {"p50": 12.0, "p99": 20.0}, "dropped_frames": 1, "laps_completed": None,
            "off_track_events": None, "stopped_because": "SIGINT", "neutral_by_supervisor": False,
            "stages_ms": {"model": {"p50": 9.0, "p99": 11.0}, "control": {"p50": None, "p99": None}},
            "overhead_ms": {"p50": 2.5, "p99": 8.0}}
    return {**base, **changes}


def test_the_summary_text_says_when_dropped_frames_were_not_counted():
    from jetracer_trt.cli.launch import summary_text

    text = summary_text(summary(dropped_frames=None))
    assert "None" not in text and "dropped frames not counted" in text
    assert "1 dropped" in summary_text(summary())
    assert "model 9.0/11.0" in text and "control -" in text and "overhead 2.5/8.0" in text


def test_the_monitor_reports_a_stage_without_samples_as_not_measured():
    from jetracer_trt.launcher import Monitor

    monitor = Monitor.__new__(Monitor)  # only the diagnostics it saw, no ROS
    monitor.status = {"jetracer_trt/control": {"control_ms_p50": "0", "control_ms_p99": "0",
                                               "overhead_ms_p50": "2.5", "overhead_ms_p99": "8"}}
    assert monitor._p50_p99("jetracer_trt/control", "control_ms") == {"p50": None, "p99": None}
    assert monitor._p50_p99("jetracer_trt/control", "overhead_ms") == {"p50": 2.5, "p99": 8.0}
    assert monitor._p50_p99("jetracer_trt/inference", "model_ms") == {"p50": None, "p99": None}


def test_task_pose_reaches_the_inference_node_and_puts_a_walker_in_the_simulator():
    sim, inference, control = drive_graph(task="pose")
    assert inference.parameters == {"task": "pose"}
    assert sim.effective_parameters()["walker"] is True and "walker" in sim.defaults  # a params file may say no
    assert control.effective_parameters()["profile"] == "sim"
    # the pose network's slower targets are taken by the simulated car, never by a real one
    assert control.defaults["max_target_age_s"] > SafetyLimits.from_config().max_target_age_s
    assert "max_target_age_s" not in drive_graph(source="csi", task="pose")[2].effective_parameters()
    road_sim, road_inference, _ = drive_graph()
    assert "walker" not in road_sim.effective_parameters()
    assert road_inference.defaults["task"] == "road_following"
    camera = drive_graph(source="csi", task="pose")[0]
    assert "walker" not in camera.effective_parameters()


def test_an_unknown_task_is_one_clear_error(capsys):
    from jetracer_trt.cli.main import main

    assert main(["launch", "drive", "--task", "dance"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown task 'dance'; choose one of road_following, pose"


def test_the_monitor_sums_up_people_and_follow_me_for_task_pose():
    from jetracer_trt.cli.launch import summary_text
    from jetracer_trt.launcher import Monitor

    monitor = Monitor.__new__(Monitor)  # only the diagnostics it saw, no ROS
    monitor.status = {"jetracer_trt/inference": {"task": "road_following", "frames": "10"}}
    assert monitor.pose_summary() is None
    monitor.status = {"jetracer_trt/inference": {
        "task": "pose", "frames": "90", "frames_with_people": "80", "following_frames": "85", "people": "1",
        "follow": "too close", "parse_ms_p50": "1.2", "parse_ms_p99": "3.5"}}
    pose = monitor.pose_summary()
    assert pose == {"frames_with_people": 80, "following_frames": 85, "people_last_frame": 1, "follow": "too close",
                    "parse_ms": {"p50": 1.2, "p99": 3.5}}
    text = summary_text(summary(pose=pose))
    assert "people found in 80 frames, followed in 85" in text and "too close" in text and "1.2/3.5" in text
