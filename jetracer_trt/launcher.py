"""The pip-only way to run a graph: every node of a ``graph.NodeSpec`` list as its own process, plus a monitor.

**Stopping.** Ctrl-C (SIGINT to the terminal's foreground process group), SIGINT, SIGTERM, SIGHUP (a closed
terminal, a dropped SSH session) or SIGQUIT to the runner, ``duration_s``, the ``until`` goal or a node that exits:
all end the same way, the runner's own: SIGINT to the frame source first, a moment for the pipeline to drain and
every node to report its final counts, then SIGINT to the rest (the control node puts the car in neutral on the
way out), SIGKILL to any node still running ``STOP_GRACE_S`` after its SIGINT. A second signal while stopping does
not cut the sequence short. Each node runs in a session of its own, so that the terminal's signals reach the runner
only and the order holds; a node whose runner is gone (even SIGKILLed) stops its own way (``nodes.common.run``).
A node still starting when its SIGINT comes (Python starting, its imports, the constructor) ends at once with
status 0, not as a failure (``nodes.entry``).

**The last resort.** When the control node ends without its own neutral (killed, crashed, any non-zero exit),
whenever that happens, the runner writes neutral to the car's board itself (``actuators.neutral.write_neutral``
with the control node's ``actuator`` and ``calibration_file``, as the params file and the arguments set them).

**The summary** (``run_graph``'s dict, ``jetracer-trt launch drive --json``): frames, capture-to-command latency
(whole run and per minute), dropped frames, laps and off-track events, per-stage latency from the nodes'
/diagnostics, with task pose the people and follow-me counts and the parser's latency (``pose``) and the
simulated walker's distances and collisions (``walker``; both None otherwise),
why the graph stopped, which nodes failed, were killed, and whether the supervisor set neutral.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .graph import NodeSpec, params_file_values
from .latency import LatencyStats

log = logging.getLogger(__name__)
STOP_GRACE_S = 5.0
DRAIN_S = 1.5  # > the 1 s diagnostics period
# per-stage latency in the summary: stage -> (/diagnostics status, key prefix); whole run, p50 and p99
STAGE_KEYS = {
    "capture_to_inference": ("jetracer_trt/inference", "capture_to_inference_ms"),
    "preprocess": ("jetracer_trt/inference", "preprocess_ms"),
    "model": ("jetracer_trt/inference", "model_ms"),
    "inference_to_control": ("jetracer_trt/control", "inference_to_control_ms"),
    "control": ("jetracer_trt/control", "control_ms"),
}
OVERHEAD_KEY = ("jetracer_trt/control", "overhead_ms")  # capture -> command minus that frame's model time
WALKER_KEYS = ("walker_distance_min_m", "walker_distance_mean_m", "walker_distance_max_m", "walker_walked_m",
               "walker_out_of_view_s", "collisions")  # of the simulator's /diagnostics


def _yaml_value(value) -> str:
    """A ``-p name:=value`` value as YAML, the way rcl reads it: strings quoted (a model file named ``1.onnx``
    or an empty string stays a string), booleans lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def ros_arguments(spec: NodeSpec, params_file: str = "") -> list[str]:
    """``--ros-args`` for one node: the defaults, the params file, the explicit arguments, so that each wins over
    the one before (see ``graph`` for the precedence).

    rcl keeps parameters in sections by node pattern (``/**``, ``sim``, ``/sim``, ...) and applies the sections in
    the order each first appeared, a later value within a section replacing an earlier one. So the defaults go to
    ``/**`` before the file (any section of the file comes after or replaces them), and the explicit values to the
    node's own section after it (``-p sim:track_seed:=1001``): either that section is new, hence applied last, or
    the file's own ``sim:`` section, where they come last.
    """
    args = ["--ros-args", "-r", f"__node:={spec.name}"]
    for key, value in spec.defaults.items():
        args += ["-p", f"{key}:={_yaml_value(value)}"]
    if params_file:
        args += ["--params-file", params_file]
    for key, value in spec.parameters.items():
        args += ["-p", f"{spec.name}:{key}:={_yaml_value(value)}"]
    for src, dst in spec.remappings:
        args += ["-r", f"{src}:={dst}"]
    return args


