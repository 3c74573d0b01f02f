"""Actuators: the car's steering and throttle outputs behind one interface. ``create_actuator`` imports only the
kind it is asked for, and the hardware library of ``pca9685`` (Adafruit ServoKit) only when it starts.

The real car is driven only with a calibration measured on it: ``create_actuator("pca9685")`` refuses the shipped
example file (``config/car_calibration.yaml``, what the car gets when ``jetracer-trt calibrate`` was never run)
unless ``allow_example_calibration`` says so. ``neutral.write_neutral`` (the last resort) never refuses it.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import JetracerError
from .base import (
    NEUTRAL, Actuator, ActuatorError, Command, NullActuator, SimActuator, terminate_as_interrupt,
)
from .calibration import (
    CarCalibration, ServoChannel, default_calibration_path, is_example_calibration, load_calibration,
    save_calibration, to_pulse_us, user_calibration_path,
)

KINDS = ("pca9685", "sim", "none")


def create_actuator(kind: str, calibration: CarCalibration | str | os.PathLike | None = None,
                    allow_example_calibration: bool = False, **kw) -> Actuator:
    """An actuator of ``kind`` (not started yet; use it as a context manager or call ``start()``).

    ``calibration``: a CarCalibration, a path to a calibration file, or None for the default file (used by
    ``pca9685`` only; ``sim`` and ``none`` just keep it). ``kw`` goes to the class (e.g. ``servokit_factory``).
    The actuator's ``calibration_source`` is the file loaded, ``"given"`` for a CarCalibration, ``""`` for ``sim``
    and ``none``. Raises JetracerError for an unknown kind, an unreadable calibration, and for ``pca9685`` with the
    shipped example calibration unless ``allow_example_calibration``.
    """
    if kind == "pca9685":
        from .pca9685 import PCA9685Actuator

        source = "given"
        if calibration is None or isinstance(calibration, (str, os.PathLike)):
            path = Path(calibration) if calibration is not None else default_calibration_path()
            if not allow_example_calibration and is_example_calibration(path):
                raise JetracerError(
                    f"{path} is the shipped example calibration, not this car's: the board will not be driven with "
                    f"it. Put the car on a stand, wheels up, and run `jetracer-trt calibrate` (it writes "
                    f"{user_calibration_path()}), or set allow_example_calibration to true to drive with the example"
                )
            calibration, source = load_calibration(path), str(path)
        actuator = PCA9685Actuator(calibration, **kw)
        actuator.calibration_source = source
        return actuator
    if kind == "sim":
        return SimActuator(calibration, **kw)
    if kind == "none":
        return NullActuator(calibration, **kw)
    raise JetracerError(f"unknown actuator {kind!r}; choose one of {', '.join(KINDS)}")


__all__ = [
    "KINDS", "NEUTRAL", "Actuator", "ActuatorError", "CarCalibration", "Command", "NullActuator", "ServoChannel",
    "SimActuator", "create_actuator", "load_calibration", "save_calibration", "terminate_as_interrupt", "to_pulse_us",
]
