"""Pad events to the canonical state (``layout.PadState``), with no device: ``PadMapper`` takes evdev events
(anything with ``type``, ``code`` and ``value``), a mapping and the pad's axis ranges (absinfo min/max).

The kernel sends a pad's changes as a frame of EV_ABS / EV_KEY events closed by SYN_REPORT; the state is computed
once per frame, so a diagonal stick move is one change, never a half-updated one. After SYN_DROPPED (the kernel's
buffer overflowed) events are unreliable until the next SYN_REPORT: they are dropped and ``resync_needed`` asks
the owner of the device to read the pad's current values back in with ``reset``.

Axis shaping, in this order: the raw value scaled from [min, max] to [-1, 1] (the centre of the range is 0), then
``invert``, then a scaled ``deadzone`` (|x| <= deadzone is 0, the rest stretched back to [0, 1], so the output
has no jump at its edge), then ``expo`` (``(1 - expo) * x + expo * x**3``: finer control near the centre, full
travel kept).
"""
from __future__ import annotations

import math

from .layout import AXES, BUTTONS, RELEASED, PadState
from .mapping import AxisSpec, ButtonSpec, GamepadMapping

# Linux input ABI (linux/input-event-codes.h), the same numbers as evdev.ecodes
EV_SYN, EV_KEY, EV_ABS = 0, 1, 3
SYN_REPORT, SYN_DROPPED = 0, 3


def normalized(value: int, low: int, high: int) -> float:
    """``value`` of an axis with range [low, high] in [-1, 1] (clipped: the kernel does not clip)."""
    if high <= low:
        return 0.0
    return min(1.0, max(-1.0, 2.0 * (value - low) / (high - low) - 1.0))


def shaped(x: float, spec: AxisSpec) -> float:
    """A normalized axis value after inversion, deadzone and expo."""
    if spec.invert:
        x = -x
    magnitude = abs(x)
    if magnitude <= spec.deadzone:
        return 0.0
    magnitude = (magnitude - spec.deadzone) / (1.0 - spec.deadzone)
    magnitude = (1.0 - spec.expo) * magnitude + spec.expo * magnitude ** 3
    return math.copysign(min(1.0, magnitude), x)


class PadMapper:
    """The canonical state of one pad under one mapping. ``ranges``: axis code -> (min, max), usually from the
    device's absinfo (a mapping's own ``min``/``max`` win); ``values`` and ``keys``: the pad's state when opened
    (absinfo values, held keys), so a stick already pushed or a button already held counts from the start."""

    def __init__(self, mapping: GamepadMapping, ranges: dict[int, tuple[int, int]],
                 values: dict[int, int] | None = None, keys=()):
        self.mapping = mapping
        overrides = {spec.code: (spec.min, spec.max) for spec in mapping.axes.values() if spec.min is not None}
        self.ranges: dict[int, tuple[int, int]] = {}
        for code in sorted(mapping.abs_codes()):
            span = overrides.get(code) or ranges.get(code)
            if span is None:
                raise ValueError(f"mapping {mapping.name!r} uses axis {code}, which the pad does not report")
            self.ranges[code] = (int(span[0]), int(span[1]))
        self.values: dict[int, int] = {}
        self.keys: set[int] = set()
        self.state: PadState = RELEASED
        self.resync_needed = False
        self._in_sync = True
        self.reset(values or {}, keys)

    @classmethod
    def for_device(cls, mapping: GamepadMapping, capabilities: dict, keys=()) -> "PadMapper":
        """From ``InputDevice.capabilities()`` (EV_ABS: [(code, AbsInfo)]) and ``active_keys()``."""
        absinfo = dict(capabilities.get(EV_ABS, []))
        return cls(mapping, {c: (a.min, a.max) for c, a in absinfo.items()},
                   {c: a.value for c, a in absinfo.items()}, keys)

    def reset(self, values: dict[int, int], keys) -> bool:
        """Replaces the raw state (after opening the pad, or a SYN_DROPPED); True when the canonical state changed."""
        self.values = dict(values)
        self.keys = set(keys)
        self.resync_needed = False
        self._in_sync = True
        return self._commit()

    def feed(self, event) -> bool:
        """One event; True when it closed a frame (SYN_REPORT) that changed the canonical state."""
        kind, code, value = event.type, event.code, event.value
        if kind == EV_SYN:
            if code == SYN_DROPPED:
                self._in_sync = False
            elif code == SYN_REPORT:
                if not self._in_sync:
                    self.resync_needed = True
                    return False
                return self._commit()
            return False
        if not self._in_sync:
            return False
        if kind == EV_ABS:
            self.values[code] = value
        elif kind == EV_KEY:
            if value:  # 1 pressed, 2 auto-repeat
                self.keys.add(code)
            else:
                self.keys.discard(code)
        return False

    def axis(self, code: int) -> float:
        """Axis ``code`` normalized to [-1, 1]; the centre of its range until the pad has reported it."""
        low, high = self.ranges[code]
        return normalized(self.values.get(code, (low + high) // 2), low, high)

    def _held(self, spec: ButtonSpec) -> bool:
        if spec.axis is None:
            return bool(self.keys & set(spec.keys))
        travel = (self.axis(spec.axis) + 1.0) / 2.0
        return (1.0 - travel if spec.invert else travel) > spec.above

    def compute(self) -> PadState:
        axes = {role: shaped(self.axis(spec.code), spec) for role, spec in self.mapping.axes.items()}
        buttons = {role: self._held(spec) for role, spec in self.mapping.buttons.items()}
        return PadState(**{role: axes.get(role, 0.0) for role in AXES},
                        **{role: buttons.get(role, False) for role in BUTTONS})

    def _commit(self) -> bool:
        state = self.compute()
        changed = state != self.state
        self.state = state
        return changed
