"""Per-car calibration: which PCA9685 output drives what, and which pulse widths mean left, centre, right, stop.

One YAML file per car (the default of a stock JetRacer is ``config/car_calibration.yaml``; ``jetracer-trt calibrate``
writes the car's own). Commands are floats in [-1, 1] (steering: -1 full left, +1 full right; throttle: +1 full
forward); ``to_pulse_us`` turns one into a servo pulse width in microseconds, piecewise linear through the centre so
that a servo whose centre is not midway between its ends still goes straight at 0.

Where the file is looked up when no path is given: the car's own file written by the wizard,
``$XDG_CONFIG_HOME/jetracer_trt/car_calibration.yaml`` (``~/.config/...``), when it exists, else the shipped default.
The car's file lives outside the package on purpose: a reinstall, a colcon rebuild or a ``git pull`` must not
replace a car's calibration with the stock one.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import yaml

from ..config import share_dir
from ..errors import JetracerError
from ..fileio import atomic_write_bytes

FILE_NAME = "car_calibration.yaml"
PULSE_LIMITS_US = (500.0, 2500.0)  # what any hobby servo or ESC accepts; beyond it a servo can strain its end stops
CHANNELS = range(16)  # PCA9685 outputs
FREQUENCY_LIMITS_HZ = (40.0, 200.0)  # analog servos and car ESCs want 50-60 Hz; some digital servos take more
ESC_ARMING_LIMIT_S = 10.0
# the key holding a channel's middle pulse: a servo has a centre, an ESC a neutral (stop)
CENTER_KEYS = {"steering": "center_us", "throttle": "neutral_us"}


@dataclasses.dataclass
class ServoChannel:
    """One PCA9685 output and its pulse widths (microseconds).

    ``center_us`` is the pulse for a command of 0 (the throttle's ``neutral_us`` in the YAML file); ``min_us`` and
    ``max_us`` are the two ends. ``direction`` +1 maps +1 to ``max_us``, -1 maps +1 to ``min_us``.
    """

    channel: int
    min_us: float
    center_us: float
    max_us: float
    direction: int = 1

    @property
    def neutral_us(self) -> float:
        """The throttle's name for ``center_us``."""
        return self.center_us


@dataclasses.dataclass
class CarCalibration:
    """Everything that differs between two JetRacers: board address, channels, pulse widths, directions, ESC."""

    steering: ServoChannel
    throttle: ServoChannel
    i2c_bus: int = 1
    i2c_address: int = 0x40
    pwm_frequency_hz: float = 50.0
    throttle_neutral_offset: float = 0.0  # us added to throttle.neutral_us: the pulse at which this ESC really stops
    throttle_min_moving: float = 0.0  # smallest forward throttle that turns the wheels (information; 0 = not measured)
    esc_arming: float = 2.0  # seconds of neutral held at start so the ESC arms

    def steering_us(self, value: float) -> float:
        """Steering command in [-1, 1] -> pulse width (us)."""
        return to_pulse_us(value, self.steering)

    def throttle_us(self, value: float) -> float:
        """Throttle command in [-1, 1] -> pulse width (us), through the trimmed neutral."""
        return to_pulse_us(value, self.throttle, self.throttle_neutral_offset)

    @property
    def throttle_stop_us(self) -> float:
        """The pulse sent for throttle 0: ``throttle.neutral_us + throttle_neutral_offset``."""
        return self.throttle.center_us + self.throttle_neutral_offset

    def copy(self) -> "CarCalibration":
        return dataclasses.replace(
            self, steering=dataclasses.replace(self.steering), throttle=dataclasses.replace(self.throttle)
        )

    def validate(self) -> None:
        """Raises JetracerError naming the first bad value and the rule it breaks."""
        _check_int("i2c_bus", self.i2c_bus, 0, 255)
        _check_int("i2c_address", self.i2c_address, 0x03, 0x77, hint="a 7-bit I2C address, 0x40 on a JetRacer")
        _check_number("pwm_frequency_hz", self.pwm_frequency_hz, *FREQUENCY_LIMITS_HZ)
        for name in ("steering", "throttle"):
            ch = getattr(self, name)
            center_key = CENTER_KEYS[name]
            _check_int(f"{name}.channel", ch.channel, CHANNELS.start, CHANNELS.stop - 1, hint="a PCA9685 output")
            for key, value in (("min_us", ch.min_us), (center_key, ch.center_us), ("max_us", ch.max_us)):
                _check_number(f"{name}.{key}", value, *PULSE_LIMITS_US, unit=" us")
            if not ch.min_us < ch.center_us < ch.max_us:
                raise JetracerError(
                    f"{name}: pulse widths must satisfy min_us < {center_key} < max_us, got "
                    f"{_fmt(ch.min_us)} < {_fmt(ch.center_us)} < {_fmt(ch.max_us)}"
                )
            if isinstance(ch.direction, bool) or ch.direction not in (1, -1):
                raise JetracerError(f"{name}.direction must be 1 or -1, got {ch.direction!r}")
        if self.steering.channel == self.throttle.channel:
            raise JetracerError(
                f"steering.channel and throttle.channel are both {self.steering.channel}: they must differ"
            )
        _check_number("throttle_neutral_offset", self.throttle_neutral_offset, -500.0, 500.0, unit=" us")
        if not self.throttle.min_us < self.throttle_stop_us < self.throttle.max_us:
            raise JetracerError(
                f"throttle.neutral_us + throttle_neutral_offset = {_fmt(self.throttle_stop_us)} us must lie between "
                f"throttle.min_us {_fmt(self.throttle.min_us)} and throttle.max_us {_fmt(self.throttle.max_us)}"
            )
        _check_number("throttle_min_moving", self.throttle_min_moving, 0.0, 1.0)
        _check_number("esc_arming", self.esc_arming, 0.0, ESC_ARMING_LIMIT_S, unit=" s")


def to_pulse_us(value: float, channel_cal: ServoChannel, center_offset_us: float = 0.0) -> float:
    """Command in [-1, 1] -> pulse width in microseconds.

    Clamped to [-1, 1]; a non-finite value gives the centre. The direction is applied first, then the map is
    piecewise linear: 0 -> centre (+ ``center_offset_us``), +1 -> ``max_us``, -1 -> ``min_us``, so the two halves
    may have different lengths.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        v = 0.0
    v = max(-1.0, min(1.0, v)) * channel_cal.direction
    center = channel_cal.center_us + center_offset_us
    if v >= 0.0:
        return center + v * (channel_cal.max_us - center)
    return center + v * (center - channel_cal.min_us)


def user_calibration_path() -> Path:
    """Where ``jetracer-trt calibrate`` writes this car's file: ``$XDG_CONFIG_HOME/jetracer_trt/``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "jetracer_trt" / FILE_NAME


def shipped_calibration_path() -> Path:
    """The stock JetRacer's calibration, ``config/car_calibration.yaml``."""
    return share_dir() / "config" / FILE_NAME


def default_calibration_path() -> Path:
    """The car's own file when it has one, else the shipped stock default."""
    user = user_calibration_path()
    return user if user.is_file() else shipped_calibration_path()


def is_example_calibration(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the shipped stock file (through links too): a car that was never calibrated."""
    return Path(path).resolve() == shipped_calibration_path().resolve()


def load_calibration(path: str | os.PathLike | None = None) -> CarCalibration:
    """Reads and validates a calibration file (default: ``default_calibration_path()``).

    Every problem is a JetracerError that names the file, the key and the rule. The file is read afresh on every
    call (no cache): the wizard rewrites it.
    """
    path = Path(path) if path is not None else default_calibration_path()
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise JetracerError(
            f"car calibration not found: {path} (run `jetracer-trt calibrate` to write one)"
        ) from None
    except OSError as exc:
        raise JetracerError(f"cannot read car calibration {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise JetracerError(f"car calibration {path} is not valid YAML: {exc}") from None
    try:
        return calibration_from_dict(data)
    except JetracerError as exc:
        raise JetracerError(f"car calibration {path}: {exc}") from None


_TOP_REQUIRED = ("i2c_bus", "i2c_address", "steering", "throttle")
_TOP_OPTIONAL = {
    "pwm_frequency_hz": 50.0, "throttle_neutral_offset": 0.0, "throttle_min_moving": 0.0, "esc_arming": 2.0,
}
_CHANNEL_KEYS = ("channel", "min_us", "max_us", "direction")


def calibration_from_dict(data: Any) -> CarCalibration:
    """A validated CarCalibration from the YAML file's mapping; unknown or missing keys are errors."""
    if not isinstance(data, dict):
        raise JetracerError("must hold a mapping (key: value lines) at the top level")
    _check_keys("", data, required=_TOP_REQUIRED, optional=tuple(_TOP_OPTIONAL))
    channels = {}
    for name in ("steering", "throttle"):
        section = data[name]
        if not isinstance(section, dict):
            raise JetracerError(f"{name} must be a mapping with keys {', '.join(_section_keys(name))}")
        _check_keys(f"{name}.", section, required=_section_keys(name), optional=())
        channels[name] = ServoChannel(
            channel=section["channel"],
            min_us=section["min_us"],
            center_us=section[CENTER_KEYS[name]],
            max_us=section["max_us"],
            direction=section["direction"],
        )
    cal = CarCalibration(
        steering=channels["steering"],
        throttle=channels["throttle"],
        i2c_bus=data["i2c_bus"],
        i2c_address=data["i2c_address"],
        **{key: data.get(key, default) for key, default in _TOP_OPTIONAL.items()},
    )
    cal.validate()
    # numbers as floats from here on (YAML gives ints for "1500"); integers stay integers
    for ch in (cal.steering, cal.throttle):
        ch.min_us, ch.center_us, ch.max_us = float(ch.min_us), float(ch.center_us), float(ch.max_us)
        ch.direction = int(ch.direction)
    for key in _TOP_OPTIONAL:
        setattr(cal, key, float(getattr(cal, key)))
    return cal


def calibration_to_dict(cal: CarCalibration) -> dict[str, Any]:
    """The YAML file's mapping (key names as in the file)."""
    out: dict[str, Any] = {"i2c_bus": cal.i2c_bus, "i2c_address": cal.i2c_address,
                           "pwm_frequency_hz": cal.pwm_frequency_hz}
    for name in ("steering", "throttle"):
        ch = getattr(cal, name)
        out[name] = {"channel": ch.channel, "min_us": ch.min_us, CENTER_KEYS[name]: ch.center_us,
                     "max_us": ch.max_us, "direction": ch.direction}
    for key in ("throttle_neutral_offset", "throttle_min_moving", "esc_arming"):
        out[key] = getattr(cal, key)
    return out


def format_calibration(cal: CarCalibration, header: str | None = None) -> str:
    """The calibration as YAML text with every key commented (meaning and unit)."""
    if header is None:
        header = (
            f"Calibration of one JetRacer, written by `jetracer-trt calibrate` on {time.strftime('%Y-%m-%d %H:%M')}.\n"
            "Re-run the wizard rather than editing by hand; the rules are checked at start-up."
        )
    s, t = cal.steering, cal.throttle
    rows: list[tuple[str, str]] = [
        (f"i2c_bus: {cal.i2c_bus}", "I2C bus of the PCA9685 servo board: /dev/i2c-<bus>"),
        (f"i2c_address: 0x{cal.i2c_address:02x}",
         "7-bit address (0x40 unless A0-A5 are bridged); `i2cdetect -y -r <bus>` shows it"),
        (f"pwm_frequency_hz: {_fmt(cal.pwm_frequency_hz)}",
         "pulses per second on every output, Hz (hobby servos and car ESCs expect 50-60)"),
        ("", ""),
        ("steering:", "the steering servo"),
        (f"  channel: {s.channel}", "PCA9685 output (0-15) the servo is plugged into"),
        (f"  min_us: {_fmt(s.min_us)}", "pulse at one end of the steering travel, us"),
        (f"  center_us: {_fmt(s.center_us)}", "pulse that points the front wheels straight ahead, us"),
        (f"  max_us: {_fmt(s.max_us)}", "pulse at the other end of the travel, us"),
        (f"  direction: {s.direction}", "+1: steering +1 (full right) = max_us; -1: full right = min_us"),
        ("", ""),
        ("throttle:", "the ESC (electronic speed controller) of the drive motor"),
        (f"  channel: {t.channel}", "PCA9685 output (0-15) the ESC's signal lead is plugged into"),
        (f"  min_us: {_fmt(t.min_us)}", "pulse at one end of the ESC's range (full speed one way), us"),
        (f"  neutral_us: {_fmt(t.neutral_us)}", "the ESC's nominal neutral (stop), us; see throttle_neutral_offset"),
        (f"  max_us: {_fmt(t.max_us)}", "pulse at the other end of the range (full speed the other way), us"),
        (f"  direction: {t.direction}", "+1: throttle +1 (full forward) = max_us; -1: full forward = min_us"),
        ("", ""),
        (f"throttle_neutral_offset: {_fmt(cal.throttle_neutral_offset)}",
         "us added to neutral_us: the pulse at which this ESC really stops (no creep)"),
        (f"throttle_min_moving: {round(float(cal.throttle_min_moving), 3)}",
         "smallest forward throttle (0-1) that turns the wheels; 0 = not measured (information)"),
        (f"esc_arming: {round(float(cal.esc_arming), 2)}",
         "seconds of neutral sent at start-up so the ESC arms before any throttle"),
    ]
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += [
        "# Commands are in [-1, 1]: steering -1 = full left, +1 = full right; throttle +1 = full forward.",
        "# Pulse widths are in microseconds (us), 500-2500, with min_us < centre < max_us.",
        "",
    ]
    lines += [f"{code:<28} # {comment}" if comment else code for code, comment in rows]
    return "\n".join(lines) + "\n"


def save_calibration(cal: CarCalibration, path: str | os.PathLike) -> Path:
    """Validates and writes ``cal`` to ``path`` atomically (the old file stays whole until the new one is complete).

    Creates the parent folder (``~/.config/jetracer_trt``) when missing. Returns the path written.
    """
    cal.validate()
    path = Path(path)
    text = format_calibration(cal)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, text.encode("utf-8"), fsync=True)
    except OSError as exc:
        raise JetracerError(f"cannot write car calibration {path}: {exc.strerror or exc}") from None
    return path


def _section_keys(name: str) -> tuple[str, ...]:
    return ("channel", "min_us", CENTER_KEYS[name], "max_us", "direction")


def _check_keys(prefix: str, data: dict, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    known = required + optional
    for key in data:
        if key not in known:
            raise JetracerError(f"unknown key {prefix}{key} (known keys: {', '.join(prefix + k for k in known)})")
    for key in required:
        if key not in data:
            raise JetracerError(f"missing key {prefix}{key}")


def _check_int(name: str, value: Any, low: int, high: int, hint: str = "") -> None:
    hint = f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, int):
        raise JetracerError(f"{name} must be an integer{hint}, got {value!r}")
    if not low <= value <= high:
        raise JetracerError(f"{name} must be in {low}..{high}{hint}, got {value}")


def _check_number(name: str, value: Any, low: float, high: float, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise JetracerError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise JetracerError(f"{name} must be in {_fmt(low)}..{_fmt(high)}{unit}, got {_fmt(value)}")


def _fmt(value: float) -> str:
    """A number as the file shows it: 1500.0 -> '1500', 12.25 -> '12.25'."""
    value = float(value)
    if value == int(value):
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")
