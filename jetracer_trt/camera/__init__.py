"""Camera frame sources without ROS: a Jetson CSI camera, a USB (V4L2) camera, a video file, a folder of images.

A thin ROS 2 node wraps them: ``create_source(kind)`` (defaults from config/camera.yaml) inside a
``ReconnectingSource``, an optional ``FrameTransform`` (crop, resize), a ``RateMeter`` for the real rate::

    source = ReconnectingSource(lambda: create_source("v4l2", device="/dev/video0"))
    with source:
        while running:
            frame = source.read()          # RGB uint8 (H, W, 3), reused by the next read; None while down
            if frame is not None:
                publish(transform(frame), source.capture_time)
                meter.tick()

A JetracerError out of ``source.open()`` or ``source.read()`` (a missing file, an empty folder, no GStreamer) is
fatal: ``ReconnectingSource`` keeps the retryable ones (an unplugged or busy camera) to itself. ``capture_time``
is taken as ``source.stamp_origin`` says: ``STAMP_DRIVER``, ``STAMP_BEFORE_READ`` or ``STAMP_RELEASE``.
"""
from .base import STAMP_BEFORE_READ, STAMP_DRIVER, STAMP_RELEASE, CameraError, EndOfStream, FrameSource
from .gstreamer import csi_pipeline, opencv_has_gstreamer
from .reconnect import ReconnectingSource
from .sources import SOURCES, CsiSource, FolderSource, V4l2Source, VideoFileSource, create_source
from .timing import DriverClock, Pacer, RateMeter
from .transform import FrameTransform

__all__ = [
    "STAMP_BEFORE_READ",
    "STAMP_DRIVER",
    "STAMP_RELEASE",
    "CameraError",
    "CsiSource",
    "DriverClock",
    "EndOfStream",
    "FolderSource",
    "FrameSource",
    "FrameTransform",
    "Pacer",
    "RateMeter",
    "ReconnectingSource",
    "SOURCES",
    "V4l2Source",
    "VideoFileSource",
    "create_source",
    "csi_pipeline",
    "opencv_has_gstreamer",
]
