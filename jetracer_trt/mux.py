"""Who drives: the hand (a gamepad, the web page's joystick) or the model, twist_mux-style.

Each hand source has a priority and a timeout; it is *fresh* while its messages keep coming, and it *holds* the car
while it is fresh and its hold-to-drive button is pressed. The highest-priority source that holds the car is the
driver. Modes:

- ``manual``: the driver's steering and throttle.
- ``autopilot``: the model's command (control law on the road target).
- ``local_angle``: the model steers, the driver's throttle (Donkeycar's mode for first drives).

Hold-to-drive rules over every mode once any hand source has been heard: nothing held (the button released, the
pad unplugged, the web page closed) means stop, in autopilot too. A graph with no hand source at all (the plain
drive graph) drives on the model alone, under the governor's arming. ROS-free; the control node feeds it.
"""
from __future__ import annotations

from dataclasses import dataclass

MODES = ("manual", "autopilot", "local_angle")


@dataclass
class HandSource:
    name: str
    priority: int
    timeout_s: float
    steering: float = 0.0
    throttle: float = 0.0
    held: bool = False
    heard_at: float | None = None

    def fresh(self, now: float) -> bool:
        return self.heard_at is not None and now - self.heard_at <= self.timeout_s


@dataclass(frozen=True)
class Selection:
    """What the mux decided: ``command`` (None: stop), the reason as a state name, and whether a hand holds the
    car (holding the button is consent to move, so it counts as armed)."""

    command: tuple[float, float] | None
    state: str
    held: bool = False


class CommandMux:
    def __init__(self, sources: list[HandSource], mode: str = "autopilot"):
        self.sources = {s.name: s for s in sources}
        self.mode = "autopilot"
        self.set_mode(mode)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode

    def toggle(self) -> str:
        """The pad's manual/autopilot button: manual -> autopilot, anything else -> manual."""
        self.mode = "autopilot" if self.mode == "manual" else "manual"
        return self.mode

    def on_hand(self, name: str, steering: float, throttle: float, held: bool, now: float) -> None:
        source = self.sources[name]
        source.steering, source.throttle, source.held, source.heard_at = steering, throttle, held, now

    def driver(self, now: float) -> HandSource | None:
        holding = [s for s in self.sources.values() if s.fresh(now) and s.held]
        return max(holding, key=lambda s: s.priority) if holding else None

    def select(self, now: float, autopilot: tuple[float, float] | None, autopilot_state: str) -> Selection:
        """``autopilot``: the model's command, or None with ``autopilot_state`` saying why (waiting, deadman)."""
        heard = any(s.heard_at is not None for s in self.sources.values())
        driver = self.driver(now)
        if heard and driver is None:
            fresh = any(s.fresh(now) for s in self.sources.values())
            return Selection(None, "released" if fresh else "hand_lost")
        held = driver is not None
        if self.mode == "manual":
            if driver is None:
                return Selection(None, "waiting")
            return Selection((driver.steering, driver.throttle), "manual", held)
        if autopilot is None:
            return Selection(None, autopilot_state, held)
        if self.mode == "local_angle":
            if driver is None:
                return Selection(None, "waiting")
            return Selection((autopilot[0], driver.throttle), "local_angle", held)
        return Selection(autopilot, "driving", held)
