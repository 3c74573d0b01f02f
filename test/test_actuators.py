"""The actuator layer without hardware: pulse mapping, calibration files, the life cycle's neutral guarantees, and the
PCA9685 actuator up to the ServoKit seam (a fake ServoKit that behaves like Adafruit's, old and new), including I2C
write errors on a fake clock."""
import dataclasses
import errno
import logging
import math
import sys

import pytest
import yaml

from jetracer_trt.actuators import (
    NEUTRAL, ActuatorError, CarCalibration, Command, NullActuator, ServoChannel, SimActuator, create_actuator,
    load_calibration, save_calibration, to_pulse_us,
)
from jetracer_trt.actuators import calibration as calmod
from jetracer_trt.actuators.pca9685 import FakeServoKit, PCA9685Actuator
from jetracer_trt.errors import JetracerError

SHIPPED = calmod.shipped_calibration_path()


# -- a fake ServoKit with the structure of adafruit_servokit.ServoKit -------------------------------------------------
class FakePCA:
    """adafruit_pca9685.PCA9685 as far as the actuator uses it. ``off_by_one`` mimics releases before PR #59, whose
    prescale was round(clock / 4096 / f) instead of that minus 1 (and whose ``frequency`` was off alike)."""

    def __init__(self, log, off_by_one=False):
        self.reference_clock_speed = 25_000_000
        self.prescale_reg = 30
        self.off_by_one = off_by_one
        self.log = log
        self.channels = [FakeChannel(self, i) for i in range(16)]

    @property
    def frequency(self):
        return self.reference_clock_speed / 4096 / (self.prescale_reg + (0 if self.off_by_one else 1))

    @frequency.setter
    def frequency(self, freq):
        self.prescale_reg = int(self.reference_clock_speed / 4096 / freq + 0.5) - (0 if self.off_by_one else 1)

    def true_period_us(self):
        """Datasheet 7.3.5: the chip's real period for the prescale register's value."""
        return 4096 * (self.prescale_reg + 1) / self.reference_clock_speed * 1e6


class FakeChannel:
    def __init__(self, pca, index):
        self.pca, self.index, self.reg = pca, index, None  # None: never written

    @property
    def duty_cycle(self):
        return self.reg << 4

    @duty_cycle.setter
    def duty_cycle(self, value):
        assert 0 <= value < 0xFFFF
        self.reg = (value + 1) >> 4  # what the library writes to the 12-bit register
        self.pca.log.append(("pulse", self.index, self.pulse_us))

    @property
    def pulse_us(self):
        return None if self.reg is None else self.reg * self.pca.true_period_us() / 4096


class FakeKitFactory:
    def __init__(self, off_by_one=False, error=None):
        self.off_by_one, self.error = off_by_one, error
        self.log, self.kwargs, self.kit = [], None, None

    def __call__(self, **kwargs):
        self.kwargs = kwargs
        if self.error is not None:
            raise self.error
        kit = type("ServoKit", (), {})()
        kit._pca = FakePCA(self.log, self.off_by_one)
        kit._pca.frequency = kwargs["frequency"]
        self.kit = kit
        return kit

    def pulse(self, channel):
        return self.kit._pca.channels[channel].pulse_us

    @property
    def step_us(self):
        return self.kit._pca.true_period_us() / 4096


@pytest.fixture
def dev_dir(tmp_path):
    (tmp_path / "i2c-1").write_text("")
    return tmp_path


def make_pca(dev_dir, factory=None, cal=None, sleeps=None):
    factory = factory or FakeKitFactory()
    cal = cal or load_calibration(SHIPPED)
    sleeps = [] if sleeps is None else sleeps

    def sleep(seconds):
        factory.log.append(("sleep", seconds))
        sleeps.append(seconds)

    return PCA9685Actuator(cal, factory, sleep=sleep, i2c_dev_dir=dev_dir), factory


