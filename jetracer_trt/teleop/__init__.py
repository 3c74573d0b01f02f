"""Driving by hand with a gamepad, ROS-free: the canonical Joy layout every hand source shares (``layout``), the
per-pad mappings of config/gamepads.yaml and the user's file (``mapping``), pad events to the canonical state
(``mapper``) and the pad kept open across unplugs (``link``). The teleop node (nodes/teleop_node.py) and
``jetracer-trt joy test`` are thin layers over these.

evdev is needed only to read a real pad (``pip install 'jetracer_trt[teleop]'``); ``layout``, imported by the
control node and the web page, needs nothing.
"""
from .layout import AXES, BUTTONS, RATE_HZ, RELEASED, TOPIC, PadState, pressed

__all__ = ["AXES", "BUTTONS", "RATE_HZ", "RELEASED", "TOPIC", "PadState", "pressed"]
