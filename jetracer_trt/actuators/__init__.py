"""Actuators: the car's steering and throttle outputs behind one interface. ``create_actuator`` imports only the
kind it is asked for, and the hardware library of ``pca9685`` (Adafruit ServoKit) only when it starts."""
from __future__ import annotations

import os

from ..errors import JetracerError
from .base import NEUTRAL, Actuator, Command, NullActuator, SimActuator, terminate_as_interrupt
from .calibration import CarCalibration, ServoChannel, load_calibration, save_calibration, to_pulse_us

KINDS = ("pca9685", "sim", "none")


def create_actuator(kind: str, calibration: CarCalibration | str | os.PathLike | None = None, **kw) -> Actuator:
    """An actuator of ``kind`` (not started yet; use it as a context manager or call ``start()``).

    ``calibration``: a CarCalibration, a path to a calibration file, or None for the default file (used by
    ``pca9685`` only; ``sim`` and ``none`` just keep it). ``kw`` goes to the class (e.g. ``servokit_factory``).
    Raises JetracerError for an unknown kind.
    """
    if kind == "pca9685":
        from .pca9685 import PCA9685Actuator

        if calibration is None or isinstance(calibration, (str, os.PathLike)):
            calibration = load_calibration(calibration)
        return PCA9685Actuator(calibration, **kw)
    if kind == "sim":
        return SimActuator(calibration, **kw)
    if kind == "none":
        return NullActuator(calibration, **kw)
    raise JetracerError(f"unknown actuator {kind!r}; choose one of {', '.join(KINDS)}")


__all__ = [
    "KINDS", "NEUTRAL", "Actuator", "CarCalibration", "Command", "NullActuator", "ServoChannel", "SimActuator",
    "create_actuator", "load_calibration", "save_calibration", "terminate_as_interrupt", "to_pulse_us",
]
