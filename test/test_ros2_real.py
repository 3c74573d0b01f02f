"""The package the ROS 2 way, with the real tools: ``colcon build`` of the working tree, ``ros2 launch jetracer_trt
drive.launch.py`` in the simulator, the running graph seen through ``ros2 node``, ``ros2 topic`` and ``ros2 param``,
a launch_testing lap (test/launch_tests/drive_lap.test.py), task:=pose's people topics and follow-me commands, and
how one SIGINT stops it all, also from a script's background job. ros2_tools.py says how the tools are found;
without them the module skips and says why.
"""
import os
import re
import shlex
import signal
import time
from pathlib import Path

import pytest
import ros2_tools

from jetracer_trt.graph import DRIVE_ARGUMENTS

try:
    TOOLS, TOOLS_ERROR = ros2_tools.find_tools(), None
except ros2_tools.ToolsError as exc:  # asked for and unusable: every test here fails with the reason
    TOOLS, TOOLS_ERROR = None, str(exc)
if TOOLS is None and TOOLS_ERROR is None:
    pytest.skip(ros2_tools.NO_TOOLS, allow_module_level=True)

LAUNCH = ["ros2", "launch", "jetracer_trt", "drive.launch.py"]
NODES = ("sim", "inference", "control")
EXECUTABLES = ("sim_node", "inference_node", "control_node")
START_S = 60.0  # three Python processes importing rclpy, OpenCV and ONNX Runtime on two busy cores
STOP_S = 15.0   # launch escalates SIGINT to SIGTERM after 5 s: a clean stop takes far less
LAUNCH_TEST = ros2_tools.ROOT / "test" / "launch_tests" / "drive_lap.test.py"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    if TOOLS_ERROR:
        pytest.fail(TOOLS_ERROR)
    try:
        ws = ros2_tools.build_workspace(TOOLS, tmp_path_factory.mktemp("colcon_ws"))
    except ros2_tools.ToolsError as exc:
        pytest.fail(str(exc))
    yield ws
    ws.run("ros2", "daemon", "stop")  # started by the CLI verbs below


def wait_until_up(launched: ros2_tools.Started) -> None:
    missing = launched.missing(ros2_tools.GRAPH_UP, START_S)
    if missing:
        pytest.fail(f"the graph did not come up (no {missing!r}):\n{launched.text()[-3000:]}")


def assert_stopped_cleanly(launched: ros2_tools.Started, rc) -> None:
    log = launched.text()
    assert rc == 0, f"ros2 launch still running or failed (status {rc}):\n{log[-3000:]}"
    left = launched.processes()
    assert not left, f"processes left after ros2 launch ended: {left}"
    for executable in EXECUTABLES:
        assert re.search(rf"\[{executable}-\d+\]: process has finished cleanly", log), \
            f"{executable} did not finish cleanly:\n{log[-3000:]}"


@pytest.fixture(scope="module")
def real_time_graph(workspace, tmp_path_factory):
    """ros2 launch of the default (real-time) simulator graph typed in a terminal, and a /cmd listener started
    before it."""
    logs = tmp_path_factory.mktemp("real_time")
    listener = ros2_tools.start_listener(workspace, logs / "cmd.txt")
    assert listener.wait_for("listening", START_S), listener.text()
    launched = ros2_tools.Started(LAUNCH, workspace.env, logs / "launch.log", cwd=workspace.root, terminal=True)
    try:
        wait_until_up(launched)
        yield launched, logs / "cmd.txt"
    finally:
        if launched.proc.poll() is None:
            launched.proc.send_signal(signal.SIGINT)
            launched.wait(STOP_S)
        launched.stop()
        listener.proc.send_signal(signal.SIGINT)
        listener.wait(10)
        listener.stop()


def test_colcon_build_installs_the_executables_and_the_launch_file(workspace):
    executables = workspace.run("ros2", "pkg", "executables", "jetracer_trt").stdout.split()
    assert {"sim_node", "inference_node", "control_node", "camera_node"} <= set(executables)
    shown = workspace.run(*LAUNCH, "--show-args")
    assert shown.returncode == 0, shown.stderr
    for name in DRIVE_ARGUMENTS:
        assert f"'{name}':" in shown.stdout


def test_ros2_node_list_shows_the_graph(workspace, real_time_graph):
    deadline = time.monotonic() + 20
    while True:
        nodes = workspace.run("ros2", "node", "list").stdout.split()
        if {f"/{n}" for n in NODES} <= set(nodes) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {f"/{n}" for n in NODES} <= set(nodes), nodes


@pytest.mark.parametrize("topic", ["/camera/image_raw", "/cmd"])
def test_ros2_topic_hz_sees_frames_and_commands_above_10_hz(workspace, real_time_graph, topic, tmp_path):
    assert ros2_tools.topic_rate_hz(workspace, topic, tmp_path / "hz.log") > 10


