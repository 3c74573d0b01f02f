"""Camera frame -> the target the control node drives from: subscribes to images (latest only), runs the model
through one InferenceEngine, publishes the target with the image's header, and per-stage latency on /diagnostics.

**task** (``road_following``, ``pose``, or ``auto``: the task the model's own contract names) picks what runs:

- ``road_following``: the road model's target on ``road_target`` (geometry_msgs/PointStamped): ``point.x``,
  ``point.y`` the road target in [-1, 1].
- ``pose``: a trt_pose-style model through ``pose.estimator.PoseEstimator`` (frame -> people), then follow-me
  (``follow.FollowMe``: the chosen person's torso centre, a throttle scale from their apparent size, a stop when
  they are lost). Published per frame:

  * ``follow_target`` (geometry_msgs/PointStamped, what the control node drives from in this task): ``point.x`` the
    torso centre in [-1, 1] of the image width, NaN when nobody is followed (a deliberate stop: the control node
    stops the car at once, wheels straight); ``point.y`` is the **throttle scale** in [0, 1] (0: too close, lost
    or nobody), which the control law multiplies the throttle by.
  * ``pose/people`` (std_msgs/Float32MultiArray), for programs: people x keypoints x (x, y, score), row-major,
    keypoints in the model topology's order (config/human_pose.json: COCO's 17 plus neck), x and y in image pixels
    (x right, y down, pixel i spans [i, i + 1)), NaN for keypoints not found; ``layout.dim`` labels the three
    dimensions ``people``, ``keypoints``, ``x_y_score`` with their sizes and strides (0 people: size 0). Only
    people with at least ``min_keypoints`` keypoints are listed.
  * ``pose/markers`` (visualization_msgs/MarkerArray), for RViz: a DELETEALL, then per person a SPHERE_LIST of its
    keypoints and a LINE_LIST of its limbs, in image pixels (x right, y down, z 0) in the image's frame_id; the
    person followed in yellow.
  * ``pose/image_annotated`` (sensor_msgs/Image, rgb8), the frame with the people drawn, only with
    ``publish_annotated`` true (default false: drawing and sending a frame costs the car's CPU; turn it on to
    watch).

  The follow-me settings (``config/follow.yaml``) are parameters of this node, changeable at runtime
  (``ros2 param set /inference stop_size 0.35``).

In both tasks ``point.z`` is not a coordinate but the model's own milliseconds for this frame, so that the control
node can tell the pipeline's overhead (capture to command minus the model) frame by frame.

Latency, whole run (bounded memory: ``latency.LatencyStats``), on /diagnostics as ``<stage>_ms_p50``/``_p99``:
``capture_to_inference`` (capture stamp -> this callback starts: transport and queueing; system clock, the stamps'
clock), ``preprocess`` (the image message -> the model's input: conversion and staging; steady clock), ``model``
(the engine's model-only time), ``parse`` (pose: the maps -> people) and ``capture_to_target`` (capture stamp ->
target published). Pose adds ``people`` (in the last frame), ``frames_with_people``, ``following_frames``,
``follow`` (follow-me's state: following, too close, lost for 0.4 s, nobody seen) and ``throttle_scale``.

The node never knows the backend: ``backend`` and ``model`` parameters go to ``create_engine``. Malformed images
are logged at a throttled rate and skipped.
"""
from __future__ import annotations

import array
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Point, PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Float32MultiArray, MultiArrayDimension
from visualization_msgs.msg import Marker, MarkerArray

from ..config import default_model_path
from ..contract import POSE, ROAD_FOLLOWING, read_contract
from ..engines import create_engine
from ..errors import JetracerError
from ..latency import LatencyStats
from .common import LATEST_ONLY, declare, diagnostics, main_for, stamp_to_ns, steady_timer
from .image_msg import image_to_rgb, rgb_to_image

TASKS = (ROAD_FOLLOWING, POSE, "auto")
STAGES = ("capture_to_inference", "preprocess", "model", "capture_to_target")
POSE_STAGES = ("capture_to_inference", "preprocess", "model", "parse", "capture_to_target")
POSE_MODEL_HINT = ("train and export one (models/POSE_MODEL_CARD.md): jetracer-trt train --task pose --data synthetic "
                   "--out runs/pose && jetracer-trt export --task pose --checkpoint runs/pose/best.pt --out "
                   "pose.onnx; or give model:= (trt_pose's weights export the same way)")
MARKER_KEYPOINT_PX = 4.0  # sphere diameter
MARKER_LIMB_PX = 2.0      # line width


