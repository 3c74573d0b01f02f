"""The last resort: neutral on the car's servo board, written by a process of its own.

The control node sets neutral on every way out it can still run code on. When it cannot (killed with SIGKILL, out
of memory, a crash in native code), the PCA9685 goes on sending the last pulses it was given, so the car keeps its
last steering and throttle. The supervisor (the runner of ``jetracer-trt launch``, the launch file's on-exit action)
then runs this, which opens the board without the ESC arming hold, writes neutral (throttle first, tried again until
it lands or ``NEUTRAL_GIVE_UP_S`` has passed) and lets go; the board then keeps sending neutral.

A last resort always tries: it takes whatever calibration there is, the shipped example included; it never raises
for a board problem (it logs CRITICAL and reports failure); and from the command line it ignores SIGINT, SIGTERM and
SIGHUP while it writes (at most a few seconds), so that the shutdown which started it cannot cut it short.

    python -m jetracer_trt.actuators.neutral --actuator pca9685 [--calibration FILE] [--fake]
    jetracer-trt neutral [--actuator pca9685|sim|none] [--calibration FILE] [--fake]

Exit status 0: neutral landed, or there was nothing to do (``sim``, ``none``); 1: it did not land.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from typing import Any, Callable

from . import KINDS, create_actuator
from .base import NEUTRAL_GIVE_UP_S, TERMINATING_SIGNALS, signals_handled_by
from .calibration import default_calibration_path

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Set the car's servo board to neutral (steering centred, throttle stopped) from a process of its own: the last "
    "resort when a driving program died without setting neutral. It opens the board without the ESC arming hold, "
    "writes the throttle first, tries again for up to 2 s, and uses the calibration the car's programs use (the "
    "shipped example too). Exit status 0: neutral set, or nothing to do (sim, none); 1: it failed, the car may "
    "still be moving."
)


def write_neutral(kind: str, calibration: str | os.PathLike | None = None, *,
                  servokit_factory: Callable[..., Any] | None = None, i2c_dev_dir: str | os.PathLike | None = "/dev",
                  neutral_give_up_s: float = NEUTRAL_GIVE_UP_S) -> bool:
    """Neutral on the board of actuator ``kind``; True when it landed (or ``kind`` is ``sim`` or ``none``: nothing
    to do), False with a CRITICAL log line when not. Never raises for a board or calibration problem.

    ``calibration``: the file (None: the one the car's programs use, the shipped example included).
    ``servokit_factory`` and ``i2c_dev_dir`` as for ``PCA9685Actuator`` (a fake board: a factory and None).
    """
    if kind in ("sim", "none"):
        return True
    try:
        actuator = create_actuator(kind, calibration, allow_example_calibration=True, servokit_factory=servokit_factory,
                                   i2c_dev_dir=i2c_dev_dir, neutral_give_up_s=neutral_give_up_s)
        # the ESC armed when the car started; holding neutral for it would only delay the end
        actuator.calibration = dataclasses.replace(actuator.calibration, esc_arming=0.0)
        with actuator:  # start() writes neutral, close() writes it again and lets go
            pass
    except Exception as exc:  # noqa: BLE001 - a last resort reports every failure, it never raises
        logger.critical("could not set neutral on the %s board: %s -- the car may still be moving: switch it off",
                        kind, exc)
        return False
    return actuator.error_counts["neutral_failures"] == 0  # close() logged CRITICAL when not


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``jetracer-trt neutral`` and ``python -m jetracer_trt.actuators.neutral``."""
    parser.add_argument("--actuator", choices=KINDS, default="pca9685",
                        help="what drives the car (default: pca9685, the servo board); sim and none: nothing to do")
    parser.add_argument("--calibration", metavar="FILE",
                        help="car calibration (I2C bus and address, channels, neutral pulses); default: the car's "
                             "~/.config/jetracer_trt/car_calibration.yaml, else the shipped example")
    parser.add_argument("--fake", action="store_true", help="no car: a fake servo board prints the pulses")


def run(args: argparse.Namespace) -> int:
    """Writes neutral with SIGINT, SIGTERM and SIGHUP ignored, prints one line; 0 when it landed, else 1."""
    from .pca9685 import fake_servokit_factory

    factory, dev_dir = (fake_servokit_factory(), None) if args.fake else (None, "/dev")
    with signals_handled_by(signal.SIG_IGN, (signal.SIGINT, *TERMINATING_SIGNALS)):
        landed = write_neutral(args.actuator, args.calibration, servokit_factory=factory, i2c_dev_dir=dev_dir)
    if args.actuator in ("sim", "none"):
        print(f"neutral: nothing to do for actuator {args.actuator}")
    elif landed:
        print(f"neutral: set on the {args.actuator} board{' (fake)' if args.fake else ''} "
              f"(calibration {args.calibration or default_calibration_path()})")
    else:
        print(f"neutral: FAILED on the {args.actuator} board: the car may still be moving: switch it off")
    return 0 if landed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jetracer_trt.actuators.neutral", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
