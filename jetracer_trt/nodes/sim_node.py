"""The simulator as a ROS 2 node: takes /cmd, publishes camera frames, the car pose, /clock and its score.

Two modes (parameter ``lockstep``):

* real time (default): a timer at the camera rate steps the car with the latest command, renders, and publishes
  the frame. A slow graph drops frames and reacts late, as it would on the car.
* lockstep: the simulator waits for the command computed from frame k (the command's header carries frame k's
  stamp) before it steps and renders frame k+1, applying commands with one frame of delay exactly as
  ``jetracer-trt sim eval`` does. Every frame reaches the model and the run does not depend on how fast the machine
  is: for tests, evaluation and slow laptops. A frame that gets no command within ``lockstep_timeout_s`` (lost, or
  the graph still starting) is published again.

Frames are stamped with the wall-clock time they were rendered, as a real camera stamps its capture, and the same
time goes out on /clock (for tools that run with use_sim_time; the graph's own nodes stay on the system clock, which
is the same time), so capture-to-command latency is measured the same way in both modes and on the car. Laps and
off-track events go to /diagnostics and the log.

With ``walker`` true a person walks along the road ahead of the car (``sim/walker.py``, config/sim.yaml's
``walker``; ``walker_seed``, ``walker_speed_mps`` and ``walker_start_m`` change it) and is drawn into the frames,
for a follow-me graph (task pose); /diagnostics then carries the car-to-walker distance (now, min, mean), the
collisions, the walker's lead along the road and how long the walker was out of the camera's view.
"""
from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.clock import Clock as RosClock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from ..sim import SimWorld
from .common import LATEST_ONLY, RELIABLE, declare, diagnostics, main_for, stamp_to_ns, steady_timer
from .image_msg import rgb_to_image


