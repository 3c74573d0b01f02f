"""``jetracer-trt calibrate``: the wizard driven by scripted answers on a fake board; what it writes, and that an
abort (end of input, Ctrl-C) at any moment leaves the car in neutral and the old file untouched."""
import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from jetracer_trt.actuators import calibration as calmod
from jetracer_trt.actuators.calibration import load_calibration, save_calibration
from jetracer_trt.actuators.pca9685 import FakeServoKit, PCA9685Actuator
from jetracer_trt.actuators.wizard import CalibrationWizard
from jetracer_trt.cli import calibrate
from jetracer_trt.errors import JetracerError

SHIPPED = calmod.shipped_calibration_path()

# Starting from the stock file (steering direction -1, centre 1500 us, ends 1012.5 / 1987.5; throttle inverted):
FULL_SCRIPT = [
    "y",                # wheels are off the ground
    "y",                # a shorter pulse turned the wheels LEFT -> steering direction +1 (flipped)
    "r", "rr", "",      # centre: 30 us more right -> 1530
    "1100", "",         # full left typed as a pulse (the nudge starts at 1012: the old end's distance from centre)
    "R", "",            # full right: starts at 1988, 50 us more -> 2038
    "",                 # the ESC has armed
    "3",                # arming hold 3 s
    "+", "+", "",       # neutral: creeping, 10 us longer stops it -> offset +10
    "+++++", "+", "",   # throttle 0.06 turns the wheels...
    "n",                # ...backwards -> throttle direction flipped to +1
    "+++++", "",        # 0.05 turns them...
    "y",                # ...forwards
    "y",                # write the file
]


def scripted(answers):
    """input() replacement: the answers in order, then EOFError; an exception class in the list is raised."""
    answers = list(answers)
    prompts = []

    def input_fn(prompt=""):
        prompts.append(prompt)
        if not answers:
            raise EOFError
        answer = answers.pop(0)
        if isinstance(answer, type) and issubclass(answer, BaseException):
            raise answer
        return answer

    input_fn.prompts = prompts
    return input_fn


class Car:
    """A fake board plus the actuator and wizard around it."""

    def __init__(self, out_path, answers, start_from=SHIPPED):
        self.kits = []
        self.output = []
        self.sleeps = []

        def factory(**kwargs):
            kwargs.pop("i2c")
            kit = FakeServoKit(**kwargs)
            self.kits.append(kit)
            return kit

        cal = load_calibration(start_from)
        self.actuator = PCA9685Actuator(cal, factory, sleep=self.sleeps.append, i2c_dev_dir=None)
        self.input = scripted(answers)
        self.wizard = CalibrationWizard(self.actuator, cal, out_path, input_fn=self.input,
                                        output_fn=self.output.append)

    def pulse(self, channel):
        return self.kits[-1]._pca.channels[channel].pulse_us

    def assert_neutral(self, steering_center, throttle_stop):
        step = self.actuator.period_us / 4096
        assert self.pulse(0) == pytest.approx(steering_center, abs=step / 2)
        assert self.pulse(1) == pytest.approx(throttle_stop, abs=step / 2)
        assert not self.actuator.started


def test_the_full_walkthrough_writes_the_expected_file(tmp_path):
    out = tmp_path / "car.yaml"
    car = Car(out, FULL_SCRIPT)
    assert car.wizard.run() == out
    data = yaml.safe_load(out.read_text())
    assert data == {
        "i2c_bus": 1, "i2c_address": 0x40, "pwm_frequency_hz": 50,
        "steering": {"channel": 0, "min_us": 1100, "center_us": 1530, "max_us": 2038, "direction": 1},
        "throttle": {"channel": 1, "min_us": 1000, "neutral_us": 1500, "max_us": 2000, "direction": 1},
        "throttle_neutral_offset": 10, "throttle_min_moving": 0.05, "esc_arming": 3.0,
    }
    assert load_calibration(out).steering_us(-1.0) == 1100  # the file is valid and means what was found
    assert [p.name for p in tmp_path.iterdir()] == ["car.yaml"]  # atomic: no temporary file left
    assert car.sleeps == [2.0]  # the ESC arming hold of the starting calibration, at start
    car.assert_neutral(1530, 1510)  # ended in the new neutral
    text = "\n".join(car.output)
    assert "ALL FOUR WHEELS OFF THE GROUND" in text.split("Step 1")[0]  # the warning comes first
    assert car.input.prompts[0].startswith("Are all four wheels off the ground?")


