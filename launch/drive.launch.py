"""ros2 launch jetracer_trt drive.launch.py [source:=sim|csi|v4l2|video|folder] [model:=...] [backend:=...]
[actuator:=pca9685|sim|none] [params_file:=...] [check:=true]

The graph itself is described once in jetracer_trt.graph; `jetracer-trt launch drive` runs the same graph without
a ROS 2 install.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from jetracer_trt.graph import DRIVE_ARGUMENTS, drive_graph


def _nodes(context):
    args = {name: LaunchConfiguration(name).perform(context) for name in DRIVE_ARGUMENTS}
    params_file = args.pop("params_file")
    return [
        Node(package="jetracer_trt", executable=spec.executable, name=spec.name, output="screen",
             parameters=([params_file] if params_file else []) + [spec.parameters],
             remappings=list(spec.remappings))
        for spec in drive_graph(**args)
    ]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in DRIVE_ARGUMENTS.items()]
        + [OpaqueFunction(function=_nodes)]
    )
