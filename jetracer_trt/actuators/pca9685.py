"""``pca9685``: the JetRacer's servo board (NVIDIA JetRacer, Waveshare JetRacer Pro): steering servo and ESC on a
PCA9685 16-channel PWM chip over I2C, driven through Adafruit's ServoKit.

The Adafruit libraries are imported in ``start()`` only, so everything else (the simulator, the tests, a desk
machine) runs without them.

How a pulse is written. The calibration is in microseconds, so each output is set by pulse width: the 16-bit
``duty_cycle`` of the PCA9685 channel under the ServoKit (``kit._pca.channels[ch]``) is computed from the pulse and
the PWM period, rounded to the nearest of the chip's 4096 steps per period (4.9 us at 50 Hz). The period is
computed from the chip's prescale register with the datasheet formula (7.3.5: period = 4096 * (prescale + 1) /
25 MHz), not taken from the library's ``frequency``, because adafruit-circuitpython-pca9685 before its PR #59 (2024)
set and reported the frequency off by one prescale step (0.8% at 50 Hz), and JetRacer images ship such versions.
The other route, ``kit.servo[ch].set_pulse_width_range(...)`` plus ``.fraction``, truncates twice (the range ends
to 16 bits, then the duty to 12 bits) and so sends up to one step (~5 us) less than asked; the duty route writes
the step nearest to the pulse. The chip's own oscillator is only good to a few percent, which is one reason the
calibration is measured on the car by ``jetracer-trt calibrate`` rather than taken from a data sheet.

On ``close()`` the outputs are left running at neutral (steering centred, ESC at its stop pulse): the PCA9685 keeps
sending the last pulses after the process ends, which keeps the ESC stopped and the wheels straight. Writing a
pulse of 0 (no pulse) is never done: a servo without pulses is not centred and an ESC without them is in failsafe.

Every write sets the throttle's output before the steering's, and each on its own: when the bus fails midway,
stopping the motor matters more than centring the wheels, and a failed steering write must not keep the throttle
from being written (a neutral that skipped the throttle would leave the car driving). A write the board did not take
(``OSError``, e.g. 121 "Remote I/O error") is an ``ActuatorError``, retried by the base class (see ``base``).
"""
from __future__ import annotations

import errno
import functools
import logging
import math
import os
import time
from typing import Any, Callable

from ..errors import JetracerError
from .base import NEUTRAL, Actuator, ActuatorError, Command
from .calibration import PULSE_LIMITS_US, CarCalibration

logger = logging.getLogger(__name__)

REFERENCE_CLOCK_HZ = 25_000_000  # the PCA9685's internal oscillator, nominal
STEPS = 4096  # 12-bit PWM: steps per period
# "Remote I/O error" (121, EREMOTEIO: nothing acknowledged the address), I/O error, no such device, time-out
_NO_ANSWER_ERRNOS = {121, errno.EIO, errno.ENXIO, errno.ETIMEDOUT}