def test_the_wheels_turned_while_calibrating(tmp_path):
    """The pulses the fake board saw: the direction probe, the nudges, and the throttle test on its channel."""
    car = Car(tmp_path / "car.yaml", FULL_SCRIPT)
    seen = {0: [], 1: []}
    car.actuator_write = car.actuator.write_pulse_us

    def spy(channel, pulse):
        seen[channel].append(round(pulse))
        return car.actuator_write(channel, pulse)

    car.actuator.write_pulse_us = spy
    car.wizard.run()
    assert 1350 in seen[0]  # the direction probe: 150 us shorter than centre
    assert {1510, 1530, 1012, 1100, 1988, 2038} <= set(seen[0])  # nudges from the old ends' distances
    assert {1505, 1510} <= set(seen[1])
    assert min(seen[1]) >= 1470 and max(seen[1]) <= 1540  # the throttle never went beyond a crawl


@pytest.mark.parametrize("answered", [0, 1, 2, 4, 9, 12, 15, 17, len(FULL_SCRIPT) - 1])
def test_end_of_input_at_any_step_leaves_the_old_file_and_neutral(tmp_path, answered):
    out = tmp_path / "car.yaml"
    save_calibration(load_calibration(SHIPPED), out)
    before = out.read_bytes()
    car = Car(out, FULL_SCRIPT[:answered])
    with pytest.raises(EOFError):
        car.wizard.run()
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["car.yaml"]
    assert not car.actuator.started
    # neutral: the steering at the centre found so far (or the old one), the throttle at the stop found so far
    assert car.pulse(0) == pytest.approx(car.wizard.cal.steering.center_us, abs=2.5)
    assert car.pulse(1) == pytest.approx(car.wizard.cal.throttle_stop_us, abs=2.5)
    assert car.actuator.last_command == (0.0, 0.0)


def test_ctrl_c_while_the_wheels_spin_stops_them(tmp_path):
    out = tmp_path / "car.yaml"
    answers = FULL_SCRIPT[:FULL_SCRIPT.index("+++++") + 1] + [KeyboardInterrupt]
    car = Car(out, answers)
    with pytest.raises(KeyboardInterrupt):
        car.wizard.run()
    assert not out.exists()
    car.assert_neutral(1530, 1510)


def test_declining_to_write_or_to_lift_the_wheels_writes_nothing(tmp_path):
    out = tmp_path / "car.yaml"
    car = Car(out, FULL_SCRIPT[:-1] + ["n"])
    assert car.wizard.run() is None and not out.exists()
    car = Car(out, ["n"])
    assert car.wizard.run() is None and not out.exists()
    assert "nothing was changed" in car.output[-1]
    car.assert_neutral(1500, 1500)


def test_a_steering_servo_that_does_not_move_can_be_moved_to_another_channel(tmp_path):
    out = tmp_path / "car.yaml"
    answers = ["y", "0", "1", "3", "y"] + FULL_SCRIPT[2:]  # channel 1 is the ESC's: refused; 3 accepted
    car = Car(out, answers)
    assert car.wizard.run() == out
    assert load_calibration(out).steering.channel == 3
    assert any("other than 1" in line for line in car.output)
    assert car.pulse(3) == pytest.approx(1530, abs=2.5)


def test_a_typo_does_not_slam_the_servo(tmp_path):
    car = Car(tmp_path / "car.yaml", ["y", "y", "5", "x", "r", ""])
    with pytest.raises(EOFError):
        car.wizard.run()
    assert any("5 is outside 500..2500; nothing changed" in line for line in car.output)
    assert any(line.startswith("  ? keys:") for line in car.output)
    assert car.wizard.cal.steering.center_us == 1510


# -- the command line -----------------------------------------------------------------------------------------------
def parse(*argv):
    parser = argparse.ArgumentParser(prog="jetracer-trt")
    sub = parser.add_subparsers()
    calibrate.register(sub)
    return parser.parse_args(["calibrate", *argv])


def test_cli_fake_run_writes_the_file(tmp_path):
    out = tmp_path / "car.yaml"
    output = []
    rc = calibrate.run(parse("--fake", "--out", str(out)), input_fn=scripted(FULL_SCRIPT),
                       output_fn=output.append, sleep=lambda s: None)
    assert rc == 0
    assert load_calibration(out).steering.center_us == 1530
    assert any("[fake board] channel 0:" in line for line in output)


def test_cli_starts_from_the_out_file_and_from_wins(tmp_path):
    out = tmp_path / "car.yaml"
    cal = load_calibration(SHIPPED)
    cal.steering.center_us = 1450
    save_calibration(cal, out)
    output = []
    rc = calibrate.run(parse("--fake", "--out", str(out)), input_fn=scripted(["n"]), output_fn=output.append,
                       sleep=lambda s: None)
    assert rc == 1 and output[0] == f"Starting from {out}."
    output.clear()
    calibrate.run(parse("--fake", "--out", str(out), "--from", str(SHIPPED)), input_fn=scripted(["n"]),
                  output_fn=output.append, sleep=lambda s: None)
    assert output[0] == f"Starting from {SHIPPED}."