def model_for_task(task: str, model: str) -> tuple[str, str]:
    """(task, model file) the node runs: the task's default model when ``model`` is empty, the model's own task
    with ``auto``. JetracerError for an unknown task or a missing default pose model (naming how to make it)."""
    if task not in TASKS:
        raise JetracerError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if not model:
        if task != POSE:
            return ROAD_FOLLOWING, str(default_model_path())
        path = default_model_path(POSE)
        if not path.is_file():
            raise JetracerError(f"the pose model {path} is not there: {POSE_MODEL_HINT}")
        return POSE, str(path)
    return (read_contract(model).task if task == "auto" else task), model


class InferenceNode(Node):
    def __init__(self):
        super().__init__("inference")
        task = declare(self, "task", ROAD_FOLLOWING, f"what the model does: {ROAD_FOLLOWING} (road_target), {POSE} "
                       "(people and follow-me: follow_target) or auto (the task the model's contract names)",
                       read_only=True)
        model = declare(self, "model", "", "model file (empty: the task's shipped model, models/road_following.onnx "
                        "or models/pose_small.onnx; with backend auto, converted files beside it are found)",
                        read_only=True)
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
        self.task, model = model_for_task(task, model)
        if build_engine:
            self._ensure_engine(model, engine_precision)
        # frames of any size are resized to the model's input by its own contract
        self.engine = create_engine(backend, model, task=self.task, threads=threads, spin=spin)
        self.engine.warmup()
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._target = PointStamped()
        self.frames = self.malformed = self.overruns = 0
        if self.task == POSE:
            self.pose = PoseOutputs(self)
            self.target_pub = self.create_publisher(PointStamped, "follow_target", LATEST_ONLY)
            self.stages = {name: LatencyStats() for name in POSE_STAGES}
        else:
            self.pose = None
            self.target_pub = self.create_publisher(PointStamped, "road_target", LATEST_ONLY)
            self.stages = {name: LatencyStats() for name in STAGES}
        self.create_subscription(Image, "camera/image_raw", self.on_image, LATEST_ONLY)
        steady_timer(self, 1.0, self.report)
        why = f": {self.engine.selection}" if self.engine.selection else ""
        self.get_logger().info(f"{self.task}: {self.engine.describe()} ready{why}")

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
        if self.pose is not None:
            x, y = self.pose.step(frame, msg.header)
            model_ms, parse_ms = self.pose.estimator.last_model_ms, self.pose.estimator.last_parse_ms
            self.stages["parse"].add(parse_ms)
        else:
            x, y = self.engine.infer(frame)
            model_ms, parse_ms = self.engine.last_model_ms, 0.0
        inferred = time.perf_counter()
        self._target.header = msg.header  # the capture stamp travels on
        self._target.point.x, self._target.point.y = float(x), float(y)
        self._target.point.z = float(model_ms)  # latency accounting, not a coordinate (see the module docstring)
        self.target_pub.publish(self._target)
        captured_ns = stamp_to_ns(msg.header.stamp)
        e2e = (time.time_ns() - captured_ns) / 1e6
        self.frames += 1
        stages = self.stages
        stages["capture_to_inference"].add((entered_ns - captured_ns) / 1e6)
        stages["preprocess"].add((inferred - entered) * 1e3 - model_ms - parse_ms)
        stages["model"].add(model_ms)
        stages["capture_to_target"].add(e2e)
        if e2e > self.deadline_ms:
            self.overruns += 1
        if self.pose is not None:
            self.pose.publish_views(frame, msg.header)  # after the target: viewing never delays the car

    def report(self) -> None:
        values = {"task": self.task, "frames": self.frames, "malformed_images": self.malformed,
                  "deadline_overruns": self.overruns}
        for name, stats in self.stages.items():
            values[f"{name}_ms_p50"], values[f"{name}_ms_p99"] = stats.whole_run()
        values["backend"] = self.engine.name
        if self.pose is not None:
            values.update(self.pose.counts())
        recent_p99 = self.stages["capture_to_target"].recent()[1]  # the level says how it goes now
        level = DiagnosticStatus.OK if recent_p99 <= self.deadline_ms else DiagnosticStatus.WARN
        self.diag_pub.publish(diagnostics(self, "jetracer_trt/inference", values, level=level,
                                          message="ok" if level == DiagnosticStatus.OK else "latency over deadline"))

    def shutdown(self) -> None:
        """Frees the engine's resources (a GPU's memory, a TensorRT context) before the node goes."""
        self.engine.close()


def _marker(header, marker_id: int, kind: int, size_px: float, rgb: tuple[int, int, int], points) -> Marker:
    marker = Marker(header=header, ns="people", id=marker_id, type=kind, action=Marker.ADD)
    marker.pose.orientation.w = 1.0
    marker.scale.x = marker.scale.y = marker.scale.z = size_px
    marker.color.r, marker.color.g, marker.color.b = (c / 255.0 for c in rgb)
    marker.color.a = 1.0
    marker.points = [Point(x=float(x), y=float(y), z=0.0) for x, y in points]
    return marker


