"""The car's web page (live view, click to label, virtual joystick), ROS-free; see ``app.py``.

Needs the ``web`` extra (aiohttp); nothing else in jetracer_trt imports this package.
"""
from .app import Backend, Frame, WebApp, is_loopback, label_from_pixel, new_token

__all__ = ["Backend", "Frame", "WebApp", "is_loopback", "label_from_pixel", "new_token"]
