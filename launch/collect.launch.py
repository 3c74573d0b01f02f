"""ros2 launch jetracer_trt collect.launch.py out:=DIR [source:=sim|csi|v4l2|video|folder] [teleop:=web|gamepad|none]
[web_port:=8080] [web_host:=127.0.0.1] [record:=true] ...   (`--show-args` lists them all)

The drive graph plus the data-collection node (recording, the car's web page) and, with a gamepad, the teleop node:
jetracer_trt.graph.collect_graph (`jetracer-trt launch collect` runs the same graph without a ROS 2 install).
"""
from jetracer_trt.graph import COLLECT_ARGUMENTS, collect_graph
from jetracer_trt.ros_launch import launch_description


def generate_launch_description():
    return launch_description(COLLECT_ARGUMENTS, collect_graph)