class SimNode(Node):
    def __init__(self):
        super().__init__("sim")
        self.track_seed = declare(self, "track_seed", 1001, "generated track to drive (seeds >= 1000: evaluation)",
                                  0, 2**31 - 1)
        randomize = declare(self, "randomize", False, "domain randomization of the world and camera")
        run_seed = declare(self, "run_seed", 0, "seed of the randomization and noise draws", 0, 2**31 - 1)
        self.frame_id = declare(self, "frame_id", "camera", "frame_id of the published images")
        self.cmd_timeout_s = declare(self, "cmd_timeout_s", 0.5, "no /cmd for this long: the car coasts to a stop "
                                     "with the wheels straight, as a receiver failsafe does", 0.05, 10.0)
        self.lockstep = declare(self, "lockstep", False, "wait for the command of each frame before the next one "
                                "(deterministic, machine-speed independent); false: real time", read_only=True)
        self.plot = declare(self, "plot", "", "PNG file to draw the driven path into when the node stops (empty: "
                            "none)", read_only=True)
        self.lockstep_timeout_s = declare(self, "lockstep_timeout_s", 1.0, "lockstep: publish a frame again when "
                                          "no command for it came within this time", 0.05, 60.0)
        walker = declare(self, "walker", False, "a person walks along the road ahead of the car and is drawn into "
                         "the frames (follow-me)", read_only=True)
        walker_seed = declare(self, "walker_seed", -1, "walker: the walk and the person (-1: config/sim.yaml's)",
                              -1, 2**31 - 1, read_only=True)
        walker_speed = declare(self, "walker_speed_mps", -1.0, "walker: mean walking speed (-1: config/sim.yaml's)",
                               -1.0, 3.0, read_only=True)
        walker_start = declare(self, "walker_start_m", -1.0, "walker: how far ahead of the car the walk starts "
                               "(-1: config/sim.yaml's)", -1.0, 20.0, read_only=True)
        settings = None
        if walker:
            from ..sim.walker import WalkerSettings

            settings = WalkerSettings.from_config(
                seed=walker_seed if walker_seed >= 0 else None, speed_mps=walker_speed if walker_speed >= 0 else None,
                start_ahead_m=walker_start if walker_start >= 0 else None)
        self.world = SimWorld(self.track_seed, randomize=randomize, run_seed=run_seed, walker=settings)
        self.rate_hz = self.world.rate_hz
        self.image_pub = self.create_publisher(Image, "camera/image_raw", LATEST_ONLY)
        self.pose_pub = self.create_publisher(PoseStamped, "sim/pose", 10)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(TwistStamped, "cmd", self.on_cmd, RELIABLE)
        self.command = (0.0, 0.0)
        self.commands_received = 0
        self._image = Image()
        self._started = False
        self._last_cmd = 0.0
        self._system_clock = RosClock(clock_type=ClockType.SYSTEM_TIME)
        self._laps_reported = 0
        self._off_reported = 0
        self._collisions_reported = 0
        self.republished = 0  # lockstep: frames published again for want of a command
        self._frame_stamp_ns = 0  # lockstep: stamp of the current frame's first publication
        self._published_at = 0.0
        # timers run on the steady clock: this node *is* the clock of a simulated graph
        if self.lockstep:
            self.applied = (0.0, 0.0)  # the command acting on the world: one frame behind, as in `sim eval`
            steady_timer(self, 0.05, self.check_lockstep_timeout)
            self.publish_frame()
        else:
            steady_timer(self, 1.0 / self.rate_hz, self.tick)
        self.get_logger().info(f"track seed {self.track_seed}, {self.world.track.length:.1f} m, "
                               f"randomize={randomize}, {self.rate_hz:.0f} Hz, "
                               f"{'lockstep' if self.lockstep else 'real time'}"
                               f"{', a person walking ahead' if walker else ''}")

    def on_cmd(self, msg: TwistStamped) -> None:
        steering, throttle = -msg.twist.angular.z, msg.twist.linear.x  # ROS: angular.z > 0 turns left
        if not (math.isfinite(steering) and math.isfinite(throttle)):
            return
        self.command = (steering, throttle)
        self.commands_received += 1
        self._last_cmd = time.monotonic()
        if self.lockstep and stamp_to_ns(msg.header.stamp) >= self._frame_stamp_ns > 0:
            # the command of the current frame: it acts after the next frame is taken (one frame of delay)
            self._frame_stamp_ns = 0
            self.world.step(*self.applied)
            self.applied = self.command
            self.publish_frame()

    def check_lockstep_timeout(self) -> None:
        if self._frame_stamp_ns and time.monotonic() - self._published_at > self.lockstep_timeout_s:
            self.republished += 1
            self.publish_frame(again=True)

    def capture_stamp(self):
        """The frame's stamp: the wall-clock time it was rendered, as a real camera stamps its capture. /clock
        carries the same time, so a node running with use_sim_time follows the simulator, and capture-to-command
        latency stays measurable against the system clock."""
        return self._system_clock.now().to_msg()

    def tick(self) -> None:
        """Real time: one camera period with the latest command."""
        if not self._started and self.image_pub.get_subscription_count() == 0:
            # the world starts when someone looks: frames before the model subscribed would be lost (counted as
            # dropped) while the simulated car waited for nothing
            return
        if time.monotonic() - self._last_cmd > self.cmd_timeout_s:
            self.command = (0.0, 0.0)
        if self._started:  # the first frame is taken before any step
            self.world.step(*self.command)
        self._started = True
        self.publish_frame()

    def publish_frame(self, again: bool = False) -> None:
        """Renders the current state (unless publishing the same frame ``again``) and publishes it with a new
        capture stamp, then the pose and /clock. The stamp is taken once the frame exists, as a camera driver
        stamps a frame it has read out, and the frame goes first: the graph is waiting on it."""
        if not again:
            rgb_to_image(self.world.observe(), self._image)
        stamp = self.capture_stamp()
        if not again:
            self._frame_stamp_ns = stamp_to_ns(stamp)
        self._published_at = time.monotonic()
        self._image.header.stamp = stamp
        self._image.header.frame_id = self.frame_id
        self.image_pub.publish(self._image)
        self.clock_pub.publish(Clock(clock=stamp))
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, "map"
        s = self.world.car.state
        pose.pose.position.x, pose.pose.position.y = s.x, s.y
        pose.pose.orientation.z, pose.pose.orientation.w = math.sin(s.yaw / 2), math.cos(s.yaw / 2)
        self.pose_pub.publish(pose)
        if not again and self.world.stats.frames % int(self.rate_hz) == 0:
            self.report()

    def report(self) -> None:
        m = self.world.metrics()
        if m["laps_completed"] > self._laps_reported or m["off_track_events"] > self._off_reported:
            self.get_logger().info(f"laps {m['laps_completed']}, off-track events {m['off_track_events']}")
            self._laps_reported, self._off_reported = m["laps_completed"], m["off_track_events"]
        if m.get("collisions", 0) > self._collisions_reported:
            self.get_logger().warning(f"the car came within {self.world.walker.settings.collision_m} m of the walker "
                                      f"({m['collisions']} times so far)")
            self._collisions_reported = m["collisions"]
        m["commands_received"] = self.commands_received
        m["mode"] = "lockstep" if self.lockstep else "real time"
        m["frames_published_again"] = self.republished
        if self.world.walker is not None:
            m["walker_distance_m"] = self.world.walker_distance()
        self.diag_pub.publish(diagnostics(self, "jetracer_trt/sim", m))

    def shutdown(self) -> None:
        self.report()  # the final score, for whoever sums the run up
        if self.plot:
            from ..sim.visualize import plot_run

            m = self.world.metrics()
            plot_run(self.world, self.plot, title=f"track seed {self.track_seed}, ROS 2 graph "
                     f"({'lockstep' if self.lockstep else 'real time'}): {m['laps_completed']} laps, "
                     f"{m['off_track_events']} off-track")
            self.get_logger().info(f"plot of the driven path: {self.plot}")


main = main_for(SimNode)

if __name__ == "__main__":
    main()
