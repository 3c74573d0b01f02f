"""launch/drive.launch.py up to the seam: small stand-ins record what the launch file asks of the ROS 2 `launch`
packages (their real API: LaunchDescription, DeclareLaunchArgument, OpaqueFunction(function, args),
RegisterEventHandler, OnProcessExit(target_action, on_exit), launch.logging.get_logger, launch_ros.actions.Node), and
``launch_service`` visits the entities the way the real LaunchService does: in order, command-line arguments set
before the first entity, a declaration setting its default only when the argument was not given. The real
``ros2 launch`` runs in test_ros2_real.py."""
import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
from test_launcher import record_neutral_writes

from jetracer_trt.graph import DRIVE_ARGUMENTS, drive_graph

LAUNCH_FILE = Path(__file__).resolve().parent.parent / "launch" / "drive.launch.py"


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class DeclareLaunchArgument(Recorded):
    def visit(self, context):
        context.launch_configurations.setdefault(self.args[0], self.kwargs["default_value"])
        return []


class OpaqueFunction(Recorded):
    def visit(self, context):
        return self.kwargs["function"](context, *self.kwargs.get("args", [])) or []


class Context:
    def __init__(self, arguments):
        self.launch_configurations = dict(arguments)


class Logger:
    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(("warning", text))

    def critical(self, text):
        self.lines.append(("critical", text))


@pytest.fixture
def launch_module(monkeypatch):
    fakes = {name: types.ModuleType(name) for name in (
        "launch", "launch.actions", "launch.event_handlers", "launch.events", "launch.logging", "launch_ros",
        "launch_ros.actions")}
    fakes["launch"].LaunchDescription = lambda entities: list(entities)
    fakes["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    fakes["launch.actions"].OpaqueFunction = OpaqueFunction
    fakes["launch.actions"].RegisterEventHandler = Recorded
    fakes["launch.actions"].EmitEvent = Recorded
    fakes["launch.events"].Shutdown = Recorded
    fakes["launch.event_handlers"].OnProcessExit = Recorded
    logger = Logger()
    fakes["launch.logging"].get_logger = lambda name: logger
    fakes["launch_ros.actions"].Node = Recorded
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("drive_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.test_logger = logger
    return module


def launch_service(module, **arguments) -> list:
    """What `ros2 launch jetracer_trt drive.launch.py name:=value ...` would start: the entities, in order."""
    context = Context(arguments)
    entities = module.generate_launch_description()
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if isinstance(e, DeclareLaunchArgument)}
    assert declared == {name: default for name, (default, _) in DRIVE_ARGUMENTS.items()}
    started = []
    for entity in entities:
        started += entity.visit(context)
    return started


def nodes_of(started) -> list:
    return [e for e in started if "executable" in e.kwargs]


def readable(parameters: list) -> list:
    """A node's parameter sources with the explicit values' file (the last one, keyed by the node name) read."""
    import yaml

    shown = list(parameters)
    if shown and isinstance(shown[-1], str) and Path(shown[-1]).name.startswith("jetracer_trt_"):
        shown[-1] = yaml.safe_load(Path(shown[-1]).read_text())
    return shown


def test_launch_file_declares_every_argument_and_starts_the_graph_module_describes(launch_module):
    nodes = nodes_of(launch_service(launch_module))
    expected = drive_graph()
    assert [n.kwargs["executable"] for n in nodes] == [s.executable for s in expected]
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in expected]
    assert all(n.kwargs["package"] == "jetracer_trt" for n in nodes)
    # nothing was given: every value is a default, which a params file could override
    assert [n.kwargs["parameters"] for n in nodes] == [[s.defaults] for s in expected]


def test_launch_arguments_reach_the_nodes_and_win_over_the_params_file(launch_module, tmp_path):
    params = tmp_path / "car.yaml"
    params.write_text("{}\n")
    nodes = nodes_of(launch_service(launch_module, source="v4l2", source_path="/dev/video2", actuator="none",
                                    check="true", params_file=str(params)))
    by_name = {n.kwargs["name"]: n.kwargs for n in nodes}
    assert set(by_name) == {"camera", "inference", "control"}
    assert readable(by_name["camera"]["parameters"]) == [
        str(params), {"camera": {"ros__parameters": {"source": "v4l2", "source_path": "/dev/video2"}}}]
    control = readable(by_name["control"]["parameters"])
    # the explicit ones after the file, in a section of the node's own
    assert control[1:] == [str(params), {"control": {"ros__parameters": {"check": True, "actuator": "none"}}}]
    assert control[0]["profile"] == "car" and control[0]["armed_at_start"] is False  # defaults before it


def test_a_params_file_value_wins_over_a_launch_argument_default(launch_module, tmp_path):
    params = tmp_path / "sim.yaml"
    params.write_text("sim:\n  ros__parameters:\n    track_seed: 1005\n")
    sim = nodes_of(launch_service(launch_module, params_file=str(params)))[0].kwargs["parameters"]
    # the default track seed comes before the file, so the file's 1005 is what the node gets
    assert sim == [{"track_seed": 1001, "randomize": False, "lockstep": False, "plot": ""}, str(params)]
    # given on the command line, even equal to the default, it comes after the file and wins
    sim = nodes_of(launch_service(launch_module, params_file=str(params), track_seed="1001"))[0].kwargs["parameters"]
    assert readable(sim)[1:] == [str(params), {"sim": {"ros__parameters": {"track_seed": 1001}}}]



