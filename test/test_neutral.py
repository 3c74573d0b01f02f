"""The last resort (``jetracer_trt.actuators.neutral``, ``jetracer-trt neutral``): neutral on the board from a
process of its own, on a fake board; it always tries, never raises, and says in one line whether it landed."""
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from jetracer_trt.actuators import calibration as calmod
from jetracer_trt.actuators import neutral as neutral_mod
from jetracer_trt.actuators import pca9685
from jetracer_trt.actuators.calibration import load_calibration, save_calibration
from jetracer_trt.actuators.neutral import write_neutral
from jetracer_trt.actuators.pca9685 import FakeServoKit
from jetracer_trt.cli import main as cli_main

SHIPPED = calmod.shipped_calibration_path()


class Boards:
    """A ``servokit_factory`` of FakeServoKits; ``fail``: (channel, times) for ``fail_writes``, from the start or
    after ``fail_after`` writes; ``error``: what opening the board raises. ``writes``: the pulses the boards took, in
    order, as (channel, us)."""

    def __init__(self, fail=None, error=None, fail_after=0):
        self.fail, self.error, self.fail_after = fail, error, fail_after
        self.writes = []

    def __call__(self, **kwargs):
        if self.error is not None:
            raise self.error

        def on_pulse(channel, us):
            self.writes.append((channel, round(us)))
            if len(self.writes) == self.fail_after:
                kit.fail_writes(*self.fail)

        kit = FakeServoKit(**kwargs, on_pulse=on_pulse)
        if self.fail is not None and not self.fail_after:
            kit.fail_writes(*self.fail)
        return kit


@pytest.fixture(autouse=True)
def no_cars_own_file(tmp_path, monkeypatch):
    """The default calibration is the shipped example: the car was never calibrated."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.mark.parametrize("kind", ["sim", "none"])
def test_nothing_to_do_without_a_board(kind):
    boards = Boards()
    assert write_neutral(kind, servokit_factory=boards, i2c_dev_dir=None) is True
    assert boards.writes == []


def test_neutral_with_the_example_calibration_throttle_first_without_the_arming_hold():
    boards = Boards()
    start = time.monotonic()
    assert write_neutral("pca9685", servokit_factory=boards, i2c_dev_dir=None) is True
    assert time.monotonic() - start < 1.0  # the example's esc_arming is 2 s
    channels = [channel for channel, _ in boards.writes]
    assert channels[:2] == [1, 0] and set(channels) == {0, 1}
    assert all(us == pytest.approx(1500, abs=3) for _, us in boards.writes)


def test_neutral_follows_the_cars_calibration(tmp_path):
    cal = load_calibration(SHIPPED)
    cal.steering.channel, cal.throttle.channel = 4, 5
    cal.steering.center_us, cal.throttle_neutral_offset = 1450, 20
    path = save_calibration(cal, tmp_path / "car.yaml")
    boards = Boards()
    assert write_neutral("pca9685", str(path), servokit_factory=boards, i2c_dev_dir=None) is True
    assert boards.writes[:2] == [(5, pytest.approx(1520, abs=3)), (4, pytest.approx(1450, abs=3))]


def test_a_short_outage_is_ridden_out():
    boards = Boards(fail=(None, 20))
    assert write_neutral("pca9685", servokit_factory=boards, i2c_dev_dir=None) is True
    assert (1, pytest.approx(1500, abs=3)) in boards.writes


@pytest.mark.parametrize("boards,dev,message", [
    (Boards(fail=(1, float("inf"))), None, "could not set neutral"),  # the ESC's output never answers
    (Boards(fail=(1, float("inf")), fail_after=2), None, "could not set neutral"),  # it stopped after opening
    (Boards(error=OSError(121, "Remote I/O error")), None, "no PCA9685 answered at address 0x40 on I2C bus 1"),
    (Boards(), "EMPTY", "I2C bus 1 not found"),
], ids=["throttle-write-fails", "throttle-fails-after-opening", "board-does-not-answer", "no-i2c-bus"])
def test_a_failure_is_reported_loudly_never_raised(tmp_path, caplog, boards, dev, message):
    start = time.monotonic()
    with caplog.at_level(logging.CRITICAL):
        landed = write_neutral("pca9685", servokit_factory=boards, i2c_dev_dir=tmp_path if dev else None,
                               neutral_give_up_s=0.1)
    assert landed is False
    assert time.monotonic() - start < 1.0  # bounded by the give-up time
    assert message in caplog.text and "the car may still be moving: switch it off" in caplog.text


def test_an_unreadable_calibration_is_reported_never_raised(tmp_path, caplog):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steering: [")
    with caplog.at_level(logging.CRITICAL):
        assert write_neutral("pca9685", str(bad), servokit_factory=Boards(), i2c_dev_dir=None) is False
    assert "not valid YAML" in caplog.text


def test_main_prints_one_line_and_the_exit_status_says_whether_it_landed(tmp_path, capsys):
    assert neutral_mod.main(["--actuator", "none"]) == 0
    assert capsys.readouterr().out == "neutral: nothing to do for actuator none\n"
    assert neutral_mod.main(["--fake"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"neutral: set on the pca9685 board (fake) (calibration {SHIPPED})"
    assert neutral_mod.main(["--fake", "--calibration", str(tmp_path / "missing.yaml")]) == 1
    assert capsys.readouterr().out == (
        "neutral: FAILED on the pca9685 board: the car may still be moving: switch it off\n"
    )


def test_the_cli_verb(capsys):
    assert cli_main.main(["neutral", "--fake"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "    [fake board] channel 1: 1498 us"  # the throttle first, 1500 us to a step
    assert out.splitlines()[-1].startswith("neutral: set on the pca9685 board (fake)")
    with pytest.raises(SystemExit):
        cli_main.main(["--help"])
    assert "neutral" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_signals_do_not_cut_the_last_resort_short(monkeypatch, capsys, name):
    """A shutdown that signals the process while it writes must not stop it halfway."""
    signum = getattr(signal, name)

    def factory_that_is_signalled(output_fn=print):
        def on_pulse(channel, us):
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # a handler would run between these bytecodes
                pass

        return lambda **kwargs: FakeServoKit(**kwargs, on_pulse=on_pulse)

    def interrupted(signum, frame):
        raise KeyboardInterrupt(signum)

    monkeypatch.setattr(pca9685, "fake_servokit_factory", factory_that_is_signalled)
    before = signal.signal(signum, interrupted)  # a terminating signal, but one that cannot end pytest itself
    try:
        assert neutral_mod.main(["--fake"]) == 0
        assert signal.getsignal(signum) is interrupted  # put back afterwards
    except KeyboardInterrupt:
        pytest.fail(f"{name} cut the last resort short")
    finally:
        signal.signal(signum, before)
    assert capsys.readouterr().out.startswith("neutral: set on the pca9685 board (fake)")


def _run_module(*args):
    return subprocess.run([sys.executable, "-m", "jetracer_trt.actuators.neutral", *args], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ))


def test_python_m_runs_it():
    done = _run_module("--actuator", "pca9685", "--fake")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("neutral: set on the pca9685 board (fake) (calibration ")


@pytest.mark.skipif(os.path.exists("/dev/i2c-1"), reason="this machine has an I2C bus 1")
def test_python_m_without_a_board_fails_in_one_line_without_a_traceback():
    done = _run_module("--actuator", "pca9685")
    assert done.returncode == 1
    assert done.stdout == "neutral: FAILED on the pca9685 board: the car may still be moving: switch it off\n"
    assert "CRITICAL" in done.stderr and "I2C bus 1 not found" in done.stderr
    assert "Traceback" not in done.stderr