def test_ros2_param_set_changes_a_gain_at_runtime(workspace, real_time_graph):
    changed = workspace.run("ros2", "param", "set", "/control", "steering_gain", "0.9")
    assert "Set parameter successful" in changed.stdout, changed.stdout + changed.stderr
    assert "value is: 0.9" in workspace.run("ros2", "param", "get", "/control", "steering_gain").stdout


def test_ros2_param_set_refuses_an_out_of_range_gain_with_the_reason(workspace, real_time_graph):
    before = workspace.run("ros2", "param", "get", "/control", "steering_gain").stdout
    refused = workspace.run("ros2", "param", "set", "/control", "steering_gain", "9.0")
    failed = re.search(r"Setting parameter failed: *(.*)", refused.stdout + refused.stderr)
    assert failed and failed.group(1).strip(), refused.stdout + refused.stderr  # a reason, not just "failed"
    assert workspace.run("ros2", "param", "get", "/control", "steering_gain").stdout == before


def test_ctrl_c_stops_ros2_launch_and_every_node_cleanly_with_the_car_in_neutral(real_time_graph):
    launched, commands = real_time_graph
    deadline = time.monotonic() + 20
    while not any(throttle > 0 for throttle, _ in ros2_tools.commands_heard(commands)):
        assert time.monotonic() < deadline, "the car never drove"
        time.sleep(0.2)
    launched.ctrl_c()
    rc = launched.wait(STOP_S)
    time.sleep(1.0)  # the listener may still be reading the last command
    assert_stopped_cleanly(launched, rc)
    heard = ros2_tools.commands_heard(commands)
    assert heard[-1][0] == 0.0, f"the last command had throttle {heard[-1][0]}: the car was not left in neutral"


def test_launch_testing_drives_a_lockstep_lap_without_leaving_the_road(workspace):
    result = workspace.run("launch_test", str(LAUNCH_TEST), timeout=240)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]


def start_in_background_of_a_script(workspace, tmp_path, command: str) -> tuple[ros2_tools.Started, int]:
    """``command &`` in a non-interactive bash (no job control): the job starts with SIGINT ignored."""
    pid_file = tmp_path / "pid"
    script = f'{command} & echo $! > {pid_file}; wait $!'
    launched = ros2_tools.Started(["bash", "-c", script], workspace.env, tmp_path / "launch.log", cwd=workspace.root)
    wait_until_up(launched)
    return launched, int(pid_file.read_text())


def test_ros2_launch_as_a_background_job_of_a_script_does_not_stop_on_sigint(workspace, tmp_path):
    launched, launch_pid = start_in_background_of_a_script(workspace, tmp_path, " ".join(LAUNCH))
    try:
        os.kill(launch_pid, signal.SIGINT)
        assert launched.wait(5.0) is None  # it inherited SIGINT as ignored: still driving
        assert "user interrupted" not in launched.text()
    finally:
        launched.stop()


def test_env_default_signal_int_lets_a_background_ros2_launch_stop_on_one_sigint(workspace, tmp_path):
    launched, launch_pid = start_in_background_of_a_script(
        workspace, tmp_path, "env --default-signal=INT " + " ".join(LAUNCH))
    try:
        os.kill(launch_pid, signal.SIGINT)
        assert_stopped_cleanly(launched, launched.wait(STOP_S))  # bash's `wait` returns ros2 launch's status
    finally:
        launched.stop()


def test_the_service_units_ros2_form_stops_cleanly_on_its_kill_signal(workspace, tmp_path):
    """launch/jetracer-drive.service's ROS 2 ExecStart with this workspace and the simulator, started with SIGINT
    ignored (as from a script) and sent SIGINT as systemd's KillSignal with KillMode=mixed does."""
    text = ros2_tools.UNIT.read_text()
    bash, dash_c, script = shlex.split(ros2_tools.unit_exec_starts(text)["ros2"])
    distribution = "source /opt/ros/${ROS_DISTRO}/setup.bash"
    assert distribution in script
    env = {**ros2_tools.unit_environment(text), **workspace.env}  # a sourced ROS 2 keeps its own ROS_DISTRO
    if not Path(f"/opt/ros/{env['ROS_DISTRO']}/setup.bash").is_file():  # the tools stand in for the distribution
        script = script.replace(distribution, " && ".join(f"source {s}" for s in TOOLS.setup_scripts) or "true")
    script = script.replace("/home/jetson/ros2_ws", str(workspace.root))
    script = script.replace("source:=csi actuator:=pca9685", "source:=sim actuator:=sim")
    launched = ros2_tools.Started([bash, dash_c, script], env, tmp_path / "launch.log", cwd=workspace.root,
                                  preexec_fn=ros2_tools.ignore_sigint)
    try:
        wait_until_up(launched)
        launched.proc.send_signal(signal.SIGINT)
        assert_stopped_cleanly(launched, launched.wait(STOP_S))
    finally:
        launched.stop()


