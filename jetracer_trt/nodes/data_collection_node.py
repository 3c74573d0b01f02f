"""Records training samples on the car and serves the car's web page: a thin adapter over ``recorder.Recorder``
(what is recorded, with which label) and ``web.WebApp`` (live view, click to label, undo, virtual joystick).

Topics in: camera/image_raw (latest only), cmd (what the control node sent: the label's steering), road_target (the
model's target, drawn on the live view), mode (std_msgs/String), joy (the pad's record toggle), record
(std_msgs/Bool: true records, false pauses). Out: web/joy (the page's joystick in the canonical Joy layout, a hand
source of the control node), estop (the page's e-stop button), data_collection/samples (std_msgs/UInt32: samples
written this session), /diagnostics.

A command is paired with frames by when it was received: the frame gets the command that was in effect at its
capture. Disk errors are logged and shown on the page; the node keeps running and recording resumes by itself.
The page's status carries the latencies the node sees from a frame's capture (``latency_ms``): to the control
node's command made from that frame (the capture stamp travels on to the command), and to the frame's arrival here,
where it is handed to the page. The page's dataset browser deletes through the recorder (a tombstone; a sample of
this session then no longer counts as written).
"""
from __future__ import annotations

import hashlib
import threading
import uuid

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped, TwistStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import Image, Joy
from std_msgs.msg import Bool, String, UInt32

from ..actuators.calibration import default_calibration_path
from ..control import PROFILES, STEERING_LABEL_Y, ControlParams
from ..errors import JetracerError
from ..recorder import LatencyFigures, Recorder
from ..teleop.layout import RELEASED, TOPIC as JOY_TOPIC, PadState, pressed
from .common import LATEST_ONLY, RELIABLE, declare, diagnostics, main_for, ms_since, stamp_to_ns, steady_timer
from .control_node import WEB_JOY_TOPIC
from .image_msg import MalformedImage, image_to_rgb


