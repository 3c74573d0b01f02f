"""A stop asked for while a node starts (Python starting, the module's imports, rclpy.init, the constructor) or after
it has finished ends it cleanly: its own status, no traceback, never by the signal."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="the nodes need rclpy: pip install -e '.[ros]'")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ["ROS_DOMAIN_ID"] = str(100 + (os.getpid() + 37) % 100)  # keep parallel test runs apart

from jetracer_trt.graph import NodeSpec  # noqa: E402
from jetracer_trt.launcher import run_graph, start_nodes, stop_nodes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# A node that says which phase it is in and stays there as long as its PHASE says (env PROBED_STAY)
PROBED_MODULE = """
import os, sys, threading, time

STAY = os.environ.get("PROBED_STAY", "")
print("importing", flush=True)
if STAY == "importing":
    time.sleep(60)  # a slow import (OpenCV, ONNX Runtime on a loaded machine), a bit longer

from rclpy.node import Node
from jetracer_trt.nodes.common import main_for

class Probed(Node):
    def __init__(self):
        super().__init__("probed")
        print("building", flush=True)
        if STAY == "building":
            time.sleep(60)  # a model loaded, an engine built
        if STAY == "finished":
            threading.Thread(target=time.sleep, args=(60,)).start()  # keeps the interpreter from exiting
            self.fatal_error = "camera gone for good"
        self.create_timer(0.05, lambda: print("up", flush=True))

    def shutdown(self):
        print("shutdown ran", flush=True)

main = main_for(Probed)

if __name__ == "__main__":
    main()
