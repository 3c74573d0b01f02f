"""The one Joy layout every hand source publishes and every receiver reads: the teleop node (a gamepad), the web
page's virtual joystick and the control node's command mux. Whatever the pad and its driver, a ``sensor_msgs/Joy``
on ``joy`` (the web page: ``web/joy``) holds

* ``axes = [steering, throttle]``, each in [-1, 1] after the pad's deadzone, inversion and expo:
  steering +1 = full right, throttle +1 = full forward (the car's calibration file, not the pad, says which motor
  direction is forward);
* ``buttons = [deadman, autopilot_toggle, record_toggle, estop]``, each 0 or 1, the *held* state:
  ``deadman`` is hold-to-drive (released = the car stops); the toggles act on their 0 -> 1 edge in the receiver
  (``pressed``); ``estop`` latches the emergency stop on its edge.

The header stamp is the system-clock time the pad's state was read (a repeat carries the time of the repeat: the
state still holds then). Sources publish on every change and at least ``RATE_HZ`` times a second, so a receiver
treats a source it has not heard for a few periods as gone. ROS-free and import-light: plain lists in, plain lists
out, so the web page's server and the mux use it without evdev.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

TOPIC = "joy"
RATE_HZ = 20.0  # the slowest a source publishes while nothing changes

AXES = ("steering", "throttle")
BUTTONS = ("deadman", "autopilot_toggle", "record_toggle", "estop")
STEERING, THROTTLE = 0, 1
DEADMAN, AUTOPILOT_TOGGLE, RECORD_TOGGLE, ESTOP = 0, 1, 2, 3


@dataclass(frozen=True)
class PadState:
    """One reading of a hand source in the canonical layout; the default is the released state (nothing held,
    sticks centred), which is also what a source publishes while its pad is missing."""

    steering: float = 0.0
    throttle: float = 0.0
    deadman: bool = False
    autopilot_toggle: bool = False
    record_toggle: bool = False
    estop: bool = False

    @property
    def axes(self) -> list[float]:
        return [self.steering, self.throttle]

    @property
    def buttons(self) -> list[int]:
        return [int(getattr(self, name)) for name in BUTTONS]

    @classmethod
    def from_joy(cls, axes, buttons) -> "PadState":
        """A Joy's ``axes`` and ``buttons`` read in the canonical layout; ValueError (with what is wrong) for a Joy
        in another layout or with a non-finite axis. Axes are clipped to [-1, 1]."""
        axes, buttons = list(axes), list(buttons)
        if len(axes) != len(AXES) or len(buttons) != len(BUTTONS):
            raise ValueError(f"expected {len(AXES)} axes {list(AXES)} and {len(BUTTONS)} buttons {list(BUTTONS)}, "
                             f"got {len(axes)} axes and {len(buttons)} buttons")
        if not all(math.isfinite(a) for a in axes):
            raise ValueError(f"non-finite axis in {axes}")
        clipped = [min(1.0, max(-1.0, float(a))) for a in axes]
        return cls(*clipped, *(bool(b) for b in buttons))


RELEASED = PadState()


def pressed(previous: PadState, current: PadState) -> frozenset[str]:
    """The buttons that went from released to held between two readings (where toggles act)."""
    return frozenset(name for name in BUTTONS if getattr(current, name) and not getattr(previous, name))
