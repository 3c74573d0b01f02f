"""The one interface every actuator implements; the control node never knows which car it drives.

Life cycle (donkeycar-style part): ``start()``, then ``apply(steering, throttle)`` as often as commands come,
``neutral()`` whenever the car must stop, ``close()`` at the end. ``close()`` always tries to leave the outputs in
neutral (steering centred, throttle stopped) and may be called any number of times; used as a context manager the
actuator goes neutral on the way out even when an exception (Ctrl-C included) leaves the block.

Write errors (a loose cable, a board that did not acknowledge: ``OSError(121, 'Remote I/O error')``) are expected on
a car that vibrates. A subclass's ``_write`` raises ``ActuatorError`` for them, and this class handles them the same
way for every kind:

- a failed write is tried again, at most ``retry_attempts`` times within ``retry_window_s`` (3 within 20 ms), so a
  glitch costs a few milliseconds and nothing else;
- a driving write (``apply()``) that still fails makes the actuator try neutral (as hard, no harder: the control loop
  must not stall) and raise ``ActuatorError``, saying whether neutral landed. The actuator stays started and usable:
  the caller logs the error and goes on, and the next command tries the board again. One bad write never ends a
  drive, and a board that stays unreachable is reported on every command;
- ``neutral()`` and ``close()`` keep trying until neutral lands or ``neutral_give_up_s`` (2 s) has passed, then log
  CRITICAL ("the car may still be moving: switch it off"); ``neutral()`` then raises ``ActuatorError``, ``close()``
  never raises;
- ``error_counts`` counts failed writes (after their retries), retried attempts and neutrals that did not land, for
  the control node's diagnostics.

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
import time
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

from ..errors import JetracerError

logger = logging.getLogger(__name__)

RETRY_ATTEMPTS = 3  # tries of one write, the first included
RETRY_WINDOW_S = 0.02  # no new try of a driving write after this long: one control period at 50 Hz
NEUTRAL_GIVE_UP_S = 2.0  # how long neutral() and close() keep trying before they say the car may be moving
T = TypeVar("T")


class ActuatorError(JetracerError):
    """Writing to the car's outputs failed, also when tried again (the message says which output and whether
    neutral landed afterwards). The actuator stays usable: the next write tries the board again."""


class Command(NamedTuple):
    """Steering (-1 full left .. +1 full right) and throttle (-1 full reverse .. +1 full forward)."""

    steering: float
    throttle: float


NEUTRAL = Command(0.0, 0.0)


class Actuator(abc.ABC):
    """Subclasses implement ``_write(command)`` with an already clamped, finite command, raising ``ActuatorError``
    for a write that failed and may pass when tried again, and optionally the ``_start()`` and ``_release()`` hooks.
    Thread-safe: a watchdog may call ``neutral()`` while a timer calls ``apply()``.

    ``retry_attempts``, ``retry_window_s`` and ``neutral_give_up_s`` bound the retries (module docstring);
    ``clock`` (seconds, monotonic) and ``sleep`` measure and wait them, and are replaced in tests.
    ``calibration_source`` says where the calibration came from (a file, ``"given"``, or ``""``): for the logs.
    """

    kind = "base"
    calibration_source = ""

    def __init__(
        self,
        *,
        retry_attempts: int = RETRY_ATTEMPTS,
        retry_window_s: float = RETRY_WINDOW_S,
        neutral_give_up_s: float = NEUTRAL_GIVE_UP_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.last_command: Command = NEUTRAL
        self.error_counts = {"write_errors": 0, "retried_writes": 0, "neutral_failures": 0}
        self.retry_attempts = max(1, int(retry_attempts))
        self.retry_window_s = float(retry_window_s)
        self.neutral_give_up_s = float(neutral_give_up_s)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.RLock()
        self._started = False
        self._closed = False
        self._bad_input = {"steering": False, "throttle": False}  # warned once until a finite value comes back

    # -- hooks -------------------------------------------------------------------------------------------------
    def _start(self) -> None:  # noqa: B027 - optional hook
        """Opens the hardware and sets neutral (and arms what needs arming)."""

    @abc.abstractmethod
    def _write(self, command: Command) -> None:
        """Drives the outputs; ``command`` is clamped to [-1, 1] and finite. Raises ActuatorError on failure."""

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

        Returns the command actually applied. A write that fails also when tried again raises ``ActuatorError``
        after neutral was tried; the actuator stays usable and the next call tries the board again. Any other
        exception also tries neutral before it propagates.
        """
        command = Command(self._sanitize("steering", steering), self._sanitize("throttle", throttle))
        with self._lock:
            if not self.started:
                raise RuntimeError(f"{type(self).__name__}.apply() before start() or after close()")
            try:
                self._retried(lambda: self._write(command), self.retry_window_s, self.retry_attempts)
            except ActuatorError as exc:
                self.error_counts["write_errors"] += 1
                failed = self._set_neutral(self.retry_window_s, self.retry_attempts)
                outcome = "the car is in neutral" if failed is None else "neutral failed too: the car may still move"
                raise ActuatorError(f"{exc}; {outcome}") from None
            except BaseException:
                self._set_neutral(self.retry_window_s, self.retry_attempts)
                raise
            self.last_command = command
        return command

    def neutral(self) -> None:
        """Steering centred, throttle stopped, tried until it lands or ``neutral_give_up_s`` has passed (then
        CRITICAL and ``ActuatorError``). Does nothing before ``start()`` or after ``close()`` (the outputs are
        neutral then already, or were never driven)."""
        with self._lock:
            if self.started and not self._neutral_or_alarm():
                raise ActuatorError(f"could not set neutral on {type(self).__name__}: the car may still be moving")

    def close(self) -> None:
        """Neutral (tried as in ``neutral()``), then release. Idempotent; never raises (it runs in ``finally`` and
        ``__exit__`` paths): a neutral that did not land is logged as critical."""
        with self._lock:
            if self._closed:
                return
            try:
                if self._started:
                    self._neutral_or_alarm()
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
    def _retried(self, write: Callable[[], T], give_up_s: float, attempts: int | None = None) -> T:
        """``write()``, called again after an ActuatorError until it succeeds, ``attempts`` calls were made (None:
        no limit) or the next one would start more than ``give_up_s`` after the first; then the last error."""
        delay = self.retry_window_s / self.retry_attempts
        first = self._clock()
        made = 0
        while True:
            try:
                return write()
            except ActuatorError:
                made += 1
                if (attempts is not None and made >= attempts) or self._clock() + delay - first > give_up_s:
                    raise
            self.error_counts["retried_writes"] += 1
            self._sleep(delay)

    def _set_neutral(self, give_up_s: float, attempts: int | None = None) -> Exception | None:
        """Neutral, retried; returns None when it landed, else the error (counted in ``neutral_failures``). Never
        raises an Exception: it also runs while another error is on its way out."""
        try:
            self._retried(lambda: self._write(NEUTRAL), give_up_s, attempts)
        except Exception as exc:  # noqa: BLE001 - the caller reports it
            self.error_counts["neutral_failures"] += 1
            return exc
        self.last_command = NEUTRAL
        return None

    def _neutral_or_alarm(self) -> bool:
        """Neutral, tried for up to ``neutral_give_up_s``; False, with a CRITICAL log line, when it did not land."""
        failed = self._set_neutral(self.neutral_give_up_s)
        if failed is not None:
            logger.critical("could not set neutral on %s within %.1f s: %s -- the car may still be moving: switch it "
                            "off", type(self).__name__, self.neutral_give_up_s, failed)
        return failed is None

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

    def __init__(self, calibration=None, history: int = 1000, **retry: Any) -> None:
        super().__init__(**retry)
        self.calibration = calibration  # kept only so every kind takes the same arguments
        self.history: collections.deque[Command] = collections.deque(maxlen=history)

    def _write(self, command: Command) -> None:
        self.history.append(command)


