"""The car's web page served by the real collection graph (`jetracer-trt launch collect --source sim --teleop web`,
every node its own process) in headless Chromium: the page loads and shows the graph's latency, a click at a known
pixel records that label on disk, undo removes it, the dataset browser deletes a sample for every reader, holding
the virtual joystick drives the simulated car and letting go stops it, and SIGINT to the runner stops the graph
cleanly with its summary."""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("rclpy", reason="the collection graph needs ROS 2's rclpy")
pytest.importorskip("aiohttp", reason="the web page needs the web extra: pip install -e '.[web]'")

from browser_page import (  # noqa: E402
    click_camera, delete_listed, hold_stick, latency_figures, listed_ids, message, needs_browser, open_dataset,
    open_page, release_stick, wait)
from selenium.webdriver.common.by import By  # noqa: E402

from jetracer_trt.dataset import read_dataset  # noqa: E402

pytestmark = needs_browser
DOMAIN_ID = str(100 + (os.getpid() + 71) % 100)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runner:
    """`jetracer-trt launch collect ...` as a subprocess, its output read by threads as it comes."""

    def __init__(self, *args: str):
        env = {**os.environ, "ROS_DOMAIN_ID": DOMAIN_ID, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
               "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "jetracer_trt.cli.main", "launch", "collect", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, lines) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def url(self) -> str | None:
        """The page's address as the data-collection node logs it ("web page: http://...")."""
        for line in list(self.err):
            if "[data_collection]" in line and "web page: " in line:
                return line.split("web page: ", 1)[1].strip()
        if self.proc.poll() is not None:
            raise AssertionError(f"the runner ended early ({self.proc.returncode}):\n" + "\n".join(self.err[-30:]))
        return None

    def interrupt(self, timeout_s: float = 30) -> int:
        self.proc.send_signal(signal.SIGINT)
        returncode = self.proc.wait(timeout=timeout_s)
        for reader in self._readers:
            reader.join(timeout=5)
        return returncode

    def kill_if_running(self) -> None:
        if self.proc.poll() is None:
            try:
                self.interrupt()
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Car:
    """What the graph says about the simulated car: its pose and the commands, from a node of the test's own."""

    def __init__(self):
        import rclpy
        from geometry_msgs.msg import PoseStamped, TwistStamped
        from rclpy.executors import SingleThreadedExecutor

        from jetracer_trt.nodes.common import RELIABLE

        os.environ["ROS_DOMAIN_ID"] = DOMAIN_ID
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node(f"web_graph_test_{os.getpid()}", context=self.context)
        self.poses: list[tuple[float, float, float]] = []  # (time.monotonic(), x, y)
        self.throttles: list[float] = []
        self.node.create_subscription(PoseStamped, "sim/pose", self._on_pose, RELIABLE)
        self.node.create_subscription(TwistStamped, "cmd", lambda m: self.throttles.append(m.twist.linear.x),
                                      RELIABLE)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinning = True
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _on_pose(self, msg) -> None:
        self.poses.append((time.monotonic(), msg.pose.position.x, msg.pose.position.y))

    def _spin(self) -> None:
        while self._spinning:
            self.executor.spin_once(timeout_sec=0.05)

    def position(self) -> tuple[float, float]:
        return self.poses[-1][1:]

    def moved_since(self, start: tuple[float, float]) -> float:
        x, y = self.position()
        return math.hypot(x - start[0], y - start[1])

    def speed(self, window_s: float = 0.3) -> float:
        """Metres per second over the last ``window_s`` of poses."""
        now = time.monotonic()
        recent = [p for p in self.poses if p[0] >= now - window_s]
        if len(recent) < 2:
            return float("inf")
        (t0, x0, y0), (t1, x1, y1) = recent[0], recent[-1]
        return math.hypot(x1 - x0, y1 - y0) / max(t1 - t0, 1e-3)

    def close(self) -> None:
        self._spinning = False
        self._thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _rel(root, sample) -> str:
    return sample.image_path.relative_to(root).as_posix()


def test_the_page_of_the_real_collection_graph(tmp_path):
    data = tmp_path / "data"
    car = Car()
    runner = Runner("--source", "sim", "--teleop", "web", "--out", str(data), "--web-port", str(_free_port()),
                    "--json")
    try:
        url = wait(runner.url, 60, "the runner to print the page's address")
        with open_page(url) as browser:
            # the graph's own latency: the command made from a frame reaches the node after the frame itself
            figures = wait(lambda: (f := latency_figures(browser)).get("capture\u2192command") and f, 20,
                           "the capture-to-command latency on the page")
            assert 0 < figures.get("capture\u2192web", -1) < figures["capture\u2192command"] < 5000, figures
            print(f"\nlatency shown at the start: {figures}")
            frames_before, started = browser.execute_script("return window.viewStats.frames"), time.monotonic()
            wait(lambda: "mode manual" in browser.find_element(By.ID, "status").text, 5, "the control node's mode")

            click_camera(browser, 56, 168)  # label (2*56/224 - 1, 2*168/224 - 1)
            wait(lambda: message(browser).startswith("labelled ("), 10, "the first label's reply")
            click_camera(browser, 112, 56)
            wait(lambda: message(browser).startswith("labelled (0.000, -0.500)"), 10, "the second label's reply")
            samples, corrupt = read_dataset(data)
            assert corrupt == 0 and [(s.x, s.y, s.meta["source"]) for s in samples] == [(-0.5, 0.5, "click"),
                                                                                        (0.0, -0.5, "click")]
            browser.find_element(By.ID, "undo").click()
            wait(lambda: message(browser).startswith("removed "), 10, "the undo's reply")
            (kept,), _ = read_dataset(data)
            assert (kept.x, kept.y) == (-0.5, 0.5) and not samples[1].image_path.exists()

            open_dataset(browser)
            assert listed_ids(browser) == [_rel(data, kept)]
            delete_listed(browser, _rel(data, kept))
            assert read_dataset(data) == ([], 0) and listed_ids(browser) == []
            wait(lambda: "samples this session: 0" in browser.find_element(By.ID, "status").text, 5,
                 "the session count after the delete")

            wait(lambda: car.poses and car.speed() < 0.05, 10, "the car standing")
            start = car.position()
            hold_stick(browser)  # forward
            wait(lambda: car.moved_since(start) > 0.3, 10, "the car to drive")
            assert max(car.throttles[-10:]) > 0.3
            release_stick(browser)
            released = time.monotonic()
            wait(lambda: car.throttles and car.throttles[-1] == 0.0, 1.0, "a zero command on release")
            assert time.monotonic() - released < 1.0
            wait(lambda: car.speed() < 0.05, 5, "the car to stop")

            shown = browser.execute_script("return window.viewStats.frames") - frames_before
            print(f"\nlive view of the collection graph: {shown / (time.monotonic() - started):.1f} frames/s; "
                  f"latency shown: {latency_figures(browser)}")
        returncode = runner.interrupt()
    finally:
        runner.kill_if_running()
        car.close()
    assert returncode == 0, "\n".join(runner.err[-30:])
    summary = json.loads(runner.out[-1])
    print(f"the runner's capture -> command latency over the run: p50 {summary['e2e_latency_ms']['p50']:.1f} ms")
    assert summary["stopped_because"] == "SIGINT" and summary["failed_nodes"] == {} and summary["killed_nodes"] == []
    assert summary["samples_recorded"] == 0 and summary["frames"] > 0
    assert not summary["neutral_by_supervisor"]