def test_a_missing_model_ends_the_launch_with_one_line_naming_the_node_and_the_cause(workspace, tmp_path):
    launched = ros2_tools.Started([*LAUNCH, "model:=/missing.onnx"], workspace.env, tmp_path / "launch.log",
                                  cwd=workspace.root)
    try:
        rc = launched.wait(30.0)
        log = launched.text()
        assert rc is not None, f"the launch went on without its model:\n{log[-3000:]}"
        assert not launched.processes()
        errors = [line for line in log.splitlines() if "/missing.onnx" in line]
        assert len(errors) == 1 and "inference" in errors[0] and "error" in errors[0].lower(), log[-3000:]
        assert "Traceback" not in log, log[-3000:]
    finally:
        launched.stop()


def test_ros2_launch_of_the_collection_graph_records_and_stops_cleanly(workspace, tmp_path):
    """collect.launch.py with the real tools: the model drives the simulator (no hand: autopilot), the
    data-collection node records, one Ctrl-C stops every node cleanly, and the dataset reads back."""
    from jetracer_trt.dataset import read_dataset

    data = tmp_path / "data"
    command = ["ros2", "launch", "jetracer_trt", "collect.launch.py", f"out:={data}", "teleop:=none",
               "web_port:=0", "record:=true", "track_seed:=1004"]
    launched = ros2_tools.Started(command, workspace.env, tmp_path / "launch.log", cwd=workspace.root, terminal=True)
    try:
        wait_until_up(launched)
        assert launched.wait_for("recording into", START_S), launched.text()[-3000:]
        deadline = time.monotonic() + 60
        while len(read_dataset(data)[0]) < 20:
            assert time.monotonic() < deadline, f"nothing recorded:\n{launched.text()[-3000:]}"
            time.sleep(1.0)
        launched.ctrl_c()
        rc = launched.wait(STOP_S)
    finally:
        launched.stop()
    assert_stopped_cleanly(launched, rc)
    assert re.search(r"\[data_collection_node-\d+\]: process has finished cleanly", launched.text())
    samples, corrupt = read_dataset(data)
    assert corrupt == 0 and {s.meta["source"] for s in samples} == {"autopilot"}


def with_precision_metadata(model: Path) -> Path:
    """``model`` carrying ``precision: fp32`` as converted models do: without it the ONNX Runtime engine reads the
    graph with the ``onnx`` package to tell INT8 from FP32, and the tools' environment has only the runtime
    requirements, which do not include it."""
    import onnx

    proto = onnx.load(str(model))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, "precision": "fp32"})
    onnx.save(proto, str(model))
    return model


def test_ros2_launch_task_pose_publishes_people_and_the_car_answers_follow_me(workspace, tmp_path):
    """task:=pose with a random-weight pose model (CI has no trained one; what is checked does not depend on what
    it finds): the people topics are published with their documented layout, and the control node answers the
    follow-me targets (its commands carry the frames' stamps). Lockstep: every frame gets its command however slow
    the network runs on this machine."""
    from test_inference_node import export_random_pose_model

    model = with_precision_metadata(export_random_pose_model(tmp_path))
    command = [*LAUNCH, "task:=pose", f"model:={model}", "backend:=onnxruntime", "lockstep:=true"]
    launched = ros2_tools.Started(command, workspace.env, tmp_path / "launch.log", cwd=workspace.root, terminal=True)
    try:
        wait_until_up(launched)
        deadline = time.monotonic() + 30
        wanted = {"/pose/people", "/pose/markers", "/pose/image_annotated", "/follow_target"}
        while not wanted <= set(topics := workspace.run("ros2", "topic", "list").stdout.split()):
            assert time.monotonic() < deadline, f"missing topics {wanted - set(topics)}"
            time.sleep(1)
        people = workspace.run("ros2", "topic", "echo", "--once", "/pose/people", timeout=60).stdout
        for label in ("people", "keypoints", "x_y_score"):
            assert f"label: {label}" in people, people
        markers = workspace.run("ros2", "topic", "echo", "--once", "/pose/markers", timeout=60).stdout
        assert "action: 3" in markers, markers  # every array starts with DELETEALL
        deadline = time.monotonic() + 60
        while True:  # a command carrying a frame's stamp answers a target (keep-alives before any carry 0)
            stamp = workspace.run("ros2", "topic", "echo", "--once", "/cmd", "--field", "header.stamp.sec",
                                  timeout=60).stdout.split()
            if stamp and stamp[0].isdigit() and int(stamp[0]) > 0:
                break
            assert time.monotonic() < deadline, f"no command answered a follow target:\n{launched.text()[-3000:]}"
        launched.ctrl_c()
        rc = launched.wait(STOP_S)
    finally:
        launched.stop()
    assert_stopped_cleanly(launched, rc)