class FakeClock:
    """``clock`` and ``sleep`` for an actuator: time passes only while it sleeps."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class Board:
    """A PCA9685Actuator of the stock calibration on the package's FakeServoKit, on a fake clock. ``writes``: the
    pulses the board took, in order, as (channel, us)."""

    def __init__(self, **retry):
        self.clock = FakeClock()
        self.writes = []
        self.kit = None
        self.actuator = PCA9685Actuator(load_calibration(SHIPPED), self._factory, sleep=self.clock.sleep,
                                        clock=self.clock, i2c_dev_dir=None, **retry)

    def _factory(self, **kwargs):
        self.kit = FakeServoKit(**kwargs, on_pulse=lambda channel, us: self.writes.append((channel, round(us))))
        return self.kit

    def started(self):
        self.actuator.start()
        self.writes.clear()
        return self.actuator

    def pulse(self, channel):
        return self.kit._pca.channels[channel].pulse_us


def near(pulse_us):
    """Equal to ``pulse_us`` within half a step of the PCA9685 at 50 Hz."""
    return pytest.approx(pulse_us, abs=2.5)


NO_ERRORS = {"write_errors": 0, "retried_writes": 0, "neutral_failures": 0}


# -- pulse mapping ----------------------------------------------------------------------------------------------------
def test_pulse_mapping_centre_extremes_and_direction():
    ch = ServoChannel(channel=0, min_us=1000, center_us=1500, max_us=2000, direction=1)
    assert to_pulse_us(0.0, ch) == 1500
    assert to_pulse_us(1.0, ch) == 2000 and to_pulse_us(-1.0, ch) == 1000
    assert to_pulse_us(0.5, ch) == 1750
    rev = dataclasses.replace(ch, direction=-1)
    assert to_pulse_us(1.0, rev) == 1000 and to_pulse_us(-1.0, rev) == 2000 and to_pulse_us(0.0, rev) == 1500


def test_pulse_mapping_is_piecewise_through_an_off_centre_middle():
    ch = ServoChannel(channel=0, min_us=1100, center_us=1400, max_us=2000, direction=1)
    assert to_pulse_us(0.0, ch) == 1400
    assert to_pulse_us(0.5, ch) == 1700  # half of the 600 us right half
    assert to_pulse_us(-0.5, ch) == 1250  # half of the 300 us left half
    assert to_pulse_us(1.0, ch) == 2000 and to_pulse_us(-1.0, ch) == 1100


def test_pulse_mapping_clamps_and_makes_non_finite_neutral():
    ch = ServoChannel(channel=0, min_us=1000, center_us=1500, max_us=2000, direction=-1)
    assert to_pulse_us(7.0, ch) == 1000 and to_pulse_us(-3.0, ch) == 2000
    for bad in (math.nan, math.inf, -math.inf, None, "x"):
        assert to_pulse_us(bad, ch) == 1500


def test_throttle_neutral_offset_moves_the_stop_and_keeps_the_ends():
    cal = load_calibration(SHIPPED)
    cal.throttle_neutral_offset = 20
    assert cal.throttle_us(0.0) == 1520 == cal.throttle_stop_us
    assert cal.throttle_us(1.0) == 1000 and cal.throttle_us(-1.0) == 2000  # inverted, ends unchanged
    assert cal.throttle_us(0.5) == 1260


# -- calibration files ------------------------------------------------------------------------------------------------
def test_shipped_calibration_is_the_stock_jetracer():
    cal = load_calibration(SHIPPED)
    assert (cal.i2c_bus, cal.i2c_address, cal.pwm_frequency_hz) == (1, 0x40, 50.0)
    assert cal.steering.channel == 0 and cal.throttle.channel == 1
    assert cal.throttle.direction == -1  # the stock JetRacer's ESC runs forward on the shorter pulse
    assert cal.steering.center_us == 1500 and cal.throttle.neutral_us == 1500
    assert cal.esc_arming > 0


def test_every_key_of_the_shipped_file_is_commented():
    lines = [line for line in SHIPPED.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) == 18  # 6 top-level values, 2 sections of 5 keys, 2 section headers
    for line in lines:
        assert "#" in line, line


def test_save_and_load_round_trip(tmp_path):
    cal = load_calibration(SHIPPED)
    cal.steering = ServoChannel(channel=3, min_us=1100.5, center_us=1490, max_us=1950, direction=1)
    cal.throttle_neutral_offset, cal.throttle_min_moving, cal.esc_arming = -12.5, 0.14, 3.5
    cal.i2c_address = 0x41
    path = save_calibration(cal, tmp_path / "cfg" / "car.yaml")
    assert load_calibration(path) == cal
    assert "i2c_address: 0x41" in path.read_text()
    assert sorted(p.name for p in path.parent.iterdir()) == ["car.yaml"]  # no temporary file left


def test_default_path_prefers_the_cars_own_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert calmod.default_calibration_path() == SHIPPED
    cal = load_calibration(SHIPPED)
    cal.steering.center_us = 1444
    save_calibration(cal, calmod.user_calibration_path())
    assert calmod.default_calibration_path() == tmp_path / "jetracer_trt" / "car_calibration.yaml"
    assert load_calibration().steering.center_us == 1444


def _mutated(tmp_path, change):
    data = yaml.safe_load(SHIPPED.read_text())
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("change,message", [
    (lambda d: d["steering"].update(min_us=1600), "min_us < center_us < max_us"),
    (lambda d: d["throttle"].update(max_us=1500), "min_us < neutral_us < max_us"),
    (lambda d: d["throttle"].update(max_us=2600), "throttle.max_us must be in 500..2500 us"),
    (lambda d: d["steering"].update(min_us=400), "steering.min_us must be in 500..2500 us"),
    (lambda d: d["steering"].update(direction=0), "steering.direction must be 1 or -1"),
    (lambda d: d["throttle"].update(direction=True), "throttle.direction must be 1 or -1"),
    (lambda d: d["steering"].update(channel=16), "steering.channel must be in 0..15"),
    (lambda d: d["throttle"].update(channel=-1), "throttle.channel must be in 0..15"),
    (lambda d: d["throttle"].update(channel=0), "both 0: they must differ"),
    (lambda d: d.update(i2c_address=0x80), "i2c_address must be in 3..119"),
    (lambda d: d.update(i2c_bus="one"), "i2c_bus must be an integer"),
    (lambda d: d.update(pwm_frequency_hz=1000), "pwm_frequency_hz must be in 40..200"),
    (lambda d: (d.update(throttle_neutral_offset=150), d["throttle"].update(max_us=1600)),
     "throttle.neutral_us + throttle_neutral_offset = 1650 us must lie between"),
    (lambda d: d.update(esc_arming=-1), "esc_arming must be in 0..10"),
    (lambda d: d.update(throttle_min_moving=1.5), "throttle_min_moving must be in 0..1"),
    (lambda d: d["steering"].update(centre_us=1500), "unknown key steering.centre_us"),
    (lambda d: d["throttle"].pop("neutral_us"), "missing key throttle.neutral_us"),
    (lambda d: d.pop("i2c_address"), "missing key i2c_address"),
    (lambda d: d.update(steering=[1, 2]), "steering must be a mapping"),
])
def test_each_validation_rule_has_a_clear_error(tmp_path, change, message):
    path = _mutated(tmp_path, change)
    with pytest.raises(JetracerError) as info:
        load_calibration(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text,message", [
    ("steering: [", "not valid YAML"),
    ("- 1\n- 2\n", "mapping"),
])
def test_unreadable_files_have_a_clear_error(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(JetracerError, match=message):
        load_calibration(path)
    with pytest.raises(JetracerError, match="not found.*jetracer-trt calibrate"):
        load_calibration(tmp_path / "missing.yaml")


def test_save_refuses_an_invalid_calibration_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "car.yaml"
    cal = load_calibration(SHIPPED)
    save_calibration(cal, path)
    before = path.read_bytes()
    cal.steering.min_us = 1700
    with pytest.raises(JetracerError, match="min_us"):
        save_calibration(cal, path)
    assert path.read_bytes() == before


# -- the life cycle (none / sim) --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kind", [(NullActuator, "none"), (SimActuator, "sim")])
def test_null_and_sim_record_clamped_commands(cls, kind):
    act = cls()
    assert act.kind == kind
    with pytest.raises(RuntimeError):
        act.apply(0.1, 0.1)
    with act:
        assert act.apply(2.0, -0.25) == Command(1.0, -0.25)
        assert act.last_command == (1.0, -0.25)
    assert act.last_command == NEUTRAL and act.history[-1] == NEUTRAL
    with pytest.raises(RuntimeError):
        act.apply(0.1, 0.1)


def test_non_finite_commands_are_neutral_per_channel_with_one_warning(caplog):
    act = NullActuator().start()
    with caplog.at_level(logging.WARNING, logger="jetracer_trt.actuators.base"):
        assert act.apply(math.nan, 0.4) == Command(0.0, 0.4)
        assert act.apply(math.nan, 0.4) == Command(0.0, 0.4)
        assert act.apply(0.3, math.inf) == Command(0.3, 0.0)
        assert act.apply(0.3, None) == Command(0.3, 0.0)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # once per channel until a finite value comes back
    assert "steering" in messages[0] and "throttle" in messages[1]
    act.close()


def test_exit_on_an_exception_goes_neutral_and_close_is_idempotent():
    act = NullActuator()
    with pytest.raises(RuntimeError, match="boom"):
        with act:
            act.apply(0.5, 0.7)
            raise RuntimeError("boom")
    assert act.last_command == NEUTRAL and act.history[-1] == NEUTRAL
    n = len(act.history)
    act.close()
    act.close()
    assert len(act.history) == n
    with pytest.raises(RuntimeError):
        act.start()


# -- PCA9685 up to the ServoKit seam ----------------------------------------------------------------------------------
def test_pca9685_channel_mapping_of_the_stock_jetracer(dev_dir):
    act, kit = make_pca(dev_dir)
    with act:
        assert kit.kwargs == {"channels": 16, "address": 0x40, "frequency": 50.0, "i2c": None}
        half = kit.step_us / 2
        act.apply(0.0, 0.0)
        assert kit.pulse(0) == pytest.approx(1500, abs=half) and kit.pulse(1) == pytest.approx(1500, abs=half)
        act.apply(1.0, 1.0)  # full right, full forward: both the shorter pulse on the stock car
        assert kit.pulse(0) == pytest.approx(1012.5, abs=half)
        assert kit.pulse(1) == pytest.approx(1000, abs=half)
        act.apply(-1.0, -0.5)
        assert kit.pulse(0) == pytest.approx(1987.5, abs=half)
        assert kit.pulse(1) == pytest.approx(1750, abs=half)
        written = {i for i, ch in enumerate(kit.kit._pca.channels) if ch.reg is not None}
        assert written == {0, 1}


@pytest.mark.parametrize("off_by_one", [False, True], ids=["pca9685-lib-current", "pca9685-lib-before-pr59"])
def test_pca9685_pulse_widths_are_the_nearest_step_of_the_real_period(dev_dir, off_by_one):
    act, kit = make_pca(dev_dir, FakeKitFactory(off_by_one=off_by_one))
    with act:
        step = kit.step_us
        assert step == pytest.approx(4.88 if not off_by_one else 4.92, abs=0.01)
        for pulse in (500, 1000, 1234.5, 1500, 1987.5, 2500):
            sent = act.write_pulse_us(5, pulse)
            assert abs(kit.pulse(5) - pulse) <= step / 2 + 1e-9
            assert sent == pytest.approx(kit.pulse(5))
        # the exact register values: 1500 us is step 307 of 4096 at prescale 121 (current library)
        act.write_pulse_us(5, 1500)
        assert kit.kit._pca.channels[5].reg == (307 if not off_by_one else 305)
        assert act.pulse_to_duty(1500) == kit.kit._pca.channels[5].reg << 4
        act.write_pulse_us(5, 0)  # clamped: never a pulse of 0
        assert kit.pulse(5) == pytest.approx(500, abs=step / 2)


def test_pca9685_holds_neutral_while_the_esc_arms(dev_dir):
    act, kit = make_pca(dev_dir)
    act.start()
    assert [e[0] for e in kit.log] == ["pulse", "pulse", "sleep"]
    assert kit.log[-1] == ("sleep", 2.0)
    assert kit.log[0][2] == pytest.approx(1500, abs=2.5) and kit.log[1][2] == pytest.approx(1500, abs=2.5)
    act.close()


def test_pca9685_neutral_on_close_exit_and_exception(dev_dir):
    cal = load_calibration(SHIPPED)
    cal.throttle_neutral_offset = 20
    act, kit = make_pca(dev_dir, cal=cal)
    with pytest.raises(KeyboardInterrupt):
        with act:
            act.apply(0.8, 0.6)
            assert kit.pulse(1) < 1400
            raise KeyboardInterrupt
    assert kit.pulse(0) == pytest.approx(1500, abs=2.5)
    assert kit.pulse(1) == pytest.approx(1520, abs=2.5)
    assert act.last_command == NEUTRAL
    n = len(kit.log)
    act.close()
    assert len(kit.log) == n  # idempotent: nothing written again

    act, kit = make_pca(dev_dir)
    act.start()
    act.apply(-0.3, 0.3)
    act.neutral()
    assert kit.pulse(0) == pytest.approx(1500, abs=2.5) and kit.pulse(1) == pytest.approx(1500, abs=2.5)
    act.apply(math.nan, 0.3)  # a NaN steering is centre, the throttle still applies
    assert kit.pulse(0) == pytest.approx(1500, abs=2.5) and kit.pulse(1) < 1500
    act.close()
    assert kit.pulse(1) == pytest.approx(1500, abs=2.5)


# -- I2C write errors: a loose cable, a board that did not acknowledge (OSError 121) ------------------------------
def test_every_actuator_counts_its_errors():
    for act in (NullActuator(), SimActuator(), create_actuator("none"), Board().actuator):
        assert act.error_counts == NO_ERRORS


def test_every_write_sets_the_throttle_first():
    board = Board()
    act = board.actuator.start()
    assert [channel for channel, _ in board.writes] == [1, 0]  # the neutral at start
    board.writes.clear()
    act.apply(0.5, 0.5)
    act.neutral()
    assert [channel for channel, _ in board.writes] == [1, 0, 1, 0]


def test_a_transient_write_error_is_retried_within_the_window():
    board = Board()
    act = board.started()
    board.kit.fail_writes(1, times=2)
    start = board.clock.now
    assert act.apply(0.2, 0.5) == (0.2, 0.5)
    assert board.pulse(1) == near(1250) and board.pulse(0) == near(1402)
    assert act.error_counts == dict(NO_ERRORS, retried_writes=2)
    assert board.clock.now - start <= act.retry_window_s
    board.kit.fail_writes(5, times=2)
    assert act.write_pulse_us(5, 1600) == near(1600)  # the wizard's raw writes are retried alike
    assert act.error_counts["retried_writes"] == 4


def test_a_write_that_keeps_failing_goes_neutral_raises_and_the_drive_goes_on():
    board = Board()
    act = board.started()
    act.apply(0.0, 0.5)
    board.kit.fail_writes(0, times=3)  # the steering output, on each of the three tries of one command
    start = board.clock.now
    with pytest.raises(ActuatorError, match=r"^lost the PCA9685 at address 0x40 on I2C bus 1 while setting channel 0 "
                                            r"\(steering\) \(Remote I/O error\): check .*; the car is in neutral$"):
        act.apply(0.3, 0.8)
    assert issubclass(ActuatorError, JetracerError)
    assert board.pulse(1) == near(1500) and board.pulse(0) == near(1500)
    assert act.last_command == NEUTRAL
    assert act.error_counts == dict(NO_ERRORS, write_errors=1, retried_writes=2)
    assert board.clock.now - start <= act.retry_window_s  # the control loop is held up for one window at most
    assert act.started
    assert act.apply(0.1, 0.2) == (0.1, 0.2)  # the next command drives again
    assert board.pulse(1) == near(1400)


def test_a_steering_output_that_stopped_answering_does_not_keep_the_throttle_from_stopping():
    board = Board()
    act = board.started()
    act.apply(0.0, 0.5)
    board.kit.fail_writes(0)  # for good: the steering servo's cable came loose
    for _ in range(3):
        with pytest.raises(ActuatorError, match="neutral failed too: the car may still move$"):
            act.apply(0.0, 0.5)
        assert board.pulse(1) == near(1500)
    assert act.error_counts == {"write_errors": 3, "retried_writes": 12, "neutral_failures": 3}


def test_a_failing_neutral_is_tried_again_until_it_lands():
    board = Board()
    act = board.started()
    act.apply(0.0, 0.5)
    board.kit.fail_writes(1, times=40)
    start = board.clock.now
    act.neutral()
    assert board.pulse(1) == near(1500)
    assert 0.2 < board.clock.now - start < 0.5
    assert act.error_counts == dict(NO_ERRORS, retried_writes=40)


def test_a_neutral_that_never_lands_gives_up_in_time_and_says_so_loudly(caplog):
    board = Board(neutral_give_up_s=1.5)
    act = board.started()
    act.apply(0.0, 0.4)
    board.kit.fail_writes(1)
    start = board.clock.now
    with caplog.at_level(logging.CRITICAL, logger="jetracer_trt.actuators.base"):
        with pytest.raises(ActuatorError, match="could not set neutral.*may still be moving"):
            act.neutral()
    assert 1.49 <= board.clock.now - start <= 1.5
    assert "could not set neutral on PCA9685Actuator within 1.5 s" in caplog.text
    assert "the car may still be moving: switch it off" in caplog.text
    assert act.started and act.error_counts["neutral_failures"] == 1
    caplog.clear()
    start = board.clock.now
    with caplog.at_level(logging.CRITICAL, logger="jetracer_trt.actuators.base"):
        act.close()  # never raises
    assert 1.49 <= board.clock.now - start <= 1.5
    assert "switch it off" in caplog.text
    assert not act.started and act.error_counts["neutral_failures"] == 2


def test_close_lands_neutral_through_a_short_outage(caplog):
    board = Board()
    act = board.started()
    act.apply(0.0, 0.4)
    board.kit.fail_writes(None, times=5)
    with caplog.at_level(logging.CRITICAL):
        act.close()
    assert board.pulse(1) == near(1500) and board.pulse(0) == near(1500)
    assert caplog.text == "" and not act.started


def test_a_raw_write_that_keeps_failing_is_an_actuator_error():
    board = Board()
    act = board.started()
    board.kit.fail_writes(5)
    with pytest.raises(ActuatorError, match="setting channel 5 \\(Remote I/O error\\)"):
        act.write_pulse_us(5, 1600)
    assert act.error_counts == dict(NO_ERRORS, write_errors=1, retried_writes=2)


def test_missing_i2c_bus_says_what_to_check(tmp_path):
    act, kit = make_pca(tmp_path)  # no i2c-1 there
    with pytest.raises(JetracerError) as info:
        act.start()
    assert str(info.value).startswith(
        f"I2C bus 1 not found ({tmp_path}/i2c-1 missing): enable I2C / check the Jetson's pinmux / run on the car"
    )
    assert kit.kwargs is None  # the board was never touched
    assert not act.started


@pytest.mark.skipif(__import__("os").path.exists("/dev/i2c-1"), reason="this machine has an I2C bus 1")
def test_missing_dev_i2c_1_message_on_a_machine_without_it():
    act = PCA9685Actuator(load_calibration(SHIPPED), FakeKitFactory(), sleep=lambda s: None)
    with pytest.raises(JetracerError, match=r"^I2C bus 1 not found \(/dev/i2c-1 missing\): enable I2C / check the "
                                            r"Jetson's pinmux / run on the car"):
        act.start()


@pytest.mark.parametrize("error", [
    OSError(121, "Remote I/O error"),
    OSError(errno.EIO, "Input/output error"),
    ValueError("No I2C device at address: 0x40"),
])
def test_a_board_that_does_not_answer_says_what_to_check(dev_dir, error):
    act, _ = make_pca(dev_dir, FakeKitFactory(error=error))
    with pytest.raises(JetracerError) as info:
        act.start()
    assert str(info.value) == (
        "no PCA9685 answered at address 0x40 on I2C bus 1: check the board's power, SDA/SCL wiring, and the "
        "address (i2cdetect -y -r 1)"
    )
    act.close()  # closing an actuator that never started is harmless


def test_missing_servokit_says_what_to_install(dev_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "adafruit_servokit", None)  # import adafruit_servokit -> ImportError
    act = PCA9685Actuator(load_calibration(SHIPPED), sleep=lambda s: None, i2c_dev_dir=dev_dir)
    with pytest.raises(JetracerError, match="pip install adafruit-circuitpython-servokit"):
        act.start()


def test_create_actuator_kinds(dev_dir):
    assert isinstance(create_actuator("none"), NullActuator)
    assert type(create_actuator("sim")) is SimActuator
    cal = load_calibration(SHIPPED)
    assert isinstance(create_actuator("sim", cal).calibration, CarCalibration)
    act = create_actuator("pca9685", str(SHIPPED), allow_example_calibration=True, servokit_factory=FakeKitFactory(),
                          sleep=lambda s: None, i2c_dev_dir=dev_dir)
    assert isinstance(act, PCA9685Actuator) and act.calibration == cal
    assert "adafruit_servokit" not in sys.modules  # nothing imported before start()
    with act:
        act.apply(0.1, 0.1)
    with pytest.raises(JetracerError, match="unknown actuator 'servo'; choose one of pca9685, sim, none"):
        create_actuator("servo")


def test_the_example_calibration_does_not_drive_the_board(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # the car has no file of its own
    link = tmp_path / "link.yaml"
    link.symlink_to(SHIPPED)
    for calibration in (None, str(SHIPPED), SHIPPED, link):
        with pytest.raises(JetracerError) as info:
            create_actuator("pca9685", calibration, servokit_factory=FakeServoKit, i2c_dev_dir=None)
        message = str(info.value)
        assert message.startswith(f"{SHIPPED if calibration is None else calibration} is the shipped example "
                                  "calibration, not this car's: the board will not be driven with it")
        assert f"run `jetracer-trt calibrate` (it writes {tmp_path}/jetracer_trt/car_calibration.yaml)" in message
        assert "set allow_example_calibration to true" in message
    act = create_actuator("pca9685", allow_example_calibration=True, servokit_factory=FakeServoKit, i2c_dev_dir=None)
    assert act.calibration_source == str(SHIPPED)
    assert create_actuator("sim", str(SHIPPED)).calibration_source == ""  # the simulator drives no board


def test_calibration_source_says_which_file_drives(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    own = save_calibration(load_calibration(SHIPPED), calmod.user_calibration_path())
    board = {"servokit_factory": FakeServoKit, "i2c_dev_dir": None}
    assert create_actuator("pca9685", **board).calibration_source == str(own)
    other = save_calibration(load_calibration(SHIPPED), tmp_path / "other.yaml")
    assert create_actuator("pca9685", other, **board).calibration_source == str(other)
    assert create_actuator("pca9685", load_calibration(SHIPPED), **board).calibration_source == "given"
    assert create_actuator("none").calibration_source == ""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGQUIT"])
def test_terminating_signals_unwind_like_ctrl_c_so_the_car_goes_neutral(name):
    import os
    import signal

    from jetracer_trt.actuators import terminate_as_interrupt

    signum = getattr(signal, name)
    before = signal.getsignal(signum)
    act = NullActuator()
    with pytest.raises(KeyboardInterrupt):
        with terminate_as_interrupt(), act:
            assert signal.getsignal(signum) is not before
            act.apply(0.3, 0.5)
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert act.last_command == NEUTRAL
    assert signal.getsignal(signum) is before


def test_an_ignored_hangup_stays_ignored():
    import signal

    from jetracer_trt.actuators import terminate_as_interrupt

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does
    try:
        with terminate_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
