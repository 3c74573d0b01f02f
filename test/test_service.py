"""launch/jetracer-drive.service: systemd accepts it (``systemd-analyze verify`` of both ExecStart forms, on a copy
whose user and paths exist on this machine), and its stop path works: the pip-only ExecStart, started with SIGINT
ignored and stopped with the unit's KillSignal sent to the main process only (KillMode=mixed), ends cleanly within
TimeoutStopSec. The ROS 2 form's stop path needs the ROS 2 tools: test_ros2_real.py runs it.
"""
import getpass
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import ros2_tools

UNIT_TEXT = ros2_tools.UNIT.read_text()
DIRECTIVES = ros2_tools.unit_directives(UNIT_TEXT)
PIP_FORM = "/home/jetson/jetracer_trt/.venv/bin/jetracer-trt"
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (apt-get install systemd; .ci/run installs it)")


def the(key: str) -> str:
    (value,) = DIRECTIVES[("Service", key)]
    return value


def pip_command() -> list[str]:
    """The unit's pip-only ExecStart with this checkout's jetracer-trt (the test environment's), in the simulator."""
    argv = shlex.split(ros2_tools.unit_exec_starts(UNIT_TEXT)["pip"])
    assert argv[0] == PIP_FORM and argv[1:3] == ["launch", "drive"], argv
    argv[0] = str(Path(sys.executable).with_name("jetracer-trt"))
    for option in ("--source", "--actuator"):
        argv[argv.index(option) + 1] = "sim"
    return argv


def checkable_copy(tmp_path: Path, form: str) -> Path:
    """The unit with ExecStart set to ``form`` (pip or ros2), its User, WorkingDirectory and the pip form's
    executable replaced by ones this machine has: what is left for systemd to judge is the unit itself."""
    lines = []
    for line in UNIT_TEXT.splitlines():
        if line.startswith("User="):
            line = f"User={getpass.getuser()}"
        elif line.startswith("WorkingDirectory="):
            line = f"WorkingDirectory={tmp_path}"
        elif line.startswith("ExecStart="):
            line = f"ExecStart={shlex.join(pip_command())}" if form == "pip" else "# the pip form"
        elif line.startswith("# ExecStart=") and form == "ros2":
            line = line[len("# "):]
        lines.append(line)
    unit = tmp_path / ros2_tools.UNIT.name
    unit.write_text("\n".join(lines) + "\n")
    return unit


def systemd_analyze_verify(unit: Path) -> tuple[int, str]:
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                         check=False)
    return out.returncode, (out.stdout + out.stderr).strip()


@needs_systemd_analyze
@pytest.mark.parametrize("form", ["pip", "ros2"])
def test_systemd_analyze_verify_accepts_the_unit(tmp_path, form):
    # systemd-analyze exits 0 even for an unknown directive or a malformed value, so its silence is the check
    assert systemd_analyze_verify(checkable_copy(tmp_path, form)) == (0, "")


@needs_systemd_analyze
def test_systemd_analyze_verify_reports_a_misspelt_directive(tmp_path):
    unit = checkable_copy(tmp_path, "pip")
    unit.write_text(unit.read_text().replace("KillSignal=", "KillSignall="))
    assert "KillSignall" in systemd_analyze_verify(unit)[1]


def test_the_unit_stops_the_graph_with_sigint_to_its_launcher_only():
    assert the("KillSignal") == "SIGINT"  # what Ctrl-C sends: each node shuts down its own way
    # mixed: the launcher alone gets SIGINT and stops its nodes once each (control-group would signal every node
    # as well, so that each would hear SIGINT twice, once from systemd and once from the launcher)
    assert the("KillMode") == "mixed"
    assert int(the("TimeoutStopSec")) > 0


def test_the_ros2_form_sources_the_distribution_the_unit_names_and_execs_ros2_launch():
    distribution = ros2_tools.unit_environment(UNIT_TEXT)["ROS_DISTRO"]
    assert distribution
    command = shlex.split(ros2_tools.unit_exec_starts(UNIT_TEXT)["ros2"])
    assert command[:2] == ["/bin/bash", "-c"]
    assert command[2].startswith("source /opt/ros/${ROS_DISTRO}/setup.bash && ")
    # exec: ros2 launch is the main process, which KillMode=mixed signals
    assert " && exec env --default-signal=INT ros2 launch jetracer_trt drive.launch.py " in command[2]


def test_the_pip_form_stops_cleanly_on_the_kill_signal_within_timeout_stop_sec(tmp_path):
    env = ros2_tools.isolated_ros_environment({**os.environ, **ros2_tools.unit_environment(UNIT_TEXT)},
                                              tmp_path / "ros_home")
    # started with SIGINT ignored, as from a script's background job: the runner must still stop on it
    graph = ros2_tools.Started([*pip_command(), "--json"], env, tmp_path / "out.log", cwd=tmp_path,
                               preexec_fn=ros2_tools.ignore_sigint)
    try:
        missing = graph.missing(ros2_tools.GRAPH_UP, 90)
        assert missing is None, f"the graph did not come up (no {missing!r}):\n{graph.text()[-3000:]}"
        graph.proc.send_signal(getattr(signal, the("KillSignal")))  # KillMode=mixed: the main process only
        rc = graph.wait(int(the("TimeoutStopSec")))
        out = graph.text()
        assert rc == 0, f"not stopped within TimeoutStopSec (status {rc}):\n{out[-3000:]}"
        assert graph.processes() == [], "processes left for systemd's SIGKILL"
        summary = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
        assert summary["killed_nodes"] == [], summary
    finally:
        graph.stop()
