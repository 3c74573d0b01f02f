"""launch/drive.launch.py up to the seam: the ROS 2 `launch` packages cannot be installed without a ROS 2
distribution, so small stand-ins record what the launch file asks of them (their real API: LaunchDescription,
DeclareLaunchArgument, OpaqueFunction, LaunchConfiguration.perform, launch_ros.actions.Node)."""
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from jetracer_trt.graph import DRIVE_ARGUMENTS, drive_graph

LAUNCH_FILE = Path(__file__).resolve().parent.parent / "launch" / "drive.launch.py"


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context[self.name]


@pytest.fixture
def launch_module(monkeypatch):
    fakes = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
    }
    fakes["launch"].LaunchDescription = lambda entities: list(entities)
    fakes["launch.actions"].DeclareLaunchArgument = Recorded
    fakes["launch.actions"].OpaqueFunction = Recorded
    fakes["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    fakes["launch_ros.actions"].Node = Recorded
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("drive_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nodes_for(module, **overrides):
    entities = module.generate_launch_description()
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if "default_value" in e.kwargs}
    opaque = [e for e in entities if "function" in e.kwargs]
    assert declared == {name: default for name, (default, _) in DRIVE_ARGUMENTS.items()}
    assert len(opaque) == 1
    return opaque[0].kwargs["function"]({**declared, **overrides})


def test_launch_file_declares_every_argument_and_starts_the_graph_module_describes(launch_module):
    nodes = nodes_for(launch_module)
    expected = drive_graph()
    assert [n.kwargs["executable"] for n in nodes] == [s.executable for s in expected]
    assert [n.kwargs["name"] for n in nodes] == [s.name for s in expected]
    assert all(n.kwargs["package"] == "jetracer_trt" for n in nodes)
    assert [n.kwargs["parameters"] for n in nodes] == [[s.parameters] for s in expected]


def test_launch_arguments_reach_the_nodes(launch_module, tmp_path):
    params = tmp_path / "car.yaml"
    nodes = nodes_for(launch_module, source="v4l2", device="/dev/video2", actuator="none", check="true",
                      params_file=str(params))
    by_name = {n.kwargs["name"]: n.kwargs for n in nodes}
    assert set(by_name) == {"camera", "inference", "control"}
    assert by_name["camera"]["parameters"][1] == {"source": "v4l2", "device": "/dev/video2"}
    assert by_name["control"]["parameters"][1]["check"] is True
    assert all(n["parameters"][0] == str(params) for n in by_name.values())  # the params file first, then ours
