"""launch_testing for launch/drive.launch.py as colcon installs it: in lockstep the simulated car drives a lap and
never leaves the road, and when the launch shuts the graph down every node exits with status 0.

    launch_test test/launch_tests/drive_lap.test.py    # where a workspace holding the package is sourced

test/test_ros2_real.py runs it with the real tools (the project's own test environment has no launch packages,
and the file's name keeps pytest from collecting it there). Lockstep: the simulator waits for each frame's command,
so every frame reaches the model and the lap does not depend on the machine's speed.
"""
import os
import re
import unittest

import launch
import launch_testing
import launch_testing.actions
import launch_testing.asserts
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

LAP_TIMEOUT_S = 120.0
NODES = ("sim_node", "inference_node", "control_node")


def generate_test_description():
    drive = os.path.join(get_package_share_directory("jetracer_trt"), "launch", "drive.launch.py")
    return launch.LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(drive), launch_arguments={"lockstep": "true"}.items()),
        launch_testing.actions.ReadyToTest(),
    ])


def sim_log(proc_output) -> str:
    # rclpy logs to stderr
    return "".join(io.text.decode(errors="replace") for io in proc_output
                   if io.process_name.startswith("sim_node") and io.from_stderr)


class TestLockstepLap(unittest.TestCase):
    def test_the_car_drives_a_lap_and_never_leaves_the_road(self, proc_output):
        proc_output.assertWaitFor(re.compile(r"laps [1-9]\d*, off-track events \d+"), process="sim_node",
                                  timeout=LAP_TIMEOUT_S, stream="stderr")
        reports = re.findall(r"laps (\d+), off-track events (\d+)", sim_log(proc_output))
        self.assertTrue(reports)
        self.assertEqual([int(off) for _, off in reports], [0] * len(reports), f"the simulator reported {reports}")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_every_node_exits_with_status_0(self, proc_info):
        self.assertEqual(sorted(name.rsplit("-", 1)[0] for name in proc_info.process_names()), sorted(NODES))
        launch_testing.asserts.assertExitCodes(proc_info)
