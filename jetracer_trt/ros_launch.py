"""A graph description (``graph.drive_graph``, ``graph.collect_graph``) as a ROS 2 launch description, for the
files in ``launch/``. The ROS 2 ``launch`` packages are imported when a description is built, not with this module.

Parameter precedence, lowest first: each node's defaults, the launch arguments' defaults, ``params_file``, the
launch arguments given on the command line (``name:=value``). A launch argument's default cannot be told from an
explicit value equal to it once declared, so the first action notes which arguments were given before the
declarations fill in the defaults. Each node then gets three parameter sources in that order: a dict (launch_ros
writes it under ``/**``), the params file, and a file of the explicit values under the node's own name: rcl applies
a params file's sections in the order each first appeared, so a section for the node written after the user's file
wins over all of it, while a ``/**`` dict given before it loses to any of its sections.

A node that exits with a non-zero status (bad input such as a missing model, a camera gone for good) ends the
whole launch: the others cannot drive without it.

The last resort: when the control node's process ends with a non-zero status or by a signal (its own neutral may
not have run), the launch writes neutral to the car's board itself (``jetracer_trt.actuators.neutral``). It does so
in the launch process, from the exit event: ``ros2 launch`` starts no new process once it is shutting down, which is
exactly when a control node that would not stop gets killed.
"""
from __future__ import annotations

from typing import Callable

from .graph import NodeSpec, params_file_values
from .launcher import exit_description, neutral_after_exit


def _after_exit(node_name: str, actuator: tuple[str, str | None] | None):
    """A node that fails ends the whole launch (the graph cannot drive without it); the node that drives the car
    also gets the last resort."""
    from launch.actions import EmitEvent
    from launch.events import Shutdown
    from launch.logging import get_logger

    def on_exit(event, _context):
        if actuator is not None:
            neutral_after_exit(node_name, event.returncode, *actuator, get_logger("jetracer_trt.launch"))
        if event.returncode != 0:
            return [EmitEvent(event=Shutdown(reason=f"node {node_name} failed ({exit_description(event.returncode)})"))]
        return None
    return on_exit


def _explicit_parameters_file(node_name: str, values: dict) -> str:
    """``values`` as a params file for ``node_name`` alone, in the temporary folder until the launch ends."""
    import atexit
    import os
    import tempfile

    import yaml

    with tempfile.NamedTemporaryFile("w", prefix=f"jetracer_trt_{node_name}_", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({node_name: {"ros__parameters": values}}, f)
    atexit.register(lambda: os.path.exists(f.name) and os.remove(f.name))
    return f.name


def _entities(specs: list[NodeSpec], params_file: str) -> list:
    from launch.actions import RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch_ros.actions import Node

    entities = []
    for spec in specs:
        node = Node(package="jetracer_trt", executable=spec.executable, name=spec.name, output="screen",
                    parameters=[p for p in (spec.defaults, params_file, spec.parameters and
                                            _explicit_parameters_file(spec.name, spec.parameters)) if p],
                    remappings=list(spec.remappings))
        entities.append(node)
        effective = spec.effective_parameters(params_file_values(params_file, spec.name))
        actuator = ((str(effective["actuator"]), effective.get("calibration_file") or None)
                    if "actuator" in effective else None)
        entities.append(RegisterEventHandler(OnProcessExit(target_action=node,
                                                           on_exit=_after_exit(spec.name, actuator))))
    return entities


def launch_description(arguments: dict[str, tuple[str, str]], graph: Callable[..., list[NodeSpec]]):
    """The launch description of ``graph`` with one launch argument per entry of ``arguments`` (name -> (default,
    description)); ``params_file`` is applied between the defaults and the given arguments."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    given = set()  # the launch arguments given explicitly, noted before the declarations add the defaults

    def note_given(context):
        given.update(name for name in arguments if name in context.launch_configurations)

    def build(context):
        configurations = context.launch_configurations
        params_file = configurations["params_file"] if "params_file" in given else ""
        specs = graph(**{name: configurations[name] for name in arguments if name in given and name != "params_file"})
        return _entities(specs, params_file)

    return LaunchDescription(
        [OpaqueFunction(function=note_given)]
        + [DeclareLaunchArgument(name, default_value=default, description=description)
           for name, (default, description) in arguments.items()]
        + [OpaqueFunction(function=build)]
    )
