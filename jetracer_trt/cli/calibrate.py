"""``jetracer-trt calibrate``: the per-car calibration wizard (steering servo and ESC), wheels up.

The wizard itself is ``jetracer_trt.actuators.wizard.CalibrationWizard``; this module only builds it from the
command line. Adafruit's ServoKit is imported only when a real board is opened (not for ``--help``, not for
``--fake``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..errors import JetracerError


def register(subparsers) -> None:
    """Adds the ``calibrate`` verb."""
    parser = subparsers.add_parser(
        "calibrate",
        help="calibrate the car's steering and throttle (wheels up), write its calibration file",
        description=(
            "Walk through the car's calibration with all four wheels off the ground: which way the steering turns, "
            "its centre and both ends, arming the ESC, the throttle's real neutral (no creep) and the smallest "
            "throttle that turns the wheels, and which way is forward. Nothing is written until you confirm at the "
            "end; Ctrl-C or Ctrl-D at any moment (and a closed terminal or dropped SSH session) puts the car in "
            "neutral and leaves the old file as it was. "
            "Without --out the file is ~/.config/jetracer_trt/car_calibration.yaml, which the car's programs read "
            "instead of the shipped config/car_calibration.yaml."
        ),
    )
    parser.add_argument(
        "--out", metavar="PATH",
        help="calibration file to write (replaced atomically); default: ~/.config/jetracer_trt/car_calibration.yaml "
             "(with --fake: nothing is written unless --out is given)",
    )
    parser.add_argument(
        "--from", dest="from_path", metavar="PATH",
        help="calibration to start from (I2C bus and address, channels, current values); default: the --out file "
             "if it exists, else the calibration in use (the car's own file, else the shipped default)",
    )
    parser.add_argument(
        "--fake", action="store_true",
        help="no car: a fake servo board prints the pulses, so the flow can be tried anywhere",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, input_fn=input, output_fn=print, sleep=time.sleep) -> int:
    """Runs the wizard; 0 when a file was written, 1 when not, 130 after Ctrl-C, SIGTERM, SIGHUP (the terminal or
    SSH session went away) or SIGQUIT, each of which ends in neutral. Board problems (no I2C bus, no PCA9685
    answering, no ServoKit, a write the board did not take) are JetracerErrors: ``error: ...`` and exit status 2,
    after the wizard set neutral."""
    from ..actuators.base import terminate_as_interrupt
    from ..actuators.calibration import default_calibration_path, load_calibration, user_calibration_path
    from ..actuators.pca9685 import PCA9685Actuator, fake_servokit_factory
    from ..actuators.wizard import CalibrationWizard

    out = Path(args.out) if args.out else (None if args.fake else user_calibration_path())
    if out is not None:
        _check_writable(out)
    if args.from_path:
        start_from = Path(args.from_path)
    elif out is not None and out.is_file():
        start_from = out
    else:
        start_from = default_calibration_path()
    calibration = load_calibration(start_from)
    output_fn(f"Starting from {start_from}.")

    if args.fake:
        actuator = PCA9685Actuator(calibration, fake_servokit_factory(output_fn), sleep=sleep, i2c_dev_dir=None)
    else:
        actuator = PCA9685Actuator(calibration, sleep=sleep)
    wizard = CalibrationWizard(actuator, calibration, out, input_fn=input_fn, output_fn=output_fn)
    unchanged = f"{out} was not changed" if out is not None and out.exists() else "nothing was written"
    try:
        with terminate_as_interrupt():
            written = wizard.run()
    except KeyboardInterrupt:
        print(f"\ncalibration stopped: the car is in neutral and {unchanged}", file=sys.stderr)
        return 130
    except EOFError:
        print(f"\ncalibration stopped (end of input): the car is in neutral and {unchanged}", file=sys.stderr)
        return 1
    return 0 if written else 1


def _check_writable(path: Path) -> None:
    """Refuses before the wizard starts, not after it, when the file could not be written."""
    folder = path.parent.resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise JetracerError(f"cannot write the calibration to {path}: {folder} is not a writable folder")
