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
"""
from .base import CameraError, EndOfStream, FrameSource
from .gstreamer import csi_pipeline, opencv_has_gstreamer
from .reconnect import ReconnectingSource
from .sources import SOURCES, CsiSource, FolderSource, V4l2Source, VideoFileSource, create_source
from .timing import Pacer, RateMeter
from .transform import FrameTransform

__all__ = [
    "CameraError",
    "CsiSource",
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