class PCA9685Actuator(Actuator):
    """Steering and throttle on a PCA9685 through ServoKit, mapped by a ``CarCalibration``.

    ``servokit_factory`` replaces ``adafruit_servokit.ServoKit`` (tests and ``calibrate --fake`` pass a fake); it is
    called as ``factory(channels=16, address=..., frequency=..., i2c=...)``. ``sleep`` is the wait of the ESC
    arming hold and between retries. ``i2c_dev_dir`` is where ``i2c-<bus>`` must exist (None skips that probe: a
    fake board). ``retry`` goes to ``Actuator`` (``retry_attempts``, ``retry_window_s``, ``neutral_give_up_s``,
    ``clock``). ``calibration`` may be replaced while started (the wizard does); ``neutral()`` uses the current one.
    """

    kind = "pca9685"
    calibration_source = "given"

    def __init__(
        self,
        calibration: CarCalibration,
        servokit_factory: Callable[..., Any] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        i2c_dev_dir: str | os.PathLike | None = "/dev",
        **retry: Any,
    ) -> None:
        super().__init__(sleep=sleep, **retry)
        calibration.validate()
        self.calibration = calibration
        self._servokit_factory = servokit_factory
        self._i2c_dev_dir = i2c_dev_dir
        self._kit: Any = None
        self._channels: Any = None  # the PCA9685's channel sequence
        self.period_us = 1e6 / calibration.pwm_frequency_hz
        self.pulses_us: dict[int, float] = {}  # channel -> pulse width last written (after rounding to a step)

    @property
    def where(self) -> str:
        cal = self.calibration
        return f"address 0x{cal.i2c_address:02x} on I2C bus {cal.i2c_bus}"

    # -- start ---------------------------------------------------------------------------------------------------
    def _start(self) -> None:
        cal = self.calibration
        self._probe_bus()
        factory, i2c = self._servokit_factory, None
        if factory is None:
            factory = _import_servokit()
        try:
            if self._servokit_factory is None:
                i2c = _open_i2c_bus(cal.i2c_bus)
            kit = factory(channels=16, address=cal.i2c_address, frequency=cal.pwm_frequency_hz, i2c=i2c)
            pca = getattr(kit, "_pca", None)
            if pca is None or not hasattr(pca, "channels"):
                raise JetracerError(
                    "this adafruit_servokit has no PCA9685 object (kit._pca): install a release of "
                    "adafruit-circuitpython-servokit that has it (all 1.x releases do)"
                )
            self.period_us = _period_us(pca, cal.pwm_frequency_hz)
        except (OSError, ValueError, RuntimeError) as exc:
            raise self._board_error(exc) from None
        self._kit, self._channels = kit, pca.channels
        logger.info("PCA9685 found at %s; PWM period %.1f us", self.where, self.period_us)
        # neutral first, as hard as neutral() tries: a previous program may have left the board driving
        self._retried(lambda: self._write(NEUTRAL), self.neutral_give_up_s)
        if cal.esc_arming > 0:
            logger.info("holding neutral for %.1f s so the ESC arms", cal.esc_arming)
            self._sleep(cal.esc_arming)

    def _probe_bus(self) -> None:
        if self._i2c_dev_dir is None:
            return
        bus = self.calibration.i2c_bus
        dev = os.path.join(os.fspath(self._i2c_dev_dir), f"i2c-{bus}")
        if not os.path.exists(dev):
            raise JetracerError(
                f"I2C bus {bus} not found ({dev} missing): enable I2C / check the Jetson's pinmux / run on the car "
                f"(the buses this machine has: {_list_buses(self._i2c_dev_dir)}; set i2c_bus in the car calibration)"
            )
        if not os.access(dev, os.R_OK | os.W_OK):
            raise JetracerError(
                f"no permission to use {dev}: add your user to the i2c group "
                "(sudo usermod -aG i2c $USER, then log out and in again)"
            )

    def _board_error(self, exc: BaseException) -> JetracerError:
        if isinstance(exc, JetracerError):
            return exc
        cal = self.calibration
        no_answer = (
            f"no PCA9685 answered at address 0x{cal.i2c_address:02x} on I2C bus {cal.i2c_bus}: check the board's "
            f"power, SDA/SCL wiring, and the address (i2cdetect -y -r {cal.i2c_bus})"
        )
        if isinstance(exc, OSError) and exc.errno in _NO_ANSWER_ERRNOS:
            return JetracerError(no_answer)
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
            return JetracerError(
                f"no permission to use /dev/i2c-{cal.i2c_bus}: add your user to the i2c group "
                "(sudo usermod -aG i2c $USER, then log out and in again)"
            )
        if isinstance(exc, ValueError) and "No I2C device" in str(exc):  # Blinka's probe of the address
            return JetracerError(no_answer)
        if isinstance(exc, RuntimeError) and "pull up" in str(exc).lower():  # Blinka: SDA/SCL float
            return JetracerError(f"{no_answer} ({exc})")
        return JetracerError(f"cannot open the PCA9685 at {self.where}: {type(exc).__name__}: {exc}")

    # -- driving ---------------------------------------------------------------------------------------------------
    def _write(self, command: Command) -> None:
        cal = self.calibration
        failed = None
        for channel, pulse_us in ((cal.throttle.channel, cal.throttle_us(command.throttle)),
                                  (cal.steering.channel, cal.steering_us(command.steering))):
            try:
                self._set_pulse(channel, pulse_us)
            except ActuatorError as exc:
                failed = failed or exc
        if failed is not None:
            raise failed

    def pulse_to_duty(self, pulse_us: float) -> int:
        """Pulse width -> the 16-bit ``duty_cycle`` whose 12-bit step is the one nearest to the pulse.

        The library stores ``(duty + 1) >> 4``; ``steps << 4`` is stored as exactly ``steps``.
        """
        steps = round(pulse_us / self.period_us * STEPS)
        return max(0, min(STEPS - 1, steps)) << 4

    def write_pulse_us(self, channel: int, pulse_us: float) -> float:
        """Sets one output to a pulse width (clamped to 500-2500 us), retried like a driving write; returns the
        width actually sent. Raises ActuatorError when the board did not take it (the caller goes to neutral).

        Public for the calibration wizard, which moves outputs by raw pulse widths.
        """
        with self._lock:
            try:
                return self._retried(lambda: self._set_pulse(channel, pulse_us), self.retry_window_s,
                                     self.retry_attempts)
            except ActuatorError:
                self.error_counts["write_errors"] += 1
                raise

    def _set_pulse(self, channel: int, pulse_us: float) -> float:
        """One try of ``write_pulse_us``."""
        if self._channels is None:
            raise RuntimeError("PCA9685Actuator.write_pulse_us() before start()")
        pulse_us = max(PULSE_LIMITS_US[0], min(PULSE_LIMITS_US[1], float(pulse_us)))
        duty = self.pulse_to_duty(pulse_us)
        try:
            self._channels[channel].duty_cycle = duty
        except OSError as exc:
            raise ActuatorError(
                f"lost the PCA9685 at {self.where} while setting channel {channel}{self._output_name(channel)} "
                f"({exc.strerror or exc}): check the board's power and SDA/SCL wiring"
            ) from None
        sent = (duty >> 4) * self.period_us / STEPS
        self.pulses_us[channel] = sent
        return sent

    def _output_name(self, channel: int) -> str:
        names = {self.calibration.throttle.channel: " (throttle)", self.calibration.steering.channel: " (steering)"}
        return names.get(channel, "")

    def _release(self) -> None:
        # the outputs keep their neutral pulses (see the module docstring); only the Python objects go
        self._kit = None
        self._channels = None


