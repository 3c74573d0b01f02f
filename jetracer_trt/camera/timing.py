"""Frame timing: ``Pacer`` plays recordings in real time, ``RateMeter`` measures the rate frames really arrive at,
``DriverClock`` turns a driver's buffer times into wall-clock capture stamps."""
from __future__ import annotations

import collections
import logging
import math
import time
from typing import Callable

from ..config import load_config
from ..errors import JetracerError

log = logging.getLogger(__name__)


class Pacer:
    """``wait()`` sleeps until the next frame is due at ``fps``; ``fps`` 0 never waits (as fast as possible).

    Frames are due on a fixed schedule (no drift from sleep overshoot); a reader that falls more than one frame
    behind restarts the schedule instead of bursting to catch up.
    """

    def __init__(self, fps: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] = time.sleep):
        if not math.isfinite(fps) or fps < 0:
            raise JetracerError(f"fps must be >= 0 (0 = as fast as possible), got {fps!r}")
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._due: float | None = None

    def wait(self) -> None:
        if self.period == 0.0:
            return
        now = self._clock()
        if self._due is None:
            self._due = now
        delay = self._due - now
        if delay > 0:
            self._sleep(delay)
        elif delay < -self.period:
            self._due = now
        self._due += self.period


class RateMeter:
    """Counts frames and reports their real rate over the last ``window_s`` seconds.

    ``tick()`` once per frame; ``fps`` is (frames in the window - 1) / (now - first frame in the window), so it is
    exact for a steady stream, falls when frames slow down and reaches 0 a window after they stop. ``count`` is the
    total number of ticks. ``window_s`` defaults to ``rate_window_s`` of config/camera.yaml.
    """

    def __init__(self, window_s: float | None = None, clock: Callable[[], float] = time.monotonic):
        if window_s is None:
            window_s = load_config("camera")["rate_window_s"]
        if not math.isfinite(window_s) or window_s <= 0:
            raise JetracerError(f"rate window must be > 0 s, got {window_s!r}")
        self.window_s = float(window_s)
        self.count = 0
        self._clock = clock
        self._ticks: collections.deque[float] = collections.deque()

    def tick(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        self._ticks.append(now)
        self.count += 1
        self._expire(now)

    def rate(self, now: float | None = None) -> float:
        """Frames per second over the window that ends at ``now`` (the clock's time when None)."""
        now = self._clock() if now is None else now
        self._expire(now)
        if len(self._ticks) < 2:
            return 0.0
        span = max(now, self._ticks[-1]) - self._ticks[0]
        return (len(self._ticks) - 1) / span if span > 0 else 0.0

    @property
    def fps(self) -> float:
        return self.rate()

    def _expire(self, now: float) -> None:
        while self._ticks and self._ticks[0] < now - self.window_s:
            self._ticks.popleft()


class DriverClock:
    """Moves a driver's buffer times onto the wall clock, guarded against times on an unknown clock.

    ``stamp(driver_s, fallback)`` takes the buffer time in seconds. V4L2 drivers stamp on CLOCK_MONOTONIC
    (``time.monotonic()`` on Linux; uvcvideo by default), which is moved to the wall clock as
    ``time.time() - (time.monotonic() - driver_s)``, both clocks read together; a time on CLOCK_REALTIME (uvcvideo
    loaded with ``clock=realtime``) is already a wall-clock time. The two cannot be confused: one counts from boot,
    the other from 1970. A driver time is used only when it is plausible for a frame just read on one of those
    clocks: not in the future and at most ``max_age_s`` old. Anything else (0 before the first frame, another
    clock, garbage) gives ``fallback`` instead, counted in ``fallbacks`` and logged once, so a clock-domain mistake
    can never make latencies look better than they are.
    """

    FUTURE_TOLERANCE_S = 0.001  # rounding of millisecond values; a correct buffer time is never after the read

    def __init__(self, source: str, max_age_s: float = 1.0, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.source = source
        self.max_age_s = float(max_age_s)
        self.fallbacks = 0
        self._wall = wall
        self._monotonic = monotonic

    def _plausible_age(self, now: float, driver_s: float) -> float | None:
        age = now - driver_s
        return max(age, 0.0) if -self.FUTURE_TOLERANCE_S <= age <= self.max_age_s else None

    def stamp(self, driver_s: float, fallback: float) -> float:
        now_monotonic, now_wall = self._monotonic(), self._wall()
        if math.isfinite(driver_s) and driver_s > 0:
            for now in (now_monotonic, now_wall):
                age = self._plausible_age(now, driver_s)
                if age is not None:
                    return now_wall - age
        self.fallbacks += 1
        if self.fallbacks == 1:
            log.warning("%s: the driver's buffer time (%.3f s) is neither a CLOCK_MONOTONIC (now %.3f s) nor a "
                        "wall-clock time of the last %g s; stamping frames with the time before the read instead "
                        "while it stays so", self.source, driver_s, now_monotonic, self.max_age_s)
        return fallback
