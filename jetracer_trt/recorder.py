"""Recording training samples on the car: frames paired with what the driver commanded, or with a clicked target.

ROS-free; the data-collection node feeds it frames and commands with their stamps (seconds on the capture clock).

- **Drive mode** (teleop, autopilot): a frame is recorded with the command that was in effect when it was captured:
  the newest command stamped at or before the frame, and no older than ``max_pair_age_s``. A frame with no such
  command is not recorded and counted (``too_old``): a label from the past teaches the wrong turn. The label is the
  target the car's control law would steer to with that steering (``control.target_from_steering``); the raw
  steering and throttle go into the sample's metadata.
- **Click mode**: a frame with the target a person clicked on it (exact image coordinates in [-1, 1]).
- A car standing still (throttle 0: nobody holds the stick, the deadman stopped it) is not recorded (``standing``):
  its frames would teach steering with no consequence, as donkeycar's record-on-throttle also avoids.
- A rate limit keeps drive-mode recording at ``max_rate_hz`` (the model then sees data at the rate it drives).
- Disk errors never stop the node: the error is kept in ``last_error`` (for the log and the web page), nothing
  already written is lost (the dataset writer guarantees it), and the next sample tries again, so recording resumes
  by itself when space comes back.
"""
from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from .control import STEERING_LABEL_Y, ControlParams, target_from_steering
from .errors import JetracerError
from .latency import LatencyStats

SOURCES = ("click", "teleop", "autopilot")
STANDING_THROTTLE = 1e-3  # below this the car does not move
RATE_SLACK_S = 0.005  # camera stamps jitter: a frame a few ms early for the rate limit still counts as due
LATENCY_FRAMES = 90  # the live latency figures are medians over this many recent frames (3 s at 30 Hz)


class LatencyFigures:
    """Named latencies from a frame's capture (``capture_to_command``, ``capture_to_web``, ...) for the web page's
    live view: ``add`` from any thread, ``figures()`` the median of each over its last ``LATENCY_FRAMES`` frames in
    ms (None until measured), as the backends' ``status()["latency_ms"]``."""

    def __init__(self, *names: str):
        self._stats = {name: LatencyStats(recent=LATENCY_FRAMES) for name in names}
        self._lock = threading.Lock()  # fed by the camera's thread, read by the web page's

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            self._stats[name].add(ms)

    def figures(self) -> dict[str, float | None]:
        with self._lock:
            return {name: round(stats.recent()[0], 1) if stats.count else None for name, stats in self._stats.items()}


@dataclass(frozen=True)
class Command:
    stamp_s: float
    steering: float
    throttle: float
    mode: str


class Recorder:
    def __init__(self, writer, params: ControlParams, *, max_rate_hz: float = 15.0, max_pair_age_s: float = 0.1,
                 label_y: float = STEERING_LABEL_Y, calibration_id: str = "", session: str = "", history: int = 64):
        self.writer = writer
        self.params = params
        self.min_interval_s = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self.max_pair_age_s = max_pair_age_s
        self.label_y = label_y
        self.calibration_id = calibration_id
        self.session = session
        self.recording = False
        self.counts = {"written": 0, "clicks": 0, "too_old": 0, "standing": 0, "rate_limited": 0, "errors": 0,
                       "undone": 0}
        self.last_error: str | None = None
        self.last_image: str | None = None  # the image name of the last sample written
        self.writer_error: str | None = None  # why ``writer`` is None, when the host could not open the dataset
        self._commands: deque[Command] = deque(maxlen=history)
        self._stamps: deque[float] = deque(maxlen=history)
        self._last_recorded_s = float("-inf")
        self._written: list[str] = []  # image names of this session, newest last (for undo)

    def on_command(self, stamp_s: float, steering: float, throttle: float, mode: str) -> None:
        if self._stamps and stamp_s < self._stamps[-1]:
            return  # out of order: keep the history sorted
        self._commands.append(Command(stamp_s, steering, throttle, mode))
        self._stamps.append(stamp_s)

    def command_at(self, stamp_s: float) -> Command | None:
        """The newest command stamped at or before ``stamp_s`` and no older than ``max_pair_age_s``."""
        i = bisect.bisect_right(self._stamps, stamp_s) - 1
        if i < 0:
            return None
        command = self._commands[i]
        return command if stamp_s - command.stamp_s <= self.max_pair_age_s else None

    def on_frame(self, stamp_s: float, frame: np.ndarray) -> bool:
        """Drive mode: records ``frame`` with the command in effect at its capture, when recording; returns
        whether a sample was written."""
        if not self.recording:
            return False
        if stamp_s - self._last_recorded_s < self.min_interval_s - RATE_SLACK_S:
            self.counts["rate_limited"] += 1
            return False
        command = self.command_at(stamp_s)
        if command is None:
            self.counts["too_old"] += 1
            return False
        if abs(command.throttle) < STANDING_THROTTLE:
            self.counts["standing"] += 1
            return False
        x, y = target_from_steering(command.steering, self.params, self.label_y)
        source = "teleop" if command.mode in ("manual", "local_angle") else "autopilot"
        written = self._append(frame, x, y, source=source, mode=command.mode, stamp=stamp_s,
                               command_stamp=command.stamp_s, steering=command.steering, throttle=command.throttle)
        if written:
            self._last_recorded_s = stamp_s
        return written

    def label_click(self, stamp_s: float, frame: np.ndarray, x: float, y: float, mode: str = "") -> bool:
        """Click mode: ``frame`` (captured at ``stamp_s``) with the clicked target; recorded whether or not drive
        recording is on (a click is a deliberate act)."""
        written = self._append(frame, x, y, source="click", mode=mode, stamp=stamp_s)
        if written:
            self.counts["clicks"] += 1
        return written

    def undo(self) -> str | None:
        """Removes this session's last sample (a crash-safe tombstone in the index); returns its image name."""
        if not self._written:
            return None
        name = self._written[-1]
        try:
            self.remove(name)
        except (JetracerError, OSError) as exc:
            self._error(f"undo failed: {exc}")
            return None
        self.counts["undone"] += 1
        return name

    def remove(self, name: str) -> None:
        """Removes the sample of image ``name`` (this session's or an older one: the dataset browser's delete) with
        a crash-safe tombstone; a sample of this session no longer counts as written, nor can it be undone. Raises
        JetracerError (``DatasetWriteError`` on a disk error, the sample then still there)."""
        if self.writer is None:
            raise JetracerError(self.writer_error or "no dataset to remove samples from")
        self.writer.remove(name)
        if name in self._written:
            self._written.remove(name)
            self.counts["written"] -= 1

    def _append(self, frame, x: float, y: float, **meta) -> bool:
        if self.writer is None:  # the dataset folder could not be opened (yet): the host retries
            self._error(self.writer_error or "no dataset to record into")
            return False
        try:
            name = self.writer.append(frame, x, y, calibration=self.calibration_id, session=self.session, **meta)
        except (JetracerError, OSError) as exc:
            self._error(str(exc))
            return False
        self.last_error = None
        self.last_image = name
        self.counts["written"] += 1
        if name:
            self._written.append(name)
        return True

    def _error(self, message: str) -> None:
        self.counts["errors"] += 1
        self.last_error = message
