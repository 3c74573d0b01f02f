"""ros2 launch jetracer_trt drive.launch.py [source:=sim|csi|v4l2|video|folder] [task:=road_following|pose]
[model:=...] [backend:=...] [actuator:=pca9685|sim|none] [params_file:=...] [check:=true] ...   (`--show-args` lists
them all)

task:=pose runs the pose model and follow-me instead of road following: people on pose/people and pose/markers,
the follow-me target on follow_target, through the same control node and safety (with source:=sim, a walking figure
to follow).

The graph is described once in jetracer_trt.graph (`jetracer-trt launch drive` runs the same graph without a ROS 2
install); parameter precedence, failed nodes and the last resort: jetracer_trt.ros_launch.
"""
from jetracer_trt.graph import DRIVE_ARGUMENTS, drive_graph
from jetracer_trt.ros_launch import launch_description


def generate_launch_description():
    return launch_description(DRIVE_ARGUMENTS, drive_graph)