class DataCollectionNode(Node):
    def __init__(self):
        super().__init__("data_collection")
        out = declare(self, "out", "", "dataset folder (created, or appended to)", read_only=True)
        if not out:
            raise JetracerError("the data_collection node needs out:=DIR, the dataset folder to record into")
        profile = declare(self, "profile", "car", f"control law whose steering line turns a recorded steering "
                          f"into a label: {' or '.join(PROFILES)} (use the control node's)", read_only=True)
        max_rate = declare(self, "max_rate_hz", 15.0, "most samples a second while recording a drive (0: every "
                           "frame)", 0.0, 120.0, read_only=True)
        max_age = declare(self, "max_pair_age_s", 0.1, "a frame with no command received within this long before "
                          "its capture is not recorded (counted as too old)", 0.005, 2.0, read_only=True)
        label_y = declare(self, "label_y", STEERING_LABEL_Y, "y of labels made from steering (the law ignores y; "
                          "the default is where the simulator's targets sit)", -1.0, 1.0, read_only=True)
        recording = declare(self, "record_at_start", False, "record drive samples from the start")
        calibration = declare(self, "calibration_file", "", "the car's calibration (its id goes into every "
                              "sample; empty: the one the control node uses by default)", read_only=True)
        web_host = declare(self, "web_host", "127.0.0.1", "address the web page listens on (0.0.0.0: the car's "
                           "Wi-Fi, needs a token)", read_only=True)
        web_port = declare(self, "web_port", 8080, "web page port (0: no web page)", 0, 65535, read_only=True)
        web_token = declare(self, "web_token", "", "token every web request must carry (empty: a new one when "
                            "the page is reachable from other machines)", read_only=True)
        self._lock = threading.Lock()  # the recorder is fed by this node's callbacks and the web page's worker
        self.out = out
        self.recorder = Recorder(None, ControlParams.from_config(profile=profile),
                                 max_rate_hz=max_rate, max_pair_age_s=max_age, label_y=label_y,
                                 calibration_id=_calibration_id(calibration), session=uuid.uuid4().hex[:8])
        self.recorder.recording = recording
        self._open_dataset()
        self.mode = ""
        self._target = None
        self._command = (0.0, 0.0)
        self._pad = RELEASED
        self._reported_error = None
        # capture -> the control node's command made from that frame (its stamp travels on to the command), and
        # capture -> this node, where the frame is handed to the web page
        self.latency = LatencyFigures("capture_to_command", "capture_to_web")
        self._last_cmd_stamp = 0
        self._system_clock = Clock(clock_type=ClockType.SYSTEM_TIME)
        self.web_joy_pub = self.create_publisher(Joy, WEB_JOY_TOPIC, RELIABLE)
        self.estop_pub = self.create_publisher(Bool, "estop", RELIABLE)
        self.samples_pub = self.create_publisher(UInt32, "data_collection/samples", RELIABLE)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Image, "camera/image_raw", self.on_image, LATEST_ONLY)
        self.create_subscription(TwistStamped, "cmd", self.on_cmd, RELIABLE)
        self.create_subscription(PointStamped, "road_target", self.on_target, LATEST_ONLY)
        self.create_subscription(String, "mode", lambda msg: setattr(self, "mode", msg.data), RELIABLE)
        self.create_subscription(Joy, JOY_TOPIC, self.on_joy, LATEST_ONLY)
        self.create_subscription(Bool, "record", lambda msg: self.set_recording(bool(msg.data)), RELIABLE)
        steady_timer(self, 1.0, self.report)
        self.web = None
        if web_port:
            from ..web import WebApp, is_loopback, new_token

            token = web_token or (None if is_loopback(web_host) else new_token())
            self.web = WebApp(self, host=web_host, port=web_port, token=token).start()
            self.get_logger().info(f"web page: {self.web.url}")

    def _open_dataset(self) -> None:
        """Opens (or creates) the dataset; a folder that cannot be written is an error on the log and the page, and
        is tried again every second, so recording starts once it is fixed (a disk mounted, permissions given)."""
        from ..dataset import DatasetWriter

        try:
            writer = DatasetWriter(self.out)
        except (JetracerError, OSError) as exc:
            message = f"cannot record into {self.out}: {exc}"
            if message != self.recorder.writer_error:
                self.get_logger().error(f"{message} (the node keeps running and tries again every second)")
            self.recorder.writer_error = message
            return
        with self._lock:
            self.recorder.writer, self.recorder.writer_error = writer, None
            self.recorder.last_error = None  # the failed appends' reason was the missing dataset
        self.get_logger().info(f"recording into {self.out} ({'on' if self.recorder.recording else 'paused'}; "
                               f"{writer.count} samples there)")

    # -- ROS inputs -----------------------------------------------------------------------------------------------
    def on_image(self, msg: Image) -> None:
        try:
            frame = image_to_rgb(msg)
        except MalformedImage as exc:
            self.get_logger().warning(f"skipping malformed image: {exc}", throttle_duration_sec=5.0)
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        self.latency.add("capture_to_web", ms_since(msg.header.stamp))
        with self._lock:
            self.recorder.on_frame(stamp_ns / 1e9, frame)
        if self.web is not None:
            self.web.show_frame(stamp_ns, frame, {"target": self._target, "steering": self._command[0],
                                                  "throttle": self._command[1]})

    def on_cmd(self, msg: TwistStamped) -> None:
        self._command = (-msg.twist.angular.z, msg.twist.linear.x)  # ROS: angular.z > 0 turns left
        received_ns = self._system_clock.now().nanoseconds
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if stamp_ns and stamp_ns != self._last_cmd_stamp:  # one figure per frame (the control node repeats
            self._last_cmd_stamp = stamp_ns                 # the last frame's stamp between targets); 0: no frame
            self.latency.add("capture_to_command", (received_ns - stamp_ns) / 1e6)
        with self._lock:
            self.recorder.on_command(received_ns / 1e9, *self._command, self.mode)

    def on_target(self, msg: PointStamped) -> None:
        self._target = [msg.point.x, msg.point.y]

    def on_joy(self, msg: Joy) -> None:
        try:
            state = PadState.from_joy(msg.axes, msg.buttons)
        except ValueError:
            return  # the control node says why
        if "record_toggle" in pressed(self._pad, state):
            self.set_recording(not self.recorder.recording)
        self._pad = state

    # -- the web page's backend (called on its threads) -------------------------------------------------------------
    def drive(self, steering: float, throttle: float, held: bool, client_id: str) -> None:
        state = PadState(steering, throttle, deadman=held) if held else RELEASED
        msg = Joy(axes=state.axes, buttons=state.buttons)
        msg.header.stamp = self._system_clock.now().to_msg()
        self.web_joy_pub.publish(msg)

    def estop(self) -> None:
        self.estop_pub.publish(Bool(data=True))

    def status(self) -> dict:
        return {"mode": self.mode, "session_samples": self.recorder.counts["written"],
                "recording": self.recorder.recording, "latency_ms": self.latency.figures(),
                "error": self.recorder.last_error or self.recorder.writer_error}

    def label(self, frame, x: float, y: float) -> str:
        with self._lock:
            written = self.recorder.label_click(frame.stamp_ns / 1e9, frame.rgb, x, y, mode=self.mode)
        if not written:
            raise JetracerError(f"not saved: {self.recorder.last_error}")
        return self.recorder.last_image

    def undo(self) -> str | None:
        with self._lock:
            return self.recorder.undo()

    def delete(self, image: str) -> None:
        with self._lock:
            self.recorder.remove(image)

    def dataset_root(self) -> str:
        return self.out

    def set_recording(self, on: bool) -> None:
        if on != self.recorder.recording:
            self.recorder.recording = on
            self.get_logger().info(f"recording {'on' if on else 'paused'}")

    # -- outputs --------------------------------------------------------------------------------------------------
    def report(self) -> None:
        if self.recorder.writer is None:
            self._open_dataset()
        counts = self.recorder.counts
        self.samples_pub.publish(UInt32(data=max(0, counts["written"])))
        error = self.recorder.last_error or self.recorder.writer_error
        if error and error != self._reported_error and error != self.recorder.writer_error:
            self.get_logger().error(f"recording: {error} (the node keeps running; recording resumes when the "
                                    "problem is gone)")
        self._reported_error = error
        self.diag_pub.publish(diagnostics(self, "jetracer_trt/data_collection", {
            **counts, "recording": self.recorder.recording, "mode": self.mode, "error": error or ""},
            level=DiagnosticStatus.ERROR if error else DiagnosticStatus.OK, message=error or "ok"))

    def shutdown(self) -> None:
        if self.web is not None:
            self.web.stop()  # a zero command for whoever held the page's joystick
        if self.recorder.writer is not None:
            self.recorder.writer.close()
        self.get_logger().info(f"recorded {self.recorder.counts['written']} samples this session "
                               f"({self.recorder.counts['too_old']} frames without a recent command)")


def _calibration_id(path: str) -> str:
    """A short hash of the car's calibration file: samples from differently calibrated cars can be told apart."""
    try:
        data = open(path or default_calibration_path(), "rb").read()
    except OSError:
        return ""
    return hashlib.sha256(data).hexdigest()[:12]


main = main_for(DataCollectionNode)

if __name__ == "__main__":
    main()
