"""The pip-only way to run a graph: every node of a ``graph.NodeSpec`` list as its own process, plus a monitor.

Stops on Ctrl-C, SIGTERM or after ``duration_s``: SIGINT to every node (the control node puts the car in neutral
on the way out), then SIGKILL to any that has not exited within a few seconds. The monitor (a node in this process)
listens to /cmd and /diagnostics and sums the run up: frames, capture-to-command latency, dropped frames, laps and
off-track events.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from .graph import NodeSpec

log = logging.getLogger(__name__)
STOP_GRACE_S = 5.0
DRAIN_S = 1.5  # > the 1 s diagnostics period


def ros_arguments(spec: NodeSpec, params_file: str = "") -> list[str]:
    args = ["--ros-args", "-r", f"__node:={spec.name}"]
    if params_file:
        args += ["--params-file", params_file]
    for key, value in spec.parameters.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["-p", f"{key}:={text if text != '' else chr(39) * 2}"]
    for src, dst in spec.remappings:
        args += ["-r", f"{src}:={dst}"]
    return args


def node_environment() -> dict:
    """The nodes' environment: one machine, so DDS discovery stays on localhost unless the user says otherwise."""
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Monitor:
    """Sums up a run from what the graph publishes; runs in the launcher's process."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import TwistStamped

        from .nodes.common import RELIABLE

        if not rclpy.ok():
            rclpy.init(args=[])
        self.node = rclpy.create_node("launch_monitor")
        self.latencies_ms: list[float] = []
        self.latency_times: list[float] = []  # when each latency was seen, to show whether it drifts over a run
        # Off once the graph starts stopping: the launcher then waits on processes without spinning, and commands
        # read late would count that wait as latency (a few samples of 100+ ms at the end of every run).
        self.recording = True
        self.started = time.monotonic()
        self.status: dict[str, dict[str, str]] = {}
        self._last_stamp = None
        self.node.create_subscription(TwistStamped, "cmd", self._on_cmd, RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_cmd(self, msg) -> None:
        from .nodes.common import ms_since

        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        # one latency per camera frame, at its first command
        if self.recording and stamp != self._last_stamp and stamp != (0, 0):
            self._last_stamp = stamp
            self.latencies_ms.append(ms_since(msg.header.stamp))
            self.latency_times.append(time.monotonic() - self.started)

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            self.status[status.name] = {kv.key: kv.value for kv in status.values}

    def spin_for(self, seconds: float) -> None:
        import rclpy

        rclpy.spin_once(self.node, timeout_sec=seconds)

    @property
    def laps_completed(self) -> int:
        return int(float(self.status.get("jetracer_trt/sim", {}).get("laps_completed", 0)))

    def summary(self) -> dict:
        import numpy as np

        sim = self.status.get("jetracer_trt/sim", {})
        inference = self.status.get("jetracer_trt/inference", {})
        frames_in = int(float(inference.get("frames", 0)))
        published = int(float(sim["frames"])) + 1 if "frames" in sim else None
        lat = self.latencies_ms
        minutes = np.asarray(self.latency_times) // 60
        by_minute = [round(float(np.percentile(np.asarray(lat)[minutes == m], 50)), 2) for m in np.unique(minutes)]
        return {
            "frames": frames_in,
            "e2e_latency_ms": {"p50": float(np.percentile(lat, 50)) if lat else None,
                               "p99": float(np.percentile(lat, 99)) if lat else None},
            "e2e_latency_ms_p50_by_minute": by_minute,
            "dropped_frames": max(0, published - frames_in) if published is not None else None,
            "laps_completed": int(float(sim["laps_completed"])) if "laps_completed" in sim else None,
            "off_track_events": int(float(sim["off_track_events"])) if "off_track_events" in sim else None,
        }

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def start_nodes(specs: list[NodeSpec], params_file: str = "") -> dict[str, subprocess.Popen]:
    env = node_environment()
    procs = {}
    for spec in specs:
        cmd = [sys.executable, "-m", spec.module, *ros_arguments(spec, params_file)]
        log.debug("starting %s", " ".join(cmd))
        procs[spec.name] = subprocess.Popen(cmd, env=env)
    return procs


def stop_nodes(procs: dict[str, subprocess.Popen], names=None) -> list[str]:
    """SIGINT to the named nodes (default: all), then SIGKILL to those still running after ``STOP_GRACE_S``;
    returns the names of the killed ones (a node that had to be killed did not shut down its own way)."""
    killed = []
    chosen = {name: p for name, p in procs.items() if names is None or name in names}
    for proc in chosen.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    for name, proc in chosen.items():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s: killing it", name, STOP_GRACE_S)
            proc.kill()
            proc.wait()
            killed.append(name)
    return killed


def run_graph(specs: list[NodeSpec], duration_s: float | None = None, params_file: str = "",
              until=None) -> dict:
    """Runs the graph until ``duration_s`` passes, ``until(monitor)`` is true, a node dies, or Ctrl-C."""
    procs = start_nodes(specs, params_file)
    monitor = Monitor()
    stop = {"why": None}
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(why="SIGTERM"))
    start = time.monotonic()
    try:
        while stop["why"] is None:
            monitor.spin_for(0.1)
            dead = [name for name, p in procs.items() if p.poll() is not None]
            if dead:
                stop["why"] = f"node {dead[0]} exited with status {procs[dead[0]].returncode}"
            elif duration_s is not None and time.monotonic() - start >= duration_s:
                stop["why"] = "duration reached"
            elif until is not None and until(monitor):
                stop["why"] = "goal reached"
    except KeyboardInterrupt:
        stop["why"] = "interrupted"
    finally:
        signal.signal(signal.SIGTERM, previous)
        monitor.recording = False
        # the frame source first, then let the pipeline drain and every node report its final counts
        killed = stop_nodes(procs, names=[specs[0].name])
        drain_end = time.monotonic() + DRAIN_S
        while time.monotonic() < drain_end:
            monitor.spin_for(0.05)
        killed += stop_nodes(procs)
        summary = monitor.summary()
        monitor.close()
    log.info("graph stopped: %s", stop["why"])
    summary["stopped_because"] = stop["why"]
    summary["killed_nodes"] = killed
    return summary
