"""The calibration wizard behind ``jetracer-trt calibrate``: walks a person through a car with its wheels up.

Steps: steering direction (which way a shorter pulse turns), centre, full left and full right (nudged by hand and
recorded in microseconds); the ESC armed on neutral; the throttle's real neutral (no creep); the smallest throttle
that turns the wheels and whether that is forward. Nothing is written until the person confirms at the end, and
then atomically; Ctrl-C or end of input at any moment ends in neutral with the old file untouched (``run`` closes
the actuator in ``finally`` and re-raises). So do SIGTERM, SIGHUP (the terminal or the SSH session went away) and
SIGQUIT, which ``jetracer-trt calibrate`` turns into KeyboardInterrupt (``base.terminate_as_interrupt``), and a
write the board did not take (``ActuatorError``).

Input and output are injected (``input_fn``, ``output_fn``), and so is the actuator, so the whole flow runs in tests
with a scripted list of answers and a fake board.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from .calibration import PULSE_LIMITS_US, CarCalibration, format_calibration, save_calibration
from .pca9685 import PCA9685Actuator

STEER_STEP_US = 10.0  # per l / r
STEER_BIG_STEP_US = 50.0  # per L / R
STEER_PROBE_US = 150.0  # how far from centre the direction check moves the servo
NEUTRAL_STEP_US = 5.0  # per + / - while finding the ESC's stop
THROTTLE_STEP = 0.01  # per + / - while finding the smallest throttle that moves
NEUTRAL_SEARCH_US = 150.0  # the ESC's stop is looked for within neutral_us +- this
THROTTLE_SEARCH_LIMIT = 0.5  # the wheels are in the air: no need to go faster to see them turn
STEPS = 5


class CalibrationWizard:
    """One calibration session. ``run()`` returns the path written, or None when nothing was written."""

    def __init__(
        self,
        actuator: PCA9685Actuator,
        calibration: CarCalibration,
        out_path: str | Path | None,
        *,
        input_fn: Callable[[str], str] = input,
        output_fn: Callable[[str], None] = print,
    ) -> None:
        self.cal = calibration.copy()  # the working copy; the actuator's neutral follows it as values are found
        self.actuator = actuator
        self.actuator.calibration = self.cal
        self.out_path = Path(out_path) if out_path is not None else None
        self._input = input_fn
        self._output = output_fn

    # -- the flow ----------------------------------------------------------------------------------------------
    def run(self) -> Path | None:
        try:
            self.actuator.start()  # neutral first (a previous program may have left the board driving), ESC arming
            self._intro()
            if not self._yes_no("Are all four wheels off the ground? [y/n] "):
                self._say("Put the car on a stand (a box under the chassis) and start again; nothing was changed.")
                return None
            self._steering_direction()
            self._steering_center()
            self._steering_ends()
            self._arm_esc()
            self._throttle_neutral()
            self._throttle_min_moving()
            return self._confirm_and_write()
        finally:
            self.actuator.close()  # neutral, with the values found so far

    def _intro(self) -> None:
        cal = self.cal
        self._say(
            "JetRacer calibration: steering servo on channel {s}, ESC (speed controller) on channel {t}, PCA9685 at "
            "address 0x{a:02x} on I2C bus {b}.".format(s=cal.steering.channel, t=cal.throttle.channel,
                                                      a=cal.i2c_address, b=cal.i2c_bus)
        )
        self._say("!! Put the car on a stand with ALL FOUR WHEELS OFF THE GROUND: the wheels will turn and spin.")
        self._say("   Ctrl-C (or Ctrl-D) at any moment stops: the car goes to neutral and no file is written.")

    def _steering_direction(self) -> None:
        s = self.cal.steering
        while True:
            probe = _clamp_pulse(s.center_us - STEER_PROBE_US)
            self._heading(1, "steering direction")
            self._say(f"  The steering servo (channel {s.channel}) now gets a pulse a little shorter than centre: "
                      f"{probe:.0f} us.")
            self.actuator.write_pulse_us(s.channel, probe)
            answer = self._choice("Did the front wheels turn LEFT? [y = left / n = right / 0 = they did not move] ",
                                  ("y", "n", "0"))
            self.actuator.write_pulse_us(s.channel, s.center_us)
            if answer != "0":
                # direction +1 means steering +1 (right) = the longer pulse, i.e. a shorter pulse turns left
                s.direction = 1 if answer == "y" else -1
                return
            self._say("  The servo did not move. Check: is the ESC switched on (on a JetRacer it powers the servo)? "
                      "Is the servo's plug on the channel below, the signal wire (white or yellow) the right way?")
            self._ask_channel("steering", s)

    def _steering_center(self) -> None:
        s = self.cal.steering
        self._heading(2, "steering centre")
        self._say("  Nudge until the front wheels point straight ahead.")
        self._say(self._steer_keys_help())
        s.center_us = self._nudge_steering(s.center_us)

    def _steering_ends(self) -> None:
        s = self.cal.steering
        self._heading(3, "steering ends")
        ends = {}
        for side, sign in (("LEFT", -1), ("RIGHT", 1)):
            self._say(f"  Nudge to FULL {side}: as far as the wheels go, then back off until the servo stops "
                      "buzzing (a straining servo burns out).")
            start = s.center_us + sign * s.direction * (abs(_current_end(s, sign) - s.center_us) or 300.0)
            while True:
                pulse = self._nudge_steering(_clamp_pulse(round(start)))
                if (pulse - s.center_us) * sign * s.direction > 0:
                    break
                self._say(f"  {pulse:.0f} us is not {side.lower()} of the centre ({s.center_us:.0f} us): "
                          f"nudge further {side.lower()}.")
                start = pulse
            ends[side] = pulse
        s.min_us, s.max_us = sorted((ends["LEFT"], ends["RIGHT"]))
        self.actuator.write_pulse_us(s.channel, s.center_us)
        self._say(f"  Steering: full left {ends['LEFT']:.0f} us, centre {s.center_us:.0f} us, "
                  f"full right {ends['RIGHT']:.0f} us.")

    def _arm_esc(self) -> None:
        t = self.cal.throttle
        self._heading(4, "ESC and neutral")
        stop = self.cal.throttle_stop_us
        self.actuator.write_pulse_us(t.channel, stop)
        self._say(f"  The ESC (channel {t.channel}) now gets neutral: {stop:.0f} us. Switch the ESC on if it is off "
                  "and wait until it has armed (beeps, LED). An ESC that keeps beeping or blinking sees no valid "
                  "signal: check its channel and the plug's direction.")
        self._input("Press Enter when the ESC has armed. ")
        while True:
            answer = self._input(f"Seconds of neutral to send at start-up so the ESC arms [{self.cal.esc_arming:g}]: "
                                 ).strip()
            if not answer:
                break
            value = _number(answer)
            if value is not None and 0.0 <= value <= 10.0:
                self.cal.esc_arming = value
                break
            self._say("  A number of seconds from 0 to 10, please.")

    def _throttle_neutral(self) -> None:
        t = self.cal.throttle
        self._say("  Watch the drive wheels: they must stand still. If they creep, nudge until they stop (best: the "
                  "middle of the range where they stand still).")
        self._say(f"  + / -: {NEUTRAL_STEP_US:g} us longer / shorter (+++ = three times); a number: that pulse in "
                  "us; Enter: the wheels stand still")
        steps = {"+": NEUTRAL_STEP_US, "-": -NEUTRAL_STEP_US}
        low = max(t.min_us + 1.0, t.neutral_us - NEUTRAL_SEARCH_US)
        high = min(t.max_us - 1.0, t.neutral_us + NEUTRAL_SEARCH_US)
        stop = self._nudge(self.cal.throttle_stop_us, steps, (low, high), lambda v: f"neutral {v:.0f} us",
                           lambda v: self.actuator.write_pulse_us(t.channel, v))
        self.cal.throttle_neutral_offset = stop - t.neutral_us

    def _throttle_min_moving(self) -> None:
        t = self.cal.throttle
        self._heading(5, "smallest throttle that moves, and which way is forward")
        self._say("  Raise the throttle until the wheels turn slowly but steadily, then press Enter.")
        self._say(f"  + / -: {THROTTLE_STEP:g} more / less (+++ = three times); a number from 0 to "
                  f"{THROTTLE_SEARCH_LIMIT:g}: that throttle; x: try the other direction (if nothing moves by about "
                  "0.3, your ESC may have reverse off); Enter: done (at 0: skip this step)")
        while True:
            value = self._nudge(0.0, {"+": THROTTLE_STEP, "-": -THROTTLE_STEP}, (0.0, THROTTLE_SEARCH_LIMIT),
                                lambda v: f"throttle {v:.2f} ({self.cal.throttle_us(v):.0f} us)",
                                lambda v: self.actuator.apply(0.0, v), extra=("x",))
            if value == "x":
                self._flip_throttle()
                continue
            if value <= 0.0:
                self.actuator.neutral()
                self._say(f"  Skipped: throttle direction stays {t.direction:+d}, throttle_min_moving "
                          f"{self.cal.throttle_min_moving:g}.")
                return
            forward = self._yes_no("Are the wheels turning FORWARD (the way the car drives forward)? [y/n] ")
            self.actuator.neutral()
            if forward:
                self.cal.throttle_min_moving = round(value, 3)
                self._say(f"  Smallest throttle that moves: {value:.2f}; forward is direction {t.direction:+d}.")
                return
            self._flip_throttle()

    def _flip_throttle(self) -> None:
        t = self.cal.throttle
        self.actuator.neutral()
        t.direction = -t.direction
        self._say(f"  Throttle direction is now {t.direction:+d}. Wait until the wheels stop, then raise the throttle "
                  "again from 0.")

    def _confirm_and_write(self) -> Path | None:
        self.actuator.neutral()
        self._say("")
        self._say("The new calibration:")
        for line in format_calibration(self.cal, header="").splitlines():
            if line and not line.startswith("#"):
                self._say(f"  {line}")
        try:
            self.cal.validate()
        except Exception as exc:  # noqa: BLE001 - shown to the person, nothing written
            self._say(f"This calibration is not usable ({exc}); nothing written. Run the wizard again.")
            return None
        if self.out_path is None:
            self._say("(--fake: nothing written; add --out PATH to write the file.)")
            return None
        if not self._yes_no(f"Write it to {self.out_path}? [y/n] "):
            self._say("Nothing written.")
            return None
        path = save_calibration(self.cal, self.out_path)
        self._say(f"Wrote {path}.")
        return path

    # -- input helpers -----------------------------------------------------------------------------------------
    def _steer_keys_help(self) -> str:
        return (f"  l / r: {STEER_STEP_US:g} us more left / right;  L / R: {STEER_BIG_STEP_US:g} us  (lll = three "
                "times);  a number: that pulse in us;  Enter: done")

    def _nudge_steering(self, start: float) -> float:
        s = self.cal.steering
        # left is a negative command: the pulse moves by -direction per step left
        steps = {"l": -s.direction * STEER_STEP_US, "r": s.direction * STEER_STEP_US,
                 "L": -s.direction * STEER_BIG_STEP_US, "R": s.direction * STEER_BIG_STEP_US}
        return self._nudge(start, steps, PULSE_LIMITS_US, lambda v: f"steering {v:.0f} us",
                           lambda v: self.actuator.write_pulse_us(s.channel, v))

    def _nudge(self, value, steps, limits, show, drive, extra=()):
        """Drives ``value``, then reads answers until Enter (returns the value). Each character of an answer made
        only of step keys is one step (the sum is kept within ``limits``); a number within ``limits`` sets the
        value, one outside is refused (a typo must not slam a servo to its end); a word in ``extra`` is returned."""
        low, high = limits

        def clamp(v: float) -> float:
            return round(max(low, min(high, v)), 6)

        value = clamp(value)
        drive(value)
        while True:
            answer = self._input(f"  {show(value)} > ").strip()
            if not answer:
                return value
            if answer in extra:
                return answer
            number = _number(answer)
            if all(ch in steps for ch in answer):
                value = clamp(value + sum(steps[ch] for ch in answer))
            elif number is not None and low <= number <= high:
                value = number
            elif number is not None:
                self._say(f"  {answer} is outside {low:g}..{high:g}; nothing changed.")
                continue
            else:
                self._say(f"  ? keys: {' '.join(sorted(set(steps) | set(extra)))}, a number, or Enter")
                continue
            drive(value)

    def _ask_channel(self, name: str, ch) -> None:
        other = self.cal.throttle if name == "steering" else self.cal.steering
        while True:
            answer = self._input(f"Channel the {name} is plugged into [{ch.channel}]: ").strip()
            if not answer:
                return
            if answer.isdigit() and 0 <= int(answer) <= 15 and int(answer) != other.channel:
                ch.channel = int(answer)
                return
            self._say(f"  A channel from 0 to 15 other than {other.channel}, please.")

    def _yes_no(self, prompt: str) -> bool:
        return self._choice(prompt, ("y", "n")) == "y"

    def _choice(self, prompt: str, choices: tuple[str, ...]) -> str:
        while True:
            answer = self._input(prompt).strip().lower()
            if answer in ("yes", "no"):
                answer = answer[0]
            if answer in choices:
                return answer
            self._say(f"  Please answer {' or '.join(choices)}.")

    def _heading(self, number: int, title: str) -> None:
        self._say("")
        self._say(f"Step {number} of {STEPS}: {title}")

    def _say(self, text: str) -> None:
        self._output(text)


def _current_end(s, sign: int) -> float:
    """The pulse the current calibration sends for steering ``sign`` (-1 full left, +1 full right)."""
    return s.max_us if sign * s.direction > 0 else s.min_us


def _clamp_pulse(value: float) -> float:
    return max(PULSE_LIMITS_US[0], min(PULSE_LIMITS_US[1], float(value)))


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