def node_environment() -> dict:
    """The nodes' environment: one machine, so DDS discovery stays on localhost unless the user says otherwise."""
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _float_or_none(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


class Monitor:
    """Sums up a run from what the graph publishes; runs in the launcher's process, on a context of its own with
    no rclpy signal handlers (they would shut the context down under the runner on Ctrl-C)."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import TwistStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from .nodes.common import RELIABLE

        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("launch_monitor", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.latency = LatencyStats()
        self.latency_by_minute: list[LatencyStats] = []  # to show whether latency drifts over a run
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
            ms = ms_since(msg.header.stamp)
            self.latency.add(ms)
            minute = int((time.monotonic() - self.started) // 60)
            while len(self.latency_by_minute) <= minute:
                self.latency_by_minute.append(LatencyStats(recent=1))
            self.latency_by_minute[minute].add(ms)

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            self.status[status.name] = {kv.key: kv.value for kv in status.values}

    def spin_for(self, seconds: float) -> None:
        """Handles what arrives for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            # the same timeout every call: a new one makes the executor drop what its last wait found and start over
            self.executor.spin_once(timeout_sec=0.05)

    @property
    def laps_completed(self) -> int:
        return int(float(self.status.get("jetracer_trt/sim", {}).get("laps_completed", 0)))

    def _p50_p99(self, status: str, prefix: str) -> dict:
        """A stage's whole-run percentiles from the last diagnostics; None when not reported or not measured (a
        node reports 0 and 0 for a stage without samples: a measured latency is never exactly 0)."""
        values = self.status.get(status, {})
        p50, p99 = _float_or_none(values.get(f"{prefix}_p50")), _float_or_none(values.get(f"{prefix}_p99"))
        if p50 == 0.0 and p99 == 0.0:
            p50 = p99 = None
        return {"p50": p50, "p99": p99}

    def summary(self) -> dict:
        sim = self.status.get("jetracer_trt/sim", {})
        camera = self.status.get("jetracer_trt/camera", {})
        inference = self.status.get("jetracer_trt/inference", {})
        frames_in = int(float(inference.get("frames", 0)))
        # frames the source published (the simulator counts steps, one fewer than frames)
        published = (int(float(sim["frames"])) + 1 if "frames" in sim
                     else int(float(camera["frames"])) if "frames" in camera else None)
        p50, p99 = self.latency.whole_run()
        measured = self.latency.count > 0
        return {
            "frames": frames_in,
            "e2e_latency_ms": {"p50": p50 if measured else None, "p99": p99 if measured else None},
            "e2e_latency_ms_p50_by_minute": [round(m.percentile(50), 2) for m in self.latency_by_minute if m.count],
            "dropped_frames": max(0, published - frames_in) if published is not None else None,
            "laps_completed": int(float(sim["laps_completed"])) if "laps_completed" in sim else None,
            "off_track_events": int(float(sim["off_track_events"])) if "off_track_events" in sim else None,
            "stages_ms": {stage: self._p50_p99(*where) for stage, where in STAGE_KEYS.items()},
            "overhead_ms": self._p50_p99(*OVERHEAD_KEY),
            "pose": self.pose_summary(),
            # the simulator's walking figure (task pose): how the car kept its distance (None: no walker)
            "walker": ({key: _float_or_none(sim.get(key)) for key in WALKER_KEYS}
                       if "walker_distance_min_m" in sim else None),
            # the collection graph: samples written this session (None: no data-collection node)
            "samples_recorded": (int(float(recorded["written"])) if "written" in (recorded := self.status.get(
                "jetracer_trt/data_collection", {})) else None),
        }

    def pose_summary(self) -> dict | None:
        """The pose task's counts from the inference node's last diagnostics (None: task road_following):
        frames in which people were found, frames in which follow-me followed someone, people in the last frame,
        follow-me's last state and the parser's whole-run latency."""
        inference = self.status.get("jetracer_trt/inference", {})
        if inference.get("task") != "pose":
            return None
        return {"frames_with_people": int(float(inference.get("frames_with_people", 0))),
                "following_frames": int(float(inference.get("following_frames", 0))),
                "people_last_frame": int(float(inference.get("people", 0))),
                "follow": inference.get("follow"),
                "parse_ms": self._p50_p99("jetracer_trt/inference", "parse_ms")}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def node_command(spec: NodeSpec, params_file: str = "") -> list[str]:
    """The node's process: its module's ``main()`` through ``nodes.entry``, which handles the stop signals before
    the module imports anything."""
    return [sys.executable, "-m", "jetracer_trt.nodes.entry", spec.module, *ros_arguments(spec, params_file)]


def start_nodes(specs: list[NodeSpec], params_file: str = "", failure_dir: str | None = None
                ) -> dict[str, subprocess.Popen]:
    """One process per node, each in a session of its own (the terminal's Ctrl-C and hang-up reach the runner,
    which stops the nodes in order). ``failure_dir``: where each node writes its one-line reason if it fails.

    Each starts with the stop signals blocked (a process inherits the signal mask of the thread that starts it):
    a stop the runner sends while Python itself starts waits until ``nodes.entry`` has its handlers in place, where
    it would otherwise end the node by the signal or with a KeyboardInterrupt traceback, as a failure."""
    from .nodes.common import FAILURE_FILE_ENV
    from .nodes.entry import STOP_SIGNALS

    env = node_environment()
    procs = {}
    for spec in specs:
        cmd = node_command(spec, params_file)
        log.debug("starting %s", " ".join(cmd))
        node_env = {**env, FAILURE_FILE_ENV: str(Path(failure_dir) / spec.name)} if failure_dir else env
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # the runner's own wait until after
        try:
            procs[spec.name] = subprocess.Popen(cmd, env=node_env, start_new_session=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
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


def exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def neutral_after_exit(name: str, returncode: int, kind: str, calibration: str | None,
                       logger: logging.Logger = log) -> bool | None:
    """The last resort, for a supervisor that saw ``name``, the node that drives the car, end with ``returncode``:
    nothing when it exited 0 (its own shutdown set neutral); else neutral through
    ``actuators.neutral.write_neutral`` and one log line. Returns whether neutral is set, None when nothing was
    done."""
    if returncode == 0:
        return None
    from .actuators.neutral import write_neutral

    how = exit_description(returncode)
    landed = bool(write_neutral(kind, calibration))
    if kind in ("sim", "none"):
        logger.warning(f"{name} ended ({how}) without its own neutral: actuator {kind}, nothing to set")
    elif landed:
        logger.warning(f"{name} ended ({how}) without its own neutral: neutral set on the {kind} board by its "
                       "supervisor")
    else:
        logger.critical(f"{name} ended ({how}) and neutral could NOT be set on the {kind} board: the car may still "
                        "be moving: switch it off")
    return landed


class LastResort:
    """``neutral_after_exit`` for the runner: once, as soon as the node that drives the car has ended, with the
    ``actuator`` and ``calibration_file`` it ran with (defaults, params file, given arguments)."""

    def __init__(self, specs: list[NodeSpec], params_file: str = ""):
        driver = next((s for s in specs if "actuator" in s.effective_parameters()), None)
        self.name = driver.name if driver else None
        params = driver.effective_parameters(params_file_values(params_file, driver.name)) if driver else {}
        self.kind = str(params.get("actuator", "none"))
        self.calibration = str(params.get("calibration_file", "")) or None
        self.done = False
        self.landed = False

    def check(self, procs: dict[str, subprocess.Popen]) -> None:
        proc = procs.get(self.name) if self.name else None
        if self.done or proc is None or proc.poll() is None:
            return
        landed = neutral_after_exit(self.name, proc.returncode, self.kind, self.calibration)
        self.done = landed is not None
        self.landed = bool(landed)


def run_graph(specs: list[NodeSpec], duration_s: float | None = None, params_file: str = "",
              until=None) -> dict:
    """Runs the graph until ``duration_s`` passes, ``until(monitor)`` is true, a node exits, or a signal (see the
    module docstring); returns the summary."""
    from .nodes.common import stop_signals_handled_by

    stop = {"why": None}

    def on_signal(signum, _frame):
        if stop["why"] is None:
            stop["why"] = signal.Signals(signum).name

    last_resort = LastResort(specs, params_file)
    monitor = None
    with stop_signals_handled_by(on_signal), tempfile.TemporaryDirectory(prefix="jetracer-trt-") as failure_dir:
        procs = start_nodes(specs, params_file, failure_dir)
        try:
            monitor = Monitor()
            start = time.monotonic()
            while stop["why"] is None:
                monitor.spin_for(0.1)
                last_resort.check(procs)
                exited = [name for name, p in procs.items() if p.poll() is not None]
                if exited:
                    stop["why"] = f"node {exited[0]} exited ({exit_description(procs[exited[0]].returncode)})"
                elif duration_s is not None and time.monotonic() - start >= duration_s:
                    stop["why"] = "duration reached"
                elif until is not None and until(monitor):
                    stop["why"] = "goal reached"
        finally:
            if monitor is not None:
                monitor.recording = False
            # the frame source first, then let the pipeline drain and every node report its final counts
            killed = stop_nodes(procs, names=[specs[0].name])
            drain_end = time.monotonic() + DRAIN_S
            while monitor is not None and time.monotonic() < drain_end:
                monitor.spin_for(0.05)
                last_resort.check(procs)
            killed += stop_nodes(procs)
            last_resort.check(procs)
            summary = monitor.summary() if monitor is not None else {}
            if monitor is not None:
                monitor.close()
        failed = {}
        for name, proc in procs.items():
            reason_file = Path(failure_dir) / name
            if name in killed:
                failed[name] = f"did not stop within {STOP_GRACE_S:.0f} s of SIGINT: killed"
            elif proc.returncode != 0:
                reason = reason_file.read_text().strip() if reason_file.is_file() else ""
                failed[name] = reason or exit_description(proc.returncode)
    log.info("graph stopped: %s", stop["why"])
    summary["stopped_because"] = stop["why"]
    summary["killed_nodes"] = killed
    summary["failed_nodes"] = failed
    summary["neutral_by_supervisor"] = last_resort.done and last_resort.landed
    return summary