class PoseOutputs:
    """The pose task's part of the node: the estimator, follow-me and the people topics (see the module
    docstring); the arrays come from ``pose_msgs``, this only fills messages."""

    def __init__(self, node: InferenceNode):
        from ..follow import FOLLOW_SETTINGS, FollowMe, FollowSettings
        from ..pose.estimator import PoseEstimator

        defaults = FollowSettings.from_config()
        values = {}
        for name, setting in FOLLOW_SETTINGS.items():
            default = getattr(defaults, name)
            values[name] = declare(node, name, default, f"follow-me: {setting.description}",
                                   setting.low, setting.high)
        self.follow = FollowMe(FollowSettings.from_values(values))
        self.estimator = PoseEstimator(node.engine, min_keypoints=self.follow.settings.min_keypoints)
        self.topology = self.estimator.topology
        self.publish_annotated = declare(node, "publish_annotated", False, "publish pose/image_annotated, the frame "
                                         "with the people drawn (costs a copy and a drawing per frame)")
        self.people_pub = node.create_publisher(Float32MultiArray, "pose/people", LATEST_ONLY)
        self.markers_pub = node.create_publisher(MarkerArray, "pose/markers", LATEST_ONLY)
        self.annotated_pub = node.create_publisher(Image, "pose/image_annotated", LATEST_ONLY)
        self._people_msg = Float32MultiArray()
        self._annotated_msg = Image()
        self._array = None
        self.target = None
        self.people_last = self.frames_with_people = self.following_frames = 0
        node.add_on_set_parameters_callback(self.on_set_parameters)

    def step(self, frame, header) -> tuple[float, float]:
        """People in ``frame``, then follow-me: (x, throttle scale) of the follow target."""
        from .pose_msgs import people_array

        people = self.estimator.people(frame)
        self._array = people_array(people, self.topology)
        now_s = stamp_to_ns(header.stamp) / 1e9  # the lost timeout counts on the frames' capture times
        self.target = self.follow.update(people, (frame.shape[1], frame.shape[0]), now_s)
        self.people_last = len(people)
        self.frames_with_people += bool(people)
        self.following_frames += self.target.following
        return self.target.x, self.target.throttle_scale

    def publish_views(self, frame, header) -> None:
        """pose/people, pose/markers and (when asked for) pose/image_annotated of the last ``step``."""
        from .pose_msgs import KEYPOINT_COLOUR, draw_people, drawing, layout_dims

        people = self._array
        msg = self._people_msg
        msg.layout.dim = [MultiArrayDimension(label=label, size=size, stride=stride)
                          for label, size, stride in layout_dims(people.shape)]
        msg.data = array.array("f", people.tobytes())
        self.people_pub.publish(msg)
        markers = MarkerArray(markers=[Marker(header=header, ns="people", action=Marker.DELETEALL)])
        followed = self.target.person
        for index, (keypoints, segments, colour) in enumerate(drawing(people, self.topology, followed)):
            markers.markers.append(_marker(header, 2 * index, Marker.SPHERE_LIST, MARKER_KEYPOINT_PX,
                                           KEYPOINT_COLOUR, keypoints))
            markers.markers.append(_marker(header, 2 * index + 1, Marker.LINE_LIST, MARKER_LIMB_PX, colour,
                                           segments.reshape(-1, 2)))
        self.markers_pub.publish(markers)
        if self.publish_annotated:
            rgb_to_image(draw_people(frame, people, self.topology, followed), self._annotated_msg)
            self._annotated_msg.header = header
            self.annotated_pub.publish(self._annotated_msg)

    def counts(self) -> dict:
        target = self.target
        return {"people": self.people_last, "frames_with_people": self.frames_with_people,
                "following_frames": self.following_frames,
                "follow": target.reason if target else "no frame yet",
                "throttle_scale": target.throttle_scale if target else 0.0}

    def on_set_parameters(self, changes) -> SetParametersResult:
        """Follow-me settings change all at once, or none of them with the reason."""
        from dataclasses import asdict

        from ..follow import FOLLOW_SETTINGS, FollowSettings, follow_problems

        values = asdict(self.follow.settings)
        annotated = self.publish_annotated
        for p in changes:
            if p.name in FOLLOW_SETTINGS:
                values[p.name] = p.value
            elif p.name == "publish_annotated":
                annotated = bool(p.value)
        problems = follow_problems(values)
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        self.follow.settings = FollowSettings.from_values(values)
        self.estimator.min_keypoints = self.follow.settings.min_keypoints
        self.publish_annotated = annotated
        return SetParametersResult(successful=True)


main = main_for(InferenceNode)

if __name__ == "__main__":
    main()