def _period_us(pca: Any, requested_hz: float) -> float:
    """The PWM period from the prescale register (datasheet formula), else from the library's frequency."""
    try:
        prescale = int(pca.prescale_reg)
        clock = float(getattr(pca, "reference_clock_speed", REFERENCE_CLOCK_HZ))
        if prescale >= 3:
            return STEPS * (prescale + 1) / clock * 1e6
    except (AttributeError, TypeError):
        pass
    try:
        return 1e6 / float(pca.frequency)
    except (AttributeError, TypeError, ZeroDivisionError):
        return 1e6 / requested_hz


def _import_servokit() -> Callable[..., Any]:
    try:
        from adafruit_servokit import ServoKit
    except ImportError as exc:
        raise JetracerError(
            "the pca9685 actuator needs Adafruit's ServoKit library on the car: "
            f"pip install adafruit-circuitpython-servokit ({exc})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Blinka raises NotImplementedError/RuntimeError on unknown boards
        raise JetracerError(
            f"adafruit_servokit cannot start on this machine ({type(exc).__name__}: {exc}): run on the Jetson, "
            "with Adafruit Blinka and Jetson.GPIO installed"
        ) from None
    return ServoKit


def _open_i2c_bus(bus: int) -> Any:
    """The I2C bus by number (adafruit-extended-bus); without that package, Blinka's default bus for bus 1."""
    try:
        from adafruit_extended_bus import ExtendedI2C
    except ImportError:
        if bus != 1:
            raise JetracerError(
                f"i2c_bus {bus} needs the adafruit-extended-bus package to open /dev/i2c-{bus} by number: "
                "pip install adafruit-extended-bus"
            ) from None
        logger.info("adafruit-extended-bus not installed: using Blinka's default I2C bus (board.I2C()), which is "
                    "/dev/i2c-1 on a Jetson Nano")
        return None
    return ExtendedI2C(bus)


def _list_buses(dev_dir: str | os.PathLike) -> str:
    try:
        names = sorted(n for n in os.listdir(dev_dir) if n.startswith("i2c-"))
    except OSError:
        names = []
    return ", ".join(f"{n[4:]}" for n in names) or "none"


class FakeServoKit:
    """A stand-in for ``adafruit_servokit.ServoKit`` with the parts this module uses (``_pca.channels[i].duty_cycle``,
    ``_pca.prescale_reg``, ``_pca.frequency``), behaving like adafruit-circuitpython-pca9685 (12-bit steps,
    prescale = round(25 MHz / 4096 / f) - 1). ``on_pulse(channel, pulse_us)`` is called on every write, e.g. to
    print pulses in ``jetracer-trt calibrate --fake``. ``fail_writes`` makes writes fail like a loose cable does.
    """

    def __init__(self, *, channels: int = 16, i2c: Any = None, address: int = 0x40,
                 reference_clock_speed: int = REFERENCE_CLOCK_HZ, frequency: float = 50,
                 on_pulse: Callable[[int, float], None] | None = None) -> None:
        self.address = address
        self._pca = _FakePCA9685(reference_clock_speed, on_pulse)
        self._pca.frequency = frequency

    def fail_writes(self, channel: int | None = None, times: float = math.inf) -> None:
        """The next ``times`` writes to ``channel`` (None: to any channel) raise ``OSError(121, 'Remote I/O
        error')``, what Linux's I2C driver raises when the board does not acknowledge; ``times=0`` heals it."""
        self._pca.failures[channel] = times


def fake_servokit_factory(output_fn: Callable[[str], None] = print) -> Callable[..., FakeServoKit]:
    """A ``servokit_factory`` of fake boards that print each output's pulse when it changes (``--fake``)."""
    last: dict[int, int] = {}

    def on_pulse(channel: int, pulse_us: float) -> None:
        if last.get(channel) != round(pulse_us):
            last[channel] = round(pulse_us)
            output_fn(f"    [fake board] channel {channel}: {pulse_us:.0f} us")

    return functools.partial(FakeServoKit, on_pulse=on_pulse)


class _FakePCA9685:
    def __init__(self, reference_clock_speed: int, on_pulse: Callable[[int, float], None] | None) -> None:
        self.reference_clock_speed = reference_clock_speed
        self.prescale_reg = 30  # the chip's power-on value (200 Hz)
        self.on_pulse = on_pulse
        self.failures: dict[int | None, float] = {}  # channel (None: any) -> how many more writes fail
        self.channels = [_FakeChannel(self, i) for i in range(16)]

    def take_failure(self, channel: int) -> bool:
        for key in (channel, None):
            if self.failures.get(key, 0) > 0:
                self.failures[key] -= 1
                return True
        return False

    @property
    def frequency(self) -> float:
        return self.reference_clock_speed / STEPS / (self.prescale_reg + 1)

    @frequency.setter
    def frequency(self, freq: float) -> None:
        self.prescale_reg = int(self.reference_clock_speed / STEPS / freq + 0.5) - 1


class _FakeChannel:
    def __init__(self, pca: _FakePCA9685, index: int) -> None:
        self._pca, self._index, self.steps = pca, index, 0

    @property
    def duty_cycle(self) -> int:
        return self.steps << 4

    @duty_cycle.setter
    def duty_cycle(self, value: int) -> None:
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"Out of range: value {value} not 0 <= value <= 65,535")
        if self._pca.take_failure(self._index):
            raise OSError(121, "Remote I/O error")
        self.steps = STEPS if value == 0xFFFF else (value + 1) >> 4
        if self._pca.on_pulse is not None:
            self._pca.on_pulse(self._index, self.pulse_us)

    @property
    def pulse_us(self) -> float:
        return self.steps / self._pca.frequency / STEPS * 1e6
