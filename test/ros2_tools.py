"""The real ROS 2 tools for the tests: where they are, a colcon workspace built from the working tree, processes
started the way a user, a script or systemd starts them, a /cmd listener, and launch/jetracer-drive.service read
the way the tests run it.

The tools are found in this order:
- ``JETRACER_ROS2_TOOLS=VENV``: a virtual environment made by ``../shared/ros2-tools/install VENV`` (colcon, the
  ROS 2 project's launch, launch_ros, launch_testing and ros2cli on the ros-kilted rclpy wheels). The package's
  runtime requirements (numpy, OpenCV, ONNX Runtime, ...) are installed into it when missing, as a ROS 2 user's
  rosdep would.
- ``ros2`` and ``colcon`` on PATH: a sourced ROS 2 install, which must hold the requirements itself.

Run as a script, ``python ros2_tools.py listen OUT`` writes the throttle and steering of every /cmd it hears to OUT.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "jetracer_trt"
TOOLS_ENV = "JETRACER_ROS2_TOOLS"
NO_TOOLS = ("no ROS 2 tools: set JETRACER_ROS2_TOOLS=VENV made by ../shared/ros2-tools/install, "
            "or source a ROS 2 install")
# what never belongs in the workspace copy of the package when the checkout is not a git repository
UNIT = ROOT / "launch" / "jetracer-drive.service"
# the first line each node logs once it runs: the graph is up when all three are in the output
GRAPH_UP = (r"\[sim\]: track seed", r"\[inference\]: .* ready", r"\[control\]: profile")
NOT_PACKAGE = {".git", ".venv", "runs", "data", "build", "install", "log", "__pycache__", ".pytest_cache"}


class ToolsError(RuntimeError):
    """The tools were asked for (JETRACER_ROS2_TOOLS) but are unusable, or a workspace could not be built."""


@dataclass(frozen=True)
class Tools:
    where: str                     # how they were found, for messages
    setup_scripts: tuple[Path, ...]  # sourced in this order before the workspace's own install/setup.bash
    venv_python: Path | None       # the ros2-tools venv's python (None: a system ROS 2 install)


def find_tools(environ=os.environ) -> Tools | None:
    """The ROS 2 tools this machine has, or None; raises ToolsError when JETRACER_ROS2_TOOLS names a folder that is
    not a ros2-tools venv (asking for the tools and not getting them must not pass as a skip)."""
    venv = environ.get(TOOLS_ENV, "").strip()
    if venv:
        venv = Path(venv).resolve()
        scripts = (venv / "bin" / "activate", venv / "ros2_underlay" / "install" / "setup.bash")
        for needed in (*scripts, venv / "bin" / "ros2", venv / "bin" / "colcon", venv / "bin" / "launch_test"):
            if not needed.exists():
                raise ToolsError(f"{TOOLS_ENV}={venv} is not a ros2-tools environment: {needed} is missing "
                                 f"(make one with ../shared/ros2-tools/install {venv})")
        return Tools(f"{TOOLS_ENV}={venv}", scripts, venv / "bin" / "python")
    if shutil.which("ros2", path=environ.get("PATH")) and shutil.which("colcon", path=environ.get("PATH")):
        return Tools("ros2 and colcon on PATH", (), None)
    return None


def sourced(scripts, environ: dict) -> dict:
    """The environment after ``source``-ing each script in bash (colcon's setup files are not nounset-safe)."""
    script = 'set +u; for f in "$@"; do source "$f" || exit 1; done; env -0'
    out = subprocess.run(["bash", "-c", script, "bash", *map(str, scripts)], env=environ, capture_output=True,
                         check=False)
    if out.returncode != 0:
        raise ToolsError(f"sourcing {' '.join(map(str, scripts))} failed: {out.stderr.decode(errors='replace')}")
    pairs = (item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


def package_files(root: Path = ROOT) -> list[str]:
    """The working tree's package files: tracked and untracked-but-not-ignored ones, as they are on disk now."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"],
                            capture_output=True, check=False)
    if listed.returncode == 0:
        names = [n for n in listed.stdout.decode().split("\0") if n]
    else:  # not a git checkout (an unpacked archive): everything but build outputs and environments
        names = [str(p.relative_to(root)) for p in root.rglob("*")
                 if p.is_file() and not NOT_PACKAGE & set(p.relative_to(root).parts)]
    return sorted(n for n in names if (root / n).is_file())


def runtime_requirements() -> list[str]:
    """The package's install_requires, from the metadata of the installation the tests run from."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        return [r for r in requires(PACKAGE) or [] if "extra ==" not in r]
    except PackageNotFoundError:
        raise ToolsError(f"{PACKAGE} is not installed in {sys.executable}: its requirements are unknown") from None


@dataclass
class Workspace:
    root: Path
    env: dict  # the tools and install/setup.bash sourced, DDS kept on this machine in a domain of its own

    def run(self, *args, timeout=60, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout,
                              cwd=self.root, check=False, **kwargs)


def build_workspace(tools: Tools, root: Path, source: Path = ROOT) -> Workspace:
    """A colcon workspace at ``root`` whose src/ holds the working tree's package, built with ``colcon build``."""
    base = dict(os.environ)
    base.pop("PYTHONPATH", None)  # the test runner's own paths must not leak into the tools
    tools_env = sourced(tools.setup_scripts, base)
    if tools.venv_python is not None:
        constraints = ["-c", str(source / "constraints.txt")] if (source / "constraints.txt").is_file() else []
        pip = subprocess.run([str(tools.venv_python), "-m", "pip", "install", "-q", *constraints,
                              *runtime_requirements()], env=tools_env, capture_output=True, text=True, check=False)
        if pip.returncode != 0:
            raise ToolsError(f"installing the package's requirements into {tools.where} failed:\n{pip.stderr}")
    package = root / "src" / PACKAGE
    for name in package_files(source):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, package / name)
    build = subprocess.run(["colcon", "build"], cwd=root, env=tools_env, capture_output=True, text=True, check=False)
    if build.returncode != 0:
        raise ToolsError(f"colcon build failed ({tools.where}):\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    env = sourced([*tools.setup_scripts, root / "install" / "setup.bash"], base)
    return Workspace(root, isolated_ros_environment(env, root / "ros_home"))


def ignore_sigint():
    """preexec_fn: start a child with SIGINT ignored, as a shell starts a background job of a script."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Started:
    """A command in a session of its own (so that every process it starts can be found), output in a file."""

    def __init__(self, args, env: dict, log: Path, cwd: Path | None = None, preexec_fn=None, terminal=False):
        """``terminal``: stdin is a terminal, as for a command typed in a shell (``ros2 launch`` then leaves
        forwarding Ctrl-C to the terminal, which signals the whole foreground process group)."""
        self.log = log
        self._out = open(log, "wb")
        self._tty = os.openpty() if terminal else None
        stdin = self._tty[1] if terminal else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=stdin, start_new_session=True, preexec_fn=preexec_fn)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float, count: int = 1) -> re.Match | None:
        """The ``count``-th match of ``pattern`` in the output within ``timeout`` s (None: timed out, or the command
        ended without it)."""
        deadline = time.monotonic() + timeout
        while True:
            ended = self.proc.poll() is not None
            found = list(re.finditer(pattern, self.text(), re.M))
            if len(found) >= count:
                return found[count - 1]
            if ended or time.monotonic() > deadline:
                return None
            time.sleep(0.2)

    def missing(self, patterns, timeout: float) -> str | None:
        """The first of ``patterns`` not in the output within ``timeout`` s (None: all of them came)."""
        deadline = time.monotonic() + timeout
        for pattern in patterns:
            if self.wait_for(pattern, max(0.0, deadline - time.monotonic())) is None:
                return pattern
        return None

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if still running after ``timeout`` s."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def processes(self) -> list[int]:
        """Every live process of the session (the command and all it started, however deep)."""
        return session_processes(self.proc.pid)

    def stop(self) -> None:
        """Ends whatever is left: SIGKILL to the session's processes (the simulated car has no motor to leave)."""
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.wait(10)
        self._out.close()
        for fd in self._tty or ():
            os.close(fd)
        self._tty = None

    def ctrl_c(self) -> None:
        """What Ctrl-C in a terminal does: one SIGINT to every process of the foreground group."""
        os.killpg(self.proc.pid, signal.SIGINT)


def session_processes(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry.name))
    return sorted(found)


def isolated_ros_environment(environ: dict, home: Path) -> dict:
    """DDS discovery on this machine only, in a domain of this test process (parallel runs stay apart), logs and
    the ros2 daemon's state under ``home``."""
    return {**environ, "ROS_DOMAIN_ID": str(1 + os.getpid() % 100), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "ROS_HOME": str(home), "ROS_LOG_DIR": str(home / "log"), "PYTHONUNBUFFERED": "1"}


def unit_directives(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values, in order, of a systemd unit's active lines."""
    found: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith(("#", ";")) and "=" in line:
            key, value = line.split("=", 1)
            found.setdefault((section, key.strip()), []).append(value.strip())
    return found


def unit_exec_starts(text: str) -> dict[str, str]:
    """The unit's two ways to start the graph: ``pip`` (the active ExecStart) and ``ros2`` (the commented one)."""
    (pip,) = unit_directives(text)[("Service", "ExecStart")]
    (ros2,) = [line.strip()[len("# ExecStart="):] for line in text.splitlines()
               if line.strip().startswith("# ExecStart=")]
    return {"pip": pip, "ros2": ros2}


def unit_environment(text: str) -> dict:
    return dict(value.split("=", 1) for value in unit_directives(text).get(("Service", "Environment"), []))


def topic_rate_hz(workspace: Workspace, topic: str, log: Path, reports: int = 3, timeout: float = 20.0) -> float:
    """The average rate ``ros2 topic hz TOPIC`` prints once it has printed ``reports`` of them (one a second once
    it hears the topic), or its last one after ``timeout`` s (0.0: none)."""
    hz = Started(["ros2", "topic", "hz", topic], workspace.env, log, cwd=workspace.root)
    try:
        hz.wait_for(r"average rate: ", timeout, count=reports)
    finally:
        hz.proc.send_signal(signal.SIGINT)
        hz.wait(10)
        hz.stop()
    rates = re.findall(r"average rate: ([0-9.]+)", hz.text())
    return float(rates[-1]) if rates else 0.0


def start_listener(workspace: Workspace, out: Path) -> Started:
    """This file as a script in the tools' Python: every /cmd it hears, one line ``throttle steering``."""
    return Started(["python3", __file__, "listen", str(out)], workspace.env, out.with_suffix(".log"))


def commands_heard(out: Path) -> list[tuple[float, float]]:
    lines = out.read_text().splitlines() if out.exists() else []
    return [(float(a), float(b)) for a, b in (line.split() for line in lines)]


def listen(out: str) -> int:
    import rclpy
    from geometry_msgs.msg import TwistStamped
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    rclpy.init()
    node = rclpy.create_node("cmd_listener")
    with open(out, "w") as f:
        def heard(msg):
            f.write(f"{msg.twist.linear.x} {msg.twist.angular.z}\n")
            f.flush()

        qos = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(TwistStamped, "cmd", heard, qos)
        print("listening", flush=True)
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["listen"] and len(sys.argv) == 3:
        sys.exit(listen(sys.argv[2]))
    sys.exit(f"usage: {sys.argv[0]} listen OUT")
