"""Keeps a camera alive: ``ReconnectingSource`` reopens a source that fails, waiting longer after each failure."""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from ..config import load_config
from ..errors import JetracerError
from .base import CameraError, FrameSource

log = logging.getLogger(__name__)


class ReconnectingSource(FrameSource):
    """Wraps the source that ``factory()`` builds and reopens it, with exponential backoff, when it fails.

    A CameraError at ``open()`` or ``read()`` closes the source; each later ``read()`` first waits the current
    backoff (``initial_backoff_s``, doubled after every failed attempt up to ``max_backoff_s``), then builds and
    opens a new source. While the camera is down ``read()`` returns None and never raises CameraError; the backoff
    starts over once a frame arrives. ``EndOfStream`` and errors that waiting cannot fix (``retryable`` False, or a
    plain JetracerError such as a bad setting) pass through: so a JetracerError out of ``open()`` or ``read()`` is
    always fatal, and the caller should end with its message rather than retry. ``reconnects`` counts the
    successful reopenings; ``stamp_origin`` and ``stamp_fallbacks`` are those of the sources it has opened.

    Backoff defaults come from the ``reconnect`` section of config/camera.yaml. ``sleep`` is injectable: tests pass
    a recorder, a node can pass ``threading.Event().wait`` so shutdown interrupts the wait.
    """

    kind = "reconnecting"

    def __init__(
        self,
        factory: Callable[[], FrameSource],
        initial_backoff_s: float | None = None,
        max_backoff_s: float | None = None,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        defaults = load_config("camera")["reconnect"]
        if initial_backoff_s is None:
            initial_backoff_s = defaults["initial_backoff_s"]
        if max_backoff_s is None:
            max_backoff_s = defaults["max_backoff_s"]
        self.initial_backoff_s = float(initial_backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise JetracerError(
                "reconnect backoff needs 0 < initial_backoff_s <= max_backoff_s, got "
                f"{self.initial_backoff_s} and {self.max_backoff_s}"
            )
        self._factory = factory
        self._sleep = sleep
        self._clock = clock
        self.source: FrameSource | None = None  # the connected source, None while down
        self.reconnects = 0
        self.failed_attempts = 0  # failed openings since the camera was last delivering frames
        self._backoff = self.initial_backoff_s
        self._opened = False
        self._down_since: float | None = None
        self._logged_max = False
        self._stamp_origin: str | None = None
        self._fallbacks_of_closed_sources = 0

    @property
    def connected(self) -> bool:
        return self.source is not None

    def describe(self) -> str:
        return self.source.describe() if self.source is not None else "camera (disconnected)"

    @property
    def stamp_origin(self) -> str | None:
        """How the wrapped source stamps its frames; None until a source has been opened."""
        return self._stamp_origin

    @property
    def stamp_fallbacks(self) -> int:
        live = self.source.stamp_fallbacks if self.source is not None else 0
        return self._fallbacks_of_closed_sources + live

    def open(self) -> None:
        """One attempt right away; when it fails the camera counts as down and ``read()`` keeps trying."""
        self.close()
        self._opened = True
        self._backoff = self.initial_backoff_s
        self._connect()

    def read(self) -> np.ndarray | None:
        if not self._opened:
            raise self._not_open()
        if self.source is None:
            self._sleep(self._backoff)
            self._backoff = min(2.0 * self._backoff, self.max_backoff_s)
            if not self._opened or not self._connect():  # closed during the wait, or still down
                return None
            self.reconnects += 1
            down_s = self._clock() - self._down_since if self._down_since is not None else 0.0
            log.info("camera back after %d failed attempt(s), %.1f s down: %s", self.failed_attempts, down_s,
                     self.source.describe())
        try:
            frame = self.source.read()
        except CameraError as exc:
            if not exc.retryable:
                raise
            self._drop()
            self._went_down(f"camera lost: {exc}")
            return None
        if frame is not None:
            self.capture_time = self.source.capture_time
            self._backoff = self.initial_backoff_s
            self.failed_attempts = 0
            self._logged_max = False
            self._down_since = None
        return frame

    def close(self) -> None:
        self._opened = False
        self._drop()

    def _connect(self) -> bool:
        source = None
        try:
            source = self._factory()
            source.open()
        except CameraError as exc:
            if source is not None:
                source.close()
            if not exc.retryable:
                raise
            self.failed_attempts += 1
            self._went_down(f"camera unavailable (attempt {self.failed_attempts}): {exc}")
            return False
        self.source = source
        self._stamp_origin = source.stamp_origin
        return True

    def _went_down(self, message: str) -> None:
        if self._down_since is None:
            self._down_since = self._clock()
        if not self._logged_max:
            log.warning("%s; retrying in %.1f s", message, self._backoff)
            self._logged_max = self._backoff >= self.max_backoff_s
            if self._logged_max:
                log.warning("camera still unavailable: retrying every %.1f s, logging only at debug level until it "
                            "comes back", self.max_backoff_s)
        else:
            log.debug("%s; retrying in %.1f s", message, self._backoff)

    def _drop(self) -> None:
        if self.source is not None:
            source, self.source = self.source, None
            self._fallbacks_of_closed_sources += source.stamp_fallbacks
            source.close()