"""


class Output:
    """What the nodes started the runner's way write: they inherit the test's stdout and stderr, which ``capfd``
    captures."""

    def __init__(self, capfd):
        self.capfd, self.text = capfd, ""

    def read(self) -> str:
        out, err = self.capfd.readouterr()
        self.text += out + err
        return self.text

    def wait_for(self, proc, pattern: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not re.search(pattern, self.read(), re.MULTILINE):
            assert proc.poll() is None and time.monotonic() < end, self.text
            time.sleep(0.01)


@pytest.fixture
def output(capfd):
    return Output(capfd)


@pytest.fixture
def probed(tmp_path, monkeypatch):
    """Starts the probed node the runner's way (the signal mask, the entry module), staying in a phase; yields
    ``start(stay) -> Popen``."""
    (tmp_path / "probed_node.py").write_text(PROBED_MODULE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    started = []

    def start(stay: str) -> subprocess.Popen:
        monkeypatch.setenv("PROBED_STAY", stay)
        started.append(start_nodes([NodeSpec("probed", "probed_node", "probed_node")])["probed"])
        return started[-1]

    yield start
    stop_nodes({str(i): proc for i, proc in enumerate(started)})


def stopped(proc, output: Output, timeout: float = 10) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    status = proc.wait(timeout=timeout)
    return status, output.read()


def test_a_stop_while_python_itself_starts_waits_for_the_handlers_and_ends_the_node_cleanly(probed, output):
    # right after the process exists: Python is still starting, long before any code of the node's
    status, out = stopped(probed(""), output)
    assert status == 0, out
    assert "Traceback" not in out and "importing" not in out, out


@pytest.mark.parametrize("phase", ["importing", "building"])
def test_a_stop_while_the_node_imports_or_is_built_ends_it_at_once_and_cleanly(probed, output, phase):
    proc = probed(phase)
    output.wait_for(proc, f"^{phase}$")
    asked = time.monotonic()
    status, out = stopped(proc, output)
    assert time.monotonic() - asked < 5, out  # the import or the build was not waited for
    assert status == 0, out
    assert "Traceback" not in out and "shutdown ran" not in out, out  # nothing was built: nothing to shut down


def test_a_stop_of_a_running_node_ends_it_its_own_way(probed, output):
    proc = probed("")
    output.wait_for(proc, "^up$")
    status, out = stopped(proc, output)
    assert status == 0 and "shutdown ran" in out and "Traceback" not in out, out


def test_a_stop_after_the_node_has_finished_ends_the_process_with_its_status(probed, output):
    # run() has returned (status 1) but a thread keeps the interpreter from exiting: a stop still ends it
    proc = probed("finished")
    output.wait_for(proc, "^shutdown ran$")
    time.sleep(0.5)
    assert proc.poll() is None  # still there, waiting for the thread
    status, out = stopped(proc, output)
    assert status == 1, out
    assert "Traceback" not in out, out
    assert len(re.findall(r"\[ERROR\] \[[\d.]+\] \[probed\]: camera gone for good", out)) == 1, out


def test_a_stop_at_any_moment_of_a_real_nodes_start_ends_it_cleanly(output):
    # the simulator's imports are the heaviest: depending on the delay and the machine's load a stop lands in
    # Python's start, the imports, rclpy.init, the constructor or the running node; each ends it cleanly
    spec = NodeSpec("sim", "sim_node", "jetracer_trt.nodes.sim_node", {"use_sim_time": False})
    up = []
    for delay in (0.0, 0.05, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0):
        proc = start_nodes([spec])["sim"]
        time.sleep(delay)
        was_up = bool(re.search(r"\[sim\]: track seed", output.read()))
        assert stop_nodes({"sim": proc}) == [], output.text
        out = output.read()
        assert proc.returncode == 0 and "Traceback" not in out, (delay, proc.returncode, out)
        output.text = ""
        up.append(was_up)
        if was_up:
            break
    assert up[0] is False and up[-1] is True, up  # from Python's start to a running node


# -- the runner: a stop while a node still imports is not a failure of that node -----------------------------------

def test_a_node_failing_at_start_while_another_still_imports_is_the_one_failed_node(probed, output, monkeypatch):
    monkeypatch.setenv("PROBED_STAY", "importing")  # as the simulator's heavy imports on a loaded machine
    specs = [NodeSpec("probed", "probed_node", "probed_node"),
             NodeSpec("inference", "inference_node", "jetracer_trt.nodes.inference_node", {"model": "/missing.onnx"})]
    summary = run_graph(specs, duration_s=60)
    out = output.read()
    assert "importing" in out and "building" not in out, out  # the stop came while it imported
    assert summary["stopped_because"] == "node inference exited (exit status 2)", out
    assert summary["failed_nodes"] == {"inference": "model file not found: /missing.onnx"}, out
    assert summary["killed_nodes"] == [] and "Traceback" not in out, out


def test_a_signal_to_the_runner_while_its_nodes_start_stops_them_all_cleanly(probed, tmp_path):
    # Ctrl-C or `kill -INT <runner>` during start-up: the runner stops its nodes while one still imports
    script = ("import json; from jetracer_trt.graph import NodeSpec; from jetracer_trt.launcher import run_graph; "
              "print(json.dumps(run_graph([NodeSpec('probed', 'probed_node', 'probed_node')])), flush=True)")
    out = tmp_path / "runner.txt"
    with open(out, "w") as f:
        runner = subprocess.Popen([sys.executable, "-c", script], stdout=f, stderr=subprocess.STDOUT,
                                  env={**os.environ, "PROBED_STAY": "importing"})
    try:
        end = time.monotonic() + 60
        while "importing" not in out.read_text() and time.monotonic() < end:
            time.sleep(0.01)
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=30) == 0, out.read_text()
    finally:
        if runner.poll() is None:
            runner.kill()
    text = out.read_text()
    summary = json.loads(text.strip().splitlines()[-1])
    assert summary["stopped_because"] == "SIGINT", text
    assert summary["failed_nodes"] == {} and summary["killed_nodes"] == [] and "Traceback" not in text, text


def test_every_node_console_script_starts_its_node_module_through_the_entry_module(monkeypatch):
    # `ros2 run` and `ros2 launch` start the console scripts: each handles the stop signals before its imports
    import importlib.util

    import setuptools

    from jetracer_trt.nodes import entry

    recorded = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: recorded.update(kwargs))
    monkeypatch.chdir(ROOT)
    exec(compile((ROOT / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "setup"})  # noqa: S102
    scripts = dict(line.replace(" ", "").split("=") for line in recorded["entry_points"]["console_scripts"])
    nodes = {name: target for name, target in scripts.items() if name.endswith("_node")}
    assert set(nodes) == {p.stem for p in (ROOT / "jetracer_trt" / "nodes").glob("*_node.py")}
    started = []
    monkeypatch.setattr(entry, "run_module", lambda name, argv=None: started.append(name))
    for name, target in nodes.items():
        module, function = target.split(":")
        assert module == "jetracer_trt.nodes.entry", target
        getattr(entry, function)()
        assert started[-1] == f"jetracer_trt.nodes.{name}" and importlib.util.find_spec(started[-1]), target
