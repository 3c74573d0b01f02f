"""Camera frames as sensor_msgs/Image (rgb8), stamped at capture, with the real rate on /diagnostics.

Sources: csi (Jetson CSI camera), v4l2 (USB), video (a file), folder (images); defaults in config/camera.yaml.
A capture thread reads the (reconnecting) source and publishes each frame with latest-only QoS; a camera that
disappears is reopened with backoff, never a crash. What retrying cannot fix (a missing video file, an empty
folder, an OpenCV without GStreamer) ends the node: a bad source or setting in __init__ (JetracerError), a failure
of the capture thread through ``fatal_error``, which the run loop of nodes/common.py turns into one error line and
exit status 1. Frames are stamped as the source's ``stamp_origin`` (logged once) says.
"""
from __future__ import annotations

import threading
import traceback

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import Image

from ..camera import EndOfStream, FrameTransform, RateMeter, ReconnectingSource, create_source
from ..config import load_config
from ..errors import JetracerError
from .common import LATEST_ONLY, declare, diagnostics, main_for, steady_timer
from .image_msg import rgb_to_image

PATH_KEY = {"v4l2": "device", "video": "path", "folder": "path"}  # what `source_path` is to each source


class CameraNode(Node):
    def __init__(self):
        super().__init__("camera")
        cfg = load_config("camera")
        kind = declare(self, "source", str(cfg["source"]), "csi, v4l2, video or folder", read_only=True)
        source_path = declare(self, "source_path", "", "what the source reads: a V4L2 device (/dev/video0), a "
                              "video file or an image folder", read_only=True)
        fps = declare(self, "fps", -1.0, "frame rate for video/folder/csi/v4l2 (-1: the configured default)",
                      -1.0, 240.0)
        loop = declare(self, "loop", True, "video and folder sources start again at the end")
        self.frame_id = declare(self, "frame_id", str(cfg["frame_id"]), "frame_id of the published images")
        crop = declare(self, "crop", [0], "crop x, y, width, height before resizing ([0]: no crop)", read_only=True)
        resize = declare(self, "resize", [0], "resize to width, height ([0]: as captured)", read_only=True)
        params = {}
        if source_path and kind in PATH_KEY:
            params[PATH_KEY[kind]] = source_path
        if fps >= 0:
            params["fps"] = fps
        if kind in ("video", "folder"):
            params["loop"] = loop
        create_source(kind, **params)  # an unknown source or a bad setting raises here, before any thread starts
        self.source = ReconnectingSource(lambda: create_source(kind, **params), sleep=self._sleep)
        self.transform = FrameTransform(crop=None if list(crop) == [0] else list(crop),
                                        resize=None if list(resize) == [0] else list(resize))
        self.rate = RateMeter()
        self.pub = self.create_publisher(Image, "camera/image_raw", LATEST_ONLY)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._msg = Image()
        self._stop = threading.Event()
        self.frames = 0
        self.ended = False
        self.fatal_error: str | None = None  # set by the capture thread; the run loop ends the node on it
        steady_timer(self, 1.0, self.report)
        self._thread = threading.Thread(target=self.capture_loop, name="capture", daemon=True)
        self._thread.start()
        self.get_logger().info(f"camera source {kind} {params or ''}")

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)  # a backoff wait ends at once on shutdown

    def capture_loop(self) -> None:
        try:
            self._publish_frames()
        except JetracerError as exc:  # ReconnectingSource retries what can be retried: this cannot be
            self.fatal_error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug: keep its traceback, and do not leave the graph idling
            self.get_logger().error(traceback.format_exc())
            self.fatal_error = f"the capture thread failed: {exc!r}"

    def _publish_frames(self) -> None:
        with self.source:
            while not self._stop.is_set():
                try:
                    frame = self.source.read()
                except EndOfStream:
                    self.ended = True
                    self.get_logger().info("end of the recording: no more frames")
                    return
                if frame is None:
                    continue
                if self.frames == 0:
                    self.get_logger().info(f"{self.source.describe()}: capture stamp = "
                                           f"{self.source.stamp_origin}")
                stamp_ns = int(self.source.capture_time * 1e9)
                rgb_to_image(self.transform(frame), self._msg)
                self._msg.header.stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
                self._msg.header.frame_id = self.frame_id
                self.pub.publish(self._msg)
                self.frames += 1
                self.rate.tick()

    def report(self) -> None:
        connected = self.source.connected
        if self.fatal_error is not None:
            level, message = DiagnosticStatus.ERROR, self.fatal_error
        elif connected or self.ended:
            level, message = DiagnosticStatus.OK, "ok"
        else:
            level, message = DiagnosticStatus.WARN, "camera disconnected, retrying"
        self.diag_pub.publish(diagnostics(self, "jetracer_trt/camera", {
            "frames": self.frames, "fps": self.rate.fps, "connected": connected,
            "reconnects": self.source.reconnects, "ended": self.ended,
            "stamp_origin": self.source.stamp_origin, "stamp_fallbacks": self.source.stamp_fallbacks,
        }, level=level, message=message))

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


main = main_for(CameraNode)

if __name__ == "__main__":
    main()
