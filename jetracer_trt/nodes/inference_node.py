"""Camera frame -> road target: subscribes to images (latest only), runs the model through one InferenceEngine,
publishes geometry_msgs/PointStamped with the image's header, and per-stage latency on /diagnostics.

The published target: ``point.x``, ``point.y`` the road target in [-1, 1]; ``point.z`` is not a coordinate but the
model's own milliseconds for this frame, so that the control node can tell the pipeline's overhead (capture to
command minus the model) frame by frame.

Latency, whole run (bounded memory: ``latency.LatencyStats``), on /diagnostics as ``<stage>_ms_p50``/``_p99``:
``capture_to_inference`` (capture stamp -> this callback starts: transport and queueing; system clock, the stamps'
clock), ``preprocess`` (the image message -> the model's input: conversion and staging; steady clock), ``model``
(the engine's model-only time) and ``capture_to_target`` (capture stamp -> target published).

The node never knows the backend: ``backend`` and ``model`` parameters go to ``create_engine``. Malformed images
are logged at a throttled rate and skipped.
"""
from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from rclpy.node import Node
from sensor_msgs.msg import Image

from ..config import default_model_path
from ..contract import ROAD_FOLLOWING
from ..engines import create_engine
from ..errors import JetracerError
from ..latency import LatencyStats
from .common import LATEST_ONLY, declare, diagnostics, main_for, stamp_to_ns, steady_timer
from .image_msg import image_to_rgb

STAGES = ("capture_to_inference", "preprocess", "model", "capture_to_target")


class InferenceNode(Node):
    def __init__(self):
        super().__init__("inference")
        model = declare(self, "model", "", "model file (empty: the shipped models/road_following.onnx; with backend "
                        "auto, converted files beside it are found)", read_only=True)
        backend = declare(self, "backend", "auto", "inference backend: auto (a valid TensorRT engine, else CUDA, else "
                          "CPU), onnxruntime, torch, tensorrt or torch2trt", read_only=True)
        threads = declare(self, "cpu_threads", 0, "CPU threads for inference (0: all cores)", 0, 64, read_only=True)
        spin = declare(self, "cpu_threads_spin", False, "CPU backends: worker threads spin between frames (faster "
                       "alone, but a spinning thread takes a core from the other nodes)", read_only=True)
        build_engine = declare(self, "build_engine", False, "on a machine with TensorRT: build the engine beside "
                               "the model when it is missing or stale (minutes, once), verify it, then use it",
                               read_only=True)
        engine_precision = declare(self, "engine_precision", "fp16", "precision of the engine build_engine makes: "
                                   "fp16 or fp32 (int8 needs calibration frames: jetracer-trt convert)",
                                   read_only=True)
        self.deadline_ms = declare(self, "deadline_ms", 33.0, "latency budget per frame; overruns are counted",
                                   1.0, 1000.0)
        model = model or str(default_model_path())
        if build_engine:
            self._ensure_engine(model, engine_precision)
        # frames of any size are resized to the model's input by its own contract
        self.engine = create_engine(backend, model, task=ROAD_FOLLOWING, threads=threads, spin=spin)
        self.engine.warmup()
        self.target_pub = self.create_publisher(PointStamped, "road_target", LATEST_ONLY)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Image, "camera/image_raw", self.on_image, LATEST_ONLY)
        self._target = PointStamped()
        self.stages = {name: LatencyStats() for name in STAGES}
        self.frames = self.malformed = self.overruns = 0
        steady_timer(self, 1.0, self.report)
        why = f": {self.engine.selection}" if self.engine.selection else ""
        self.get_logger().info(f"{self.engine.describe()} ready{why}")

    def _ensure_engine(self, model: str, precision: str) -> None:
        from ..convert import ensure_engine

        if precision not in ("fp16", "fp32"):
            raise JetracerError(f"engine_precision must be fp16 or fp32, got {precision!r}")
        ensured = ensure_engine(model, precision)
        if ensured.path is not None:
            self.get_logger().info(f"build_engine: {ensured.reason}")
        else:
            self.get_logger().warning(f"build_engine: {ensured.reason}; backend auto falls back")

    def on_image(self, msg: Image) -> None:
        entered_ns, entered = time.time_ns(), time.perf_counter()
        try:
            frame = image_to_rgb(msg)
        except JetracerError as exc:
            self.malformed += 1
            self.get_logger().warning(f"skipping malformed image: {exc}", throttle_duration_sec=5.0)
            return
        x, y = self.engine.infer(frame)
        inferred = time.perf_counter()
        model_ms = self.engine.last_model_ms
        self._target.header = msg.header  # the capture stamp travels on
        self._target.point.x, self._target.point.y = float(x), float(y)
        self._target.point.z = float(model_ms)  # latency accounting, not a coordinate (see the module docstring)
        self.target_pub.publish(self._target)
        captured_ns = stamp_to_ns(msg.header.stamp)
        e2e = (time.time_ns() - captured_ns) / 1e6
        self.frames += 1
        stages = self.stages
        stages["capture_to_inference"].add((entered_ns - captured_ns) / 1e6)
        stages["preprocess"].add((inferred - entered) * 1e3 - model_ms)
        stages["model"].add(model_ms)
        stages["capture_to_target"].add(e2e)
        if e2e > self.deadline_ms:
            self.overruns += 1

    def report(self) -> None:
        values = {"frames": self.frames, "malformed_images": self.malformed, "deadline_overruns": self.overruns}
        for name, stats in self.stages.items():
            values[f"{name}_ms_p50"], values[f"{name}_ms_p99"] = stats.whole_run()
        values["backend"] = self.engine.name
        recent_p99 = self.stages["capture_to_target"].recent()[1]  # the level says how it goes now
        level = DiagnosticStatus.OK if recent_p99 <= self.deadline_ms else DiagnosticStatus.WARN
        self.diag_pub.publish(diagnostics(self, "jetracer_trt/inference", values, level=level,
                                          message="ok" if level == DiagnosticStatus.OK else "latency over deadline"))


main = main_for(InferenceNode)

if __name__ == "__main__":
    main()
