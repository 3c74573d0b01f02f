"""The one interface every actuator implements; the control node never knows which car it drives.

Life cycle (donkeycar-style part): ``start()``, then ``apply(steering, throttle)`` as often as commands come,
``neutral()`` whenever the car must stop, ``close()`` at the end. ``close()`` always leaves the outputs in neutral
(steering centred, throttle stopped) and may be called any number of times; used as a context manager the actuator
goes neutral on the way out even when an exception (Ctrl-C included) leaves the block.

The deadman, the e-stop and command time-outs belong to the control node; this layer guarantees that a bad command
(NaN, inf, not a number) is neutral for its channel and that an exception while driving ends in neutral.
"""
from __future__ import annotations

import abc
import collections
import contextlib
import logging
import math
import signal
import threading
from typing import Any, Iterator, NamedTuple

logger = logging.getLogger(__name__)


class Command(NamedTuple):
    """Steering (-1 full left .. +1 full right) and throttle (-1 full reverse .. +1 full forward)."""

    steering: float
    throttle: float


NEUTRAL = Command(0.0, 0.0)


class Actuator(abc.ABC):
    """Subclasses implement ``_write(command)`` with an already clamped, finite command, and optionally the
    ``_start()`` and ``_release()`` hooks. Thread-safe: a watchdog may call ``neutral()`` while a timer calls
    ``apply()``.
    """

    kind = "base"

    def __init__(self) -> None:
        self.last_command: Command = NEUTRAL
        self._lock = threading.RLock()
        self._started = False
        self._closed = False
        self._bad_input = {"steering": False, "throttle": False}  # warned once until a finite value comes back

    # -- hooks -------------------------------------------------------------------------------------------------
    def _start(self) -> None:  # noqa: B027 - optional hook
        """Opens the hardware and sets neutral (and arms what needs arming)."""

    @abc.abstractmethod
    def _write(self, command: Command) -> None:
        """Drives the outputs; ``command`` is clamped to [-1, 1] and finite."""

    def _release(self) -> None:  # noqa: B027 - optional hook
        """Lets go of the hardware after the last neutral."""

    # -- life cycle --------------------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._started and not self._closed

    def start(self) -> "Actuator":
        """Opens the outputs and puts them in neutral. Calling it again while started does nothing."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{type(self).__name__} is closed; create a new one")
            if self._started:
                return self
            try:
                self._start()
            except BaseException:
                self._release()
                raise
            self._started = True
            self.last_command = NEUTRAL
            return self

    def apply(self, steering: float, throttle: float) -> Command:
        """Drives the car; each value is clamped to [-1, 1], a non-finite one becomes 0 (with a warning).

        Returns the command actually applied. If writing fails, neutral is tried before the error propagates.
        """
        command = Command(self._sanitize("steering", steering), self._sanitize("throttle", throttle))
        with self._lock:
            if not self.started:
                raise RuntimeError(f"{type(self).__name__}.apply() before start() or after close()")
            try:
                self._write(command)
            except BaseException:
                self._try_neutral()
                raise
            self.last_command = command
        return command

    def neutral(self) -> None:
        """Steering centred, throttle stopped. Does nothing before ``start()`` or after ``close()`` (the outputs
        are neutral then already, or were never driven)."""
        with self._lock:
            if not self.started:
                return
            self._write(NEUTRAL)
            self.last_command = NEUTRAL

    def close(self) -> None:
        """Neutral, then release. Idempotent; never raises (it runs in ``finally`` and ``__exit__`` paths): a
        failure to set neutral is logged as critical, since the car may then still be moving."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._started:
                    self._try_neutral()
            finally:
                self._closed = True
                try:
                    self._release()
                except Exception:  # noqa: BLE001 - releasing must not hide the neutral outcome
                    logger.exception("releasing %s failed", type(self).__name__)

    def __enter__(self) -> "Actuator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------------------------------
    def _try_neutral(self) -> bool:
        try:
            self._write(NEUTRAL)
        except BaseException as exc:  # noqa: BLE001 - reported loudly; the original error (if any) goes on
            logger.critical("could not set neutral on %s: %s -- the car may still be moving: switch it off",
                            type(self).__name__, exc)
            return False
        self.last_command = NEUTRAL
        return True

    def _sanitize(self, name: str, value: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = math.nan
        if not math.isfinite(v):
            if not self._bad_input[name]:
                logger.warning("%s command %r is not a finite number: %s set to neutral", name, value, name)
                self._bad_input[name] = True
            return 0.0
        self._bad_input[name] = False
        return max(-1.0, min(1.0, v))


class NullActuator(Actuator):
    """``none``: drives nothing, remembers the commands (``last_command``, the recent ``history``).

    For dry runs of the whole pipeline on a desk, and for tests of code that owns an actuator.
    """

    kind = "none"

    def __init__(self, calibration=None, history: int = 1000) -> None:
        super().__init__()
        self.calibration = calibration  # kept only so every kind takes the same arguments
        self.history: collections.deque[Command] = collections.deque(maxlen=history)

    def _write(self, command: Command) -> None:
        self.history.append(command)


class SimActuator(NullActuator):
    """``sim``: the simulated car. The ROS simulator node receives the commands over a topic; this class exists so
    the control node calls the same ``start / apply / neutral / close`` whatever it drives, never branching on the
    kind."""

    kind = "sim"


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt like Ctrl-C does, so ``with actuator:`` blocks and
    ``finally`` clauses run and the car ends in neutral (Python's default SIGTERM ends the process without them).

    For plain command-line programs; a ROS node leaves signals to rclpy. Does nothing outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