class SimActuator(NullActuator):
    """``sim``: the simulated car. The ROS simulator node receives the commands over a topic; this class exists so
    the control node calls the same ``start / apply / neutral / close`` whatever it drives, never branching on the
    kind."""

    kind = "sim"


# what ends a command-line program from outside: kill, a closed terminal or a dropped SSH session, Ctrl-\ (quit)
TERMINATING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name))


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM, SIGHUP (the terminal or the SSH session went away) and SIGQUIT (Ctrl-\\) raise
    KeyboardInterrupt like Ctrl-C does, so ``with actuator:`` blocks and ``finally`` clauses run and the car ends in
    neutral (Python's default for each of them ends the process without running them). A signal that was ignored
    when the block began (``nohup`` ignores SIGHUP) stays ignored.

    For plain command-line programs; a ROS node leaves signals to rclpy. Does nothing outside the main thread.
    """

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    with signals_handled_by(handler, TERMINATING_SIGNALS):
        yield


@contextlib.contextmanager
def signals_handled_by(handler: Any, signals: tuple[int, ...]) -> Iterator[None]:
    """Within the block, each of ``signals`` not ignored when it began goes to ``handler`` (a function or
    ``signal.SIG_IGN``); the previous handlers come back at the end. Does nothing outside the main thread, where
    Python cannot set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig, before in previous.items():
        if before is not signal.SIG_IGN:
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)