def test_task_pose_reaches_the_inference_node_and_the_simulator_gets_its_walker(launch_module):
    by_name = {n.kwargs["name"]: n.kwargs for n in nodes_of(launch_service(launch_module, task="pose"))}
    assert readable(by_name["inference"]["parameters"])[1:] == [{"inference": {"ros__parameters": {"task": "pose"}}}]
    assert by_name["sim"]["parameters"][0]["walker"] is True

def launch_ros_command(node: Recorded, folder: Path) -> list[str]:
    """The command launch_ros builds for a Node action: a dict becomes a params file under ``/**`` (launch_ros's
    Node._create_params_file_from_dict, for a node whose namespace is not given), a path is passed as it is."""
    import yaml

    args = ["--ros-args", "-r", f"__node:={node.kwargs['name']}"]
    for k, source in enumerate(node.kwargs["parameters"]):
        if isinstance(source, dict):
            path = folder / f"launch_params_{k}.yaml"
            path.write_text(yaml.dump({"/**": {"ros__parameters": source}}))
            source = str(path)
        args += ["--params-file", source]
    return [sys.executable, "-m", f"jetracer_trt.nodes.{node.kwargs['executable']}", *args]


@pytest.mark.parametrize("key", ["sim", "/sim", "/**"])
@pytest.mark.parametrize("given, expected", [({}, 1005), ({"track_seed": "1001"}, 1001)])
def test_the_precedence_holds_in_the_node_launch_ros_starts(launch_module, tmp_path, key, given, expected):
    import signal
    import subprocess

    pytest.importorskip("rclpy")
    params = tmp_path / "sim.yaml"
    params.write_text(f"{key}:\n  ros__parameters:\n    track_seed: 1005\n")
    sim = nodes_of(launch_service(launch_module, params_file=str(params), **given))[0]
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(100 + os.getpid() % 100)}
    node = subprocess.Popen(launch_ros_command(sim, tmp_path), stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in node.stderr:
            if "track seed" in line:
                break
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(timeout=30)
    assert f"track seed {expected}," in line


class Exited:
    def __init__(self, returncode):
        self.returncode = returncode


@pytest.mark.parametrize("returncode, writes", [(0, False), (1, True), (-9, True)])
def test_the_launch_sets_neutral_when_the_control_node_ends_without_its_own(launch_module, monkeypatch, tmp_path,
                                                                            returncode, writes):
    calls = record_neutral_writes(monkeypatch)
    params = tmp_path / "car.yaml"
    params.write_text("control:\n  ros__parameters:\n    calibration_file: /home/jetson/car.yaml\n")
    started = launch_service(launch_module, source="csi", params_file=str(params))
    handlers = {e.args[0].kwargs["target_action"].kwargs["name"]: e.args[0].kwargs["on_exit"]
                for e in started if not e.kwargs.get("executable")}
    assert set(handlers) == {"camera", "inference", "control"}  # every node's exit is watched
    actions = handlers["control"](Exited(returncode), None)
    assert calls == ([("pca9685", "/home/jetson/car.yaml")] if writes else [])
    if writes:
        assert launch_module.test_logger.lines[-1][0] == "warning"
    # a failed node ends the launch; a clean exit (Ctrl-C) lets the launch stop its own way
    assert (actions is None) == (returncode == 0)
    handlers["camera"](Exited(returncode), None)
    assert len(calls) == (1 if writes else 0)  # only the node that drives the car gets the last resort


def test_a_failed_node_shuts_the_launch_down(launch_module):
    started = launch_service(launch_module, model="/missing.onnx")
    (inference_exit,) = [e.args[0].kwargs["on_exit"] for e in started if not e.kwargs.get("executable")
                         and e.args[0].kwargs["target_action"].kwargs["name"] == "inference"]
    (emit,) = inference_exit(Exited(2), None)
    shutdown = emit.kwargs["event"]
    assert "node inference failed" in shutdown.kwargs["reason"]


# -- the package's ROS dependencies: what colcon/rosdep and the pip wheels install ------------------------------------

ROOT = LAUNCH_FILE.parent.parent
ROS_LIBRARIES = {"rclpy", "launch", "launch_ros", "ament_index_python", "cv_bridge", "tf2_ros", "message_filters",
                 "rosidl_runtime_py", "launch_testing", "launch_pytest", "image_transport"}
LAUNCH_ONLY = {"launch", "launch_ros", "launch_testing", "launch_pytest"}  # need a ROS 2 install anyway: no wheels


def ros_imports(folder: Path) -> set[str]:
    """Top-level names of the ROS packages imported by the Python files under ``folder``."""
    import ast
    import re

    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {n for n in names if n in ROS_LIBRARIES or re.search(r"_(msgs|srvs|interfaces)$", n)}


def test_package_xml_declares_every_ros_package_the_code_imports():
    import xml.etree.ElementTree as ET

    declared = {e.text.strip() for e in ET.parse(ROOT / "package.xml").getroot().iter("exec_depend")}
    imported = ros_imports(ROOT / "jetracer_trt") | ros_imports(ROOT / "launch")
    assert {"rclpy", "rcl_interfaces", "ament_index_python", "launch_ros"} <= imported  # the scan works
    assert imported - declared == set()


def test_the_ros_extra_installs_every_ros_package_the_runtime_imports(monkeypatch):
    import setuptools

    recorded = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: recorded.update(kwargs))
    monkeypatch.chdir(ROOT)
    exec(compile((ROOT / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "setup"})  # noqa: S102
    wheels = {w.split("[")[0] for w in recorded["extras_require"]["ros"]}
    needed = {f"ros-kilted-{name.replace('_', '-')}" for name in ros_imports(ROOT / "jetracer_trt") - LAUNCH_ONLY}
    assert needed - wheels == set()