def test_cli_fake_without_out_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    output = []
    rc = calibrate.run(parse("--fake"), input_fn=scripted(FULL_SCRIPT[:-1]), output_fn=output.append,
                       sleep=lambda s: None)
    assert rc == 1
    assert "(--fake: nothing written; add --out PATH to write the file.)" in output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stop,rc,message", [(EOFError, 1, "(end of input)"), (KeyboardInterrupt, 130, "stopped")])
def test_cli_abort_says_the_car_is_in_neutral_and_the_file_unchanged(tmp_path, capsys, stop, rc, message):
    out = tmp_path / "car.yaml"
    save_calibration(load_calibration(SHIPPED), out)
    before = out.read_bytes()
    code = calibrate.run(parse("--fake", "--out", str(out)), input_fn=scripted(FULL_SCRIPT[:6] + [stop]),
                         output_fn=lambda s: None, sleep=lambda s: None)
    assert code == rc
    err = capsys.readouterr().err
    assert message in err and f"the car is in neutral and {out} was not changed" in err
    assert out.read_bytes() == before


def test_cli_refuses_an_unwritable_out_before_touching_the_car(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(JetracerError, match="cannot write the calibration to"):
        calibrate.run(parse("--fake", "--out", str(blocker / "car.yaml")), input_fn=scripted([]),
                      output_fn=lambda s: None, sleep=lambda s: None)


def test_cli_help_mentions_the_options(capsys):
    with pytest.raises(SystemExit):
        parse("--help")
    out = capsys.readouterr().out
    for option in ("--out", "--from", "--fake", "wheels"):
        assert option in out


# -- the real program, stopped by a signal while the wheels spin --------------------------------------------------
class Output:
    """Everything a pipe delivers, collected by a thread (a prompt ends without a newline)."""

    def __init__(self, pipe):
        self.chunks = []
        self._thread = threading.Thread(target=self._read, args=(pipe.fileno(),), daemon=True)
        self._thread.start()

    def _read(self, fd):
        while chunk := os.read(fd, 4096):
            self.chunks.append(chunk.decode())

    @property
    def text(self):
        return "".join(self.chunks)

    def wait_for(self, text, timeout=20.0):
        deadline = time.monotonic() + timeout
        while text not in self.text:
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.text}"
            time.sleep(0.02)

    def finish(self):
        self._thread.join(5.0)
        return self.text


@pytest.mark.parametrize("name", ["SIGHUP", "SIGQUIT", "SIGTERM"])
def test_a_signal_while_the_wheels_spin_ends_in_neutral(tmp_path, name):
    """SIGHUP (the SSH session dropped), SIGQUIT (Ctrl-\\) and SIGTERM (kill) stop `jetracer-trt calibrate` the way
    Ctrl-C does: the fake board's last pulses are the neutral found so far, the message says so, no traceback."""
    start_from = tmp_path / "start.yaml"
    cal = load_calibration(SHIPPED)
    cal.esc_arming = 0.0  # no arming hold: the test does not wait for it
    save_calibration(cal, start_from)
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "jetracer_trt.cli.main", "calibrate", "--fake", "--from",
                             str(start_from)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    try:
        out, err = Output(proc.stdout), Output(proc.stderr)
        answers = FULL_SCRIPT[:FULL_SCRIPT.index("+++++") + 1]
        proc.stdin.write("".join(f"{a}\n" for a in answers).encode())
        proc.stdin.flush()
        out.wait_for("  throttle 0.05 (")  # the wheels spin; the wizard waits for the next key
        proc.send_signal(getattr(signal, name))
        rc = proc.wait(timeout=20)
    finally:
        proc.kill()
    stdout, stderr = out.finish(), err.finish()
    pulses = {int(ch): int(us) for ch, us in re.findall(r"\[fake board\] channel (\d+): (\d+) us", stdout)}
    assert re.findall(r"channel 1: (\d+) us", stdout)[-2] == "1484"  # throttle 0.05 had reached the ESC
    # the last ones: the neutral found so far, to the nearest step of the board (4.9 us) and printed in whole us
    assert pulses.keys() == {0, 1}
    assert pulses[0] == pytest.approx(1530, abs=3) and pulses[1] == pytest.approx(1510, abs=3)
    assert rc == 130, stderr
    assert "calibration stopped: the car is in neutral and nothing was written" in stderr
    assert "Traceback" not in stderr
