"""The web page on the simulator: the page drives a simulated car and labels its frames into a real dataset.

A thread steps a ``SimWorld`` at its camera rate with the joystick's command and hands each frame to the page,
with the simulator's true road target as the overlay's target; clicks are stored by a ``DatasetWriter``
(``source: "click"``, the frame's stamp), and while recording every frame is stored with that true target
(``source: "record"``). The same ``Backend`` protocol the collection node implements on the real car.

A frame's stamp is taken when its rendering starts (the simulator's moment of capture), so the status's latencies
are the simulator's own: ``capture_to_web`` until the frame is handed to the page, ``capture_to_command`` until the
joystick's command is applied to the car with the step after that frame (recording's disk writes included).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np

from ..dataset import DatasetWriter
from ..errors import JetracerError
from ..recorder import LatencyFigures
from ..sim.world import SimWorld
from .app import Frame

log = logging.getLogger(__name__)

FrameSink = Callable[[int, np.ndarray, dict], None]


class SimBackend:
    def __init__(self, data_dir, track_seed: int = 0, randomize: bool = False):
        self.world = SimWorld(track_seed, randomize=randomize)
        self.track_seed = int(track_seed)
        self.writer = DatasetWriter(data_dir)
        self.rate_hz = self.world.rate_hz
        self._lock = threading.Lock()  # the joystick's command and the flags, shared with the stepping thread
        self._writer_lock = threading.Lock()  # clicks (web worker thread) and recording (stepping thread)
        self._command = (0.0, 0.0)
        self._estop = False
        self._recording = False
        self._error: str | None = None
        self.latency = LatencyFigures("capture_to_command", "capture_to_web")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running ----------------------------------------------------------------------------------------------------
    def start(self, show_frame: FrameSink) -> "SimBackend":
        """Starts stepping the world; each frame goes to ``show_frame(stamp_ns, rgb, overlay)`` (``WebApp``'s)."""
        self._thread = threading.Thread(target=self._run, args=(show_frame,), name="sim-backend", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.writer.close()

    def _run(self, show_frame: FrameSink) -> None:
        period = 1.0 / self.rate_hz
        tick = time.monotonic()
        while not self._stop.is_set():
            stamp_ns = time.time_ns()
            rgb = self.world.observe().copy()  # observe() reuses its buffer; the page keeps frames for a while
            target = self.world.label()
            with self._lock:
                steering, throttle = (0.0, 0.0) if self._estop else self._command
                recording = self._recording
            self.latency.add("capture_to_web", (time.time_ns() - stamp_ns) / 1e6)
            show_frame(stamp_ns, rgb, {"target": list(target), "steering": steering, "throttle": throttle})
            if recording:
                self._store(rgb, *target, source="record", stamp_ns=stamp_ns, track_seed=self.track_seed,
                            steering=steering, throttle=throttle)
            self.latency.add("capture_to_command", (time.time_ns() - stamp_ns) / 1e6)
            self.world.step(steering, throttle)
            tick += period
            self._stop.wait(max(0.0, tick - time.monotonic()))

    def car_state(self) -> dict:
        """Where the car is and what it was told (for tests and the status line)."""
        s = self.world.car.state
        with self._lock:
            steering, throttle = (0.0, 0.0) if self._estop else self._command
        return {"x": s.x, "y": s.y, "speed": s.speed, "steering": steering, "throttle": throttle}

    def _store(self, rgb: np.ndarray, x: float, y: float, **meta) -> str:
        with self._writer_lock:
            try:
                image = self.writer.append(rgb, x, y, **meta)
            except JetracerError as exc:
                self._error = str(exc)
                raise
            self._error = None
            return image

    # -- the Backend protocol -----------------------------------------------------------------------------------
    def label(self, frame: Frame, x: float, y: float) -> str:
        return self._store(frame.rgb, x, y, source="click", stamp_ns=frame.stamp_ns, track_seed=self.track_seed)

    def undo(self) -> str | None:
        with self._writer_lock:
            return self.writer.undo_last()

    def delete(self, image: str) -> None:
        with self._writer_lock:
            self.writer.remove(image)

    def dataset_root(self):
        return self.writer.root

    def drive(self, steering: float, throttle: float, held: bool, client_id: str) -> None:
        with self._lock:
            self._command = (steering, throttle) if held else (0.0, 0.0)

    def estop(self) -> None:
        with self._lock:
            self._estop = True

    def set_recording(self, on: bool) -> None:
        with self._lock:
            self._recording = on

    def status(self) -> dict:
        with self._lock:
            estop, recording = self._estop, self._recording
        return {"mode": "manual (simulator)", "session_samples": self.writer.count, "recording": recording,
                "estop": estop, "error": self._error, "speed_mps": round(self.world.car.state.speed, 2),
                "latency_ms": self.latency.figures()}
