"""The gamepad side of teleop without a device: the canonical layout, the shipped and user mappings (real evdev code
names), events to state (real evdev ``InputEvent``s), the pad kept open across unplugs and ``joy test``.

/dev/uinput is not available here, so ``StandInInput`` plays /dev/input: pads that behave like evdev's
``InputDevice`` (a real file descriptor that ``select`` wakes on, ``read()`` a generator that raises
``BlockingIOError`` when nothing is pending and ``OSError(19, 'No such device')`` once the pad is unplugged,
``capabilities()`` with ``AbsInfo``, ``absinfo()``, ``active_keys()``, ``info.vendor/product``), each open
handle getting its own copy of the events as with the kernel.
"""
from __future__ import annotations

import math
import os
import sys
import time
from collections import deque

import pytest

evdev = pytest.importorskip("evdev")
from evdev import InputEvent, ecodes as e  # noqa: E402
from evdev.device import AbsInfo, DeviceInfo  # noqa: E402

from jetracer_trt.errors import JetracerError  # noqa: E402
from jetracer_trt.teleop import layout  # noqa: E402
from jetracer_trt.teleop import link as link_module  # noqa: E402
from jetracer_trt.teleop import mapper as mapper_module  # noqa: E402
from jetracer_trt.teleop.layout import RELEASED, PadState, pressed  # noqa: E402
from jetracer_trt.teleop.link import EvdevBackend, GamepadLink  # noqa: E402
from jetracer_trt.teleop.mapper import PadMapper, normalized, shaped  # noqa: E402
from jetracer_trt.teleop.mapping import AxisSpec, load_mappings, parse_layers, shipped_file  # noqa: E402

# --- pads as the kernel describes them --------------------------------------------------------------------------
STICK = (-32768, 32767)
BYTE = (0, 255)
HAT = (-1, 1)
XPAD_KEYS = [e.BTN_A, e.BTN_B, e.BTN_X, e.BTN_Y, e.BTN_TL, e.BTN_TR, e.BTN_SELECT, e.BTN_START, e.BTN_MODE,
             e.BTN_THUMBL, e.BTN_THUMBR]
XPAD_ABS = {e.ABS_X: STICK, e.ABS_Y: STICK, e.ABS_Z: BYTE, e.ABS_RX: STICK, e.ABS_RY: STICK, e.ABS_RZ: BYTE,
            e.ABS_HAT0X: HAT, e.ABS_HAT0Y: HAT}
SONY_KEYS = [e.BTN_SOUTH, e.BTN_EAST, e.BTN_NORTH, e.BTN_WEST, e.BTN_TL, e.BTN_TR, e.BTN_TL2, e.BTN_TR2,
             e.BTN_SELECT, e.BTN_START, e.BTN_MODE, e.BTN_THUMBL, e.BTN_THUMBR]
SONY_ABS = {e.ABS_X: BYTE, e.ABS_Y: BYTE, e.ABS_Z: BYTE, e.ABS_RX: BYTE, e.ABS_RY: BYTE, e.ABS_RZ: BYTE,
            e.ABS_HAT0X: HAT, e.ABS_HAT0Y: HAT}
HID_PAD_KEYS = list(range(e.BTN_SOUTH, e.BTN_THUMBR + 1))  # hid-generic: every code from BTN_SOUTH up
HID_PAD_ABS = {e.ABS_X: BYTE, e.ABS_Y: BYTE, e.ABS_Z: BYTE, e.ABS_RZ: BYTE, e.ABS_GAS: BYTE, e.ABS_BRAKE: BYTE,
               e.ABS_HAT0X: HAT, e.ABS_HAT0Y: HAT}

PADS = {
    "f710_xinput": ("Logitech Gamepad F710", 0x046D, 0xC21F, XPAD_KEYS, XPAD_ABS),
    "f710_dinput": ("Logitech Logitech Cordless RumblePad 2", 0x046D, 0xC219, list(range(e.BTN_TRIGGER, 300)),
                    {e.ABS_X: BYTE, e.ABS_Y: BYTE, e.ABS_Z: BYTE, e.ABS_RZ: BYTE, e.ABS_HAT0X: HAT,
                     e.ABS_HAT0Y: HAT}),
    "xbox_360": ("Microsoft X-Box 360 pad", 0x045E, 0x028E, XPAD_KEYS, XPAD_ABS),
    "xbox_series_usb": ("Microsoft Xbox Series S|X Controller", 0x045E, 0x0B12, XPAD_KEYS,
                        {**XPAD_ABS, e.ABS_Z: (0, 1023), e.ABS_RZ: (0, 1023)}),
    "xpadneo": ("Xbox Wireless Controller", 0x045E, 0x0B13, XPAD_KEYS,
                {**XPAD_ABS, e.ABS_Z: (0, 1023), e.ABS_RZ: (0, 1023)}),
    "xbox_bt_hid": ("Xbox Wireless Controller", 0x045E, 0x0B13, HID_PAD_KEYS,
                    {**HID_PAD_ABS, e.ABS_X: (0, 65535), e.ABS_Y: (0, 65535), e.ABS_Z: (0, 65535),
                     e.ABS_RZ: (0, 65535)}),
    "ds4": ("Sony Interactive Entertainment Wireless Controller", 0x054C, 0x09CC, SONY_KEYS, SONY_ABS),
    "ds4_motion": ("Sony Interactive Entertainment Wireless Controller Motion Sensors", 0x054C, 0x09CC, [],
                   {c: (-32768, 32767) for c in (e.ABS_X, e.ABS_Y, e.ABS_Z, e.ABS_RX, e.ABS_RY, e.ABS_RZ)}),
    "ds4_touchpad": ("Sony Interactive Entertainment Wireless Controller Touchpad", 0x054C, 0x09CC,
                     [e.BTN_LEFT, e.BTN_TOOL_FINGER, e.BTN_TOUCH, e.BTN_TOOL_DOUBLETAP],
                     {e.ABS_X: (0, 1919), e.ABS_Y: (0, 941), e.ABS_MT_SLOT: (0, 1),
                      e.ABS_MT_POSITION_X: (0, 1919)}),
    "ds4_bluetooth": ("Wireless Controller", 0x054C, 0x05C4, SONY_KEYS, SONY_ABS),
    "dualsense": ("DualSense Wireless Controller", 0x054C, 0x0CE6, SONY_KEYS, SONY_ABS),
    "8bitdo_dinput": ("8BitDo Pro 2", 0x2DC8, 0x6006, HID_PAD_KEYS, HID_PAD_ABS),
    "8bitdo_xinput": ("8BitDo Pro 2 Wired Controller", 0x2DC8, 0x3106, XPAD_KEYS, XPAD_ABS),
    "generic_pad": ("ACME Super Pad", 0x1234, 0x5678, XPAD_KEYS, XPAD_ABS),
    "keyboard": ("AT Translated Set 2 keyboard", 0x0001, 0x0001, [e.KEY_ESC, e.KEY_A, e.KEY_SPACE], {}),
}


class PadModel:
    """One physical input device: its description, current values and the handles open on it."""

    def __init__(self, kind: str):
        self.name, self.vendor, self.product, self.keys, self.abs_ranges = PADS[kind]
        self.values = {code: (low + high + 1) // 2 for code, (low, high) in self.abs_ranges.items()}  # at rest
        self.held: set[int] = set()
        self.plugged = True
        self.handles: list[StandInDevice] = []

    def send(self, *changes, syn: bool = True) -> None:
        """Events (type, code, value) as the kernel sends them, closed by SYN_REPORT."""
        now = time.time()
        sec, usec = int(now), int((now % 1) * 1e6)
        events = [InputEvent(sec, usec, t, c, v) for t, c, v in changes]
        if syn:
            events.append(InputEvent(sec, usec, e.EV_SYN, e.SYN_REPORT, 0))
        for t, c, v in changes:
            if t == e.EV_ABS:
                self.values[c] = v
            elif t == e.EV_KEY:
                (self.held.add if v else self.held.discard)(c)
        for handle in self.handles:
            handle.deliver(events)

    def unplug(self) -> None:
        self.plugged = False
        for handle in self.handles:
            handle.wake()


def ABS(code, value):  # noqa: N802 - reads like the kernel's names
    return (e.EV_ABS, code, value)


def KEY(code, value):  # noqa: N802
    return (e.EV_KEY, code, value)


class StandInDevice:
    """What ``evdev.InputDevice(path)`` returns, for a PadModel."""

    def __init__(self, path: str, model: PadModel):
        self.path, self.model = path, model
        self.name, self.phys, self.uniq = model.name, f"usb-stand-in/{path}", ""
        self.info = DeviceInfo(bustype=3, vendor=model.vendor, product=model.product, version=0x111)
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self.fd = self._r
        self._queue: deque = deque()
        model.handles.append(self)

    def deliver(self, events) -> None:
        self._queue.extend(events)
        self.wake()

    def wake(self) -> None:
        if self._w is not None:
            os.write(self._w, b"x")

    def fileno(self) -> int:
        return self.fd

    def capabilities(self, verbose=False, absinfo=True):
        caps = {e.EV_SYN: [e.SYN_REPORT, e.SYN_CONFIG, e.SYN_DROPPED]}
        if self.model.keys:
            caps[e.EV_KEY] = list(self.model.keys)
        if self.model.abs_ranges:
            caps[e.EV_ABS] = [(code, self.absinfo(code)) if absinfo else code for code in sorted(self.model.abs_ranges)]
        return caps

    def absinfo(self, axis_num: int) -> AbsInfo:
        low, high = self.model.abs_ranges[axis_num]
        return AbsInfo(value=self.model.values[axis_num], min=low, max=high, fuzz=16 if low < 0 else 0,
                       flat=128 if low < 0 else 0, resolution=0)

    def active_keys(self, verbose=False):
        return sorted(self.model.held)

    def _drain(self) -> list:
        if not self.model.plugged:
            raise OSError(19, "No such device")
        try:
            os.read(self._r, 4096)
        except BlockingIOError:
            pass
        if not self._queue:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        events = list(self._queue)
        self._queue.clear()
        return events

    def read(self):
        yield from self._drain()  # a generator, as evdev's: the read happens on the first next()

    def read_one(self):
        try:
            events = self._drain()
        except BlockingIOError:
            return None
        self._queue.extendleft(reversed(events[1:]))
        return events[0]

    def close(self) -> None:
        if self._w is not None:
            os.close(self._r)
            os.close(self._w)
            self._w = None
            self.fd = -1
            self.model.handles.remove(self)


class StandInInput:
    """/dev/input with pads plugged in and out: the backend ``GamepadLink`` takes."""

    input_dir = "/dev/input"

    def __init__(self):
        self.devices: dict[str, PadModel] = {}
        self.denied: set[str] = set()
        self.opened = 0

    def plug(self, kind: str, number: int | None = None) -> PadModel:
        number = number if number is not None else next(n for n in range(64) if f"/dev/input/event{n}" not in
                                                        self.devices)
        model = PadModel(kind)
        model.path = f"/dev/input/event{number}"
        self.devices[model.path] = model
        return model

    def unplug(self, model: PadModel) -> None:
        del self.devices[model.path]
        model.unplug()

    def list_devices(self) -> list[str]:
        return sorted(self.devices, key=lambda p: int(p.rsplit("event", 1)[1]))

    def unreadable(self) -> list[str]:
        return []

    def open(self, path: str) -> StandInDevice:
        if path in self.denied:
            raise PermissionError(13, "Permission denied", path)
        if path not in self.devices:
            raise FileNotFoundError(2, "No such file or directory", path)
        self.opened += 1
        return StandInDevice(path, self.devices[path])


class Log:
    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def info(self, message):
        self.lines.append(("info", message))

    def warning(self, message):
        self.lines.append(("warning", message))

    def text(self, level=None) -> str:
        return "\n".join(m for lv, m in self.lines if level in (None, lv))


@pytest.fixture
def bus():
    return StandInInput()


@pytest.fixture(scope="module")
def mappings(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # the shipped file alone, whatever this machine's user has
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("no_user_file")))
        return load_mappings()


def make_link(bus, mappings, **kwargs):
    log = Log()
    kwargs.setdefault("poll_s", 0.05)
    return GamepadLink(mappings, backend=bus, log=log, **kwargs), log


def run_until(link, condition, timeout_s=2.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        link.step(0.02)
        if condition():
            return True
    return False


# --- the layout ---------------------------------------------------------------------------------------------------
def test_the_canonical_layout_reads_back_what_it_writes_and_refuses_other_layouts():
    state = PadState(steering=-0.25, throttle=1.0, deadman=True, estop=True)
    assert state.axes == [-0.25, 1.0] and state.buttons == [1, 0, 0, 1]
    assert PadState.from_joy(state.axes, state.buttons) == state
    assert PadState.from_joy([3.0, -7.0], [0, 0, 0, 0]).axes == [1.0, -1.0]
    with pytest.raises(ValueError, match="2 axes"):
        PadState.from_joy([0.0, 0.0, 0.0], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="non-finite"):
        PadState.from_joy([math.nan, 0.0], [1, 0, 0, 0])
    assert RELEASED.buttons == [0, 0, 0, 0] and RELEASED.axes == [0.0, 0.0]
    assert layout.BUTTONS[layout.DEADMAN] == "deadman" and layout.BUTTONS[layout.ESTOP] == "estop"
    assert pressed(RELEASED, PadState(deadman=True, autopilot_toggle=True)) == {"deadman", "autopilot_toggle"}
    assert pressed(PadState(autopilot_toggle=True), PadState(autopilot_toggle=True)) == frozenset()


def test_the_event_constants_are_the_kernels():
    assert (mapper_module.EV_SYN, mapper_module.EV_KEY, mapper_module.EV_ABS) == (e.EV_SYN, e.EV_KEY, e.EV_ABS)
    assert (mapper_module.SYN_REPORT, mapper_module.SYN_DROPPED) == (e.SYN_REPORT, e.SYN_DROPPED)


# --- the mappings -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, expected", [
    ("f710_xinput", "logitech_f710_xinput"), ("f710_dinput", "logitech_f710_dinput"), ("xbox_360", "xbox"),
    ("xbox_series_usb", "xbox"), ("xpadneo", "xbox"), ("xbox_bt_hid", "xbox_bluetooth_hid"),
    ("ds4", "playstation_4"), ("ds4_bluetooth", "playstation_4"), ("dualsense", "playstation_5"),
    ("8bitdo_dinput", "8bitdo_dinput"), ("8bitdo_xinput", "8bitdo_xinput"), ("generic_pad", "linux_gamepad"),
    ("ds4_motion", None), ("ds4_touchpad", None), ("keyboard", None)])
def test_each_pad_gets_its_mapping_and_a_pads_sensor_and_touchpad_devices_get_none(mappings, kind, expected):
    name, vendor, product, keys, abs_ranges = PADS[kind]
    chosen = mappings.select(name, vendor, product, abs_ranges, keys)
    assert (chosen.name if chosen else None) == expected


def test_the_shipped_mappings_use_the_real_codes_and_give_every_control(mappings):
    assert mappings.files == [str(shipped_file())]
    f710x, f710d = mappings.get("logitech_f710_xinput"), mappings.get("logitech_f710_dinput")
    assert f710x.axes["steering"].code == e.ABS_X and f710x.axes["throttle"].code == e.ABS_RY
    assert f710x.axes["throttle"].invert  # xpad reports stick-up as negative; forward must come out positive
    assert f710x.buttons["deadman"].keys == (e.BTN_TL,) and f710x.buttons["estop"].keys == (e.BTN_EAST,)
    assert f710d.axes["throttle"].code == e.ABS_RZ and f710d.buttons["deadman"].keys == (e.BTN_TOP2, e.BTN_WEST)
    assert f710d.names != f710x.names  # `extends` takes axes and buttons, never what a mapping matches
    assert mappings.get("8bitdo_dinput").buttons["estop"].keys == (e.BTN_SOUTH,)
    for mapping in mappings:
        assert set(mapping.axes) == set(layout.AXES) and set(mapping.buttons) == set(layout.BUTTONS), mapping.name
        assert mapping.description
    with pytest.raises(JetracerError, match="no gamepad mapping named 'nope'.*known: logitech_f710_xinput"):
        mappings.get("nope")


def write(tmp_path, text: str) -> str:
    path = tmp_path / "gamepads.yaml"
    path.write_text(text)
    return str(path)


def test_a_user_file_overrides_shipped_mappings_in_place_and_its_new_ones_come_first(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "jetracer_trt").mkdir()
    (tmp_path / "jetracer_trt" / "gamepads.yaml").write_text("""
mappings:
  xbox:
    axes: {throttle: {expo: 0.6}}
    buttons: {deadman: [BTN_TL, BTN_TR]}
  my_pad:
    description: a cheap pad with its right stick on Z/RZ
    extends: xbox
    match: {ids: ["1234:*"]}
    axes:
      throttle: ABS_RZ
      steering: {code: 0, deadzone: 0.1}
    buttons:
      estop: {axis: ABS_HAT0X, above: 0.75}
""")
    mappings = load_mappings()  # the default user file, found through XDG_CONFIG_HOME
    assert mappings.files[-1] == str(tmp_path / "jetracer_trt" / "gamepads.yaml")
    names = [m.name for m in mappings]
    assert names[0] == "my_pad" and names.index("xbox") == 3  # new first; the override keeps its place
    xbox = mappings.get("xbox")
    assert xbox.axes["throttle"] == AxisSpec(code=e.ABS_RY, invert=True, deadzone=0.06, expo=0.6)
    assert xbox.buttons["deadman"].keys == (e.BTN_TL, e.BTN_TR) and xbox.names == ("*X-Box*", "*Xbox*")
    mine = mappings.get("my_pad")
    assert mine.axes["throttle"].code == e.ABS_RZ and mine.axes["throttle"].invert  # merged onto xbox's
    assert mine.axes["steering"].deadzone == 0.1 and mine.buttons["deadman"].keys == (e.BTN_TL, e.BTN_TR)
    assert mine.buttons["estop"].axis == e.ABS_HAT0X and mine.names == () and mine.ids == ("1234:*",)
    name, vendor, product, keys, abs_ranges = PADS["generic_pad"]
    assert mappings.select(name, vendor, product, abs_ranges, keys).name == "my_pad"


@pytest.mark.parametrize("text, message", [
    ("mappings:\n  p: {match: {names: [x]}, axes: {steering: ABS_X, throttle: ABS_Y}, buttons: {deadman: BTN_TL}, "
     "deadzone: 1}", "unknown key.*deadzone"),
    ("mappings:\n  p: {match: {names: [x]}, axes: {steering: ABS_XX, throttle: ABS_Y}, buttons: {deadman: BTN_TL}}",
     "'ABS_XX' is not an evdev axis code"),
    ("mappings:\n  p: {match: {names: [x]}, axes: {steering: BTN_TL, throttle: ABS_Y}, buttons: {deadman: BTN_TL}}",
     "'BTN_TL' is not an evdev axis code"),
    ("mappings:\n  p: {match: {names: [x]}, axes: {steering: ABS_X, throttle: ABS_Y}}", "needs deadman"),
    ("mappings:\n  p: {match: {names: [x]}, axes: {steering: {code: ABS_X, expo: 2}, throttle: ABS_Y}, "
     "buttons: {deadman: BTN_TL}}", r"expo must be a number in \[0.0, 1.0\]"),
    ("mappings:\n  p: {axes: {steering: ABS_X, throttle: ABS_Y}, buttons: {deadman: BTN_TL}}", "`match` needs"),
    ("mappings:\n  a: {extends: b, match: {names: [x]}}\n  b: {extends: a, match: {names: [y]}}", "loops"),
    ("mappings:\n  a: {extends: zz, match: {names: [x]}}", "extends 'zz', which no gamepads file defines"),
    ("mappings:\n  p: {match: {names: [x]}, axes: {steering: ABS_X, throttle: ABS_Y, yaw: ABS_Z}, "
     "buttons: {deadman: BTN_TL}}", "unknown key.*yaw"),
    ("mappings: [1, 2]", "must hold one key, `mappings:`"),
    ("mappings: {p: [", "not valid YAML at line 1, column 16"),
])
def test_a_bad_user_file_is_one_clear_error_naming_the_file_and_the_mapping(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(JetracerError, match=message) as raised:
        load_mappings(path)
    assert str(raised.value).count("\n") == 0 and str(tmp_path) in str(raised.value)


def test_a_missing_gamepads_file_given_by_name_is_an_error(tmp_path):
    with pytest.raises(JetracerError, match="gamepads file not found"):
        load_mappings(str(tmp_path / "nope.yaml"))


# --- events to state ----------------------------------------------------------------------------------------------
def xbox_mapper(mappings, **values) -> PadMapper:
    name, vendor, product, keys, abs_ranges = PADS["xbox_360"]
    return PadMapper(mappings.get("xbox"), abs_ranges, values)


def frame(m: PadMapper, *changes) -> bool:
    changed = False
    for t, c, v in changes + ((e.EV_SYN, e.SYN_REPORT, 0),):
        changed |= m.feed(InputEvent(0, 0, t, c, v))
    return changed


def test_full_sticks_give_full_right_and_full_forward_and_centre_gives_zero(mappings):
    m = xbox_mapper(mappings)
    assert m.state == RELEASED
    assert frame(m, ABS(e.ABS_X, 32767), ABS(e.ABS_RY, -32768), KEY(e.BTN_TL, 1))
    assert m.state == PadState(steering=1.0, throttle=1.0, deadman=True)
    frame(m, ABS(e.ABS_X, -32768), ABS(e.ABS_RY, 32767))
    assert (m.state.steering, m.state.throttle) == (-1.0, -1.0)
    frame(m, ABS(e.ABS_X, 0), ABS(e.ABS_RY, -1))  # a centred stick is not exactly the centre of the range
    assert (m.state.steering, m.state.throttle) == (0.0, 0.0)
    # the DirectInput F710: a 0..255 stick, up = 0
    dinput = PadMapper(mappings.get("logitech_f710_dinput"), PADS["f710_dinput"][4])
    frame(dinput, ABS(e.ABS_RZ, 0), ABS(e.ABS_X, 128), KEY(e.BTN_TOP2, 1))
    assert dinput.state == PadState(throttle=1.0, deadman=True)


def test_deadzone_and_expo_shape_the_axis_without_a_jump():
    spec = AxisSpec(code=0, deadzone=0.1, expo=0.5)
    assert shaped(0.1, spec) == 0.0 and shaped(-0.05, spec) == 0.0
    assert shaped(0.1001, spec) == pytest.approx(0.0, abs=1e-3)  # stretched: no step at the deadzone's edge
    x = (0.55 - 0.1) / 0.9
    assert shaped(0.55, spec) == pytest.approx(0.5 * x + 0.5 * x ** 3)
    assert shaped(-0.55, spec) == pytest.approx(-(0.5 * x + 0.5 * x ** 3))
    assert shaped(1.0, spec) == 1.0 and shaped(-1.0, AxisSpec(code=0, invert=True)) == 1.0
    assert normalized(300, 0, 255) == 1.0 and normalized(5, 7, 7) == 0.0


def test_the_state_changes_once_per_frame_and_only_when_a_frame_ends(mappings):
    m = xbox_mapper(mappings)
    assert not m.feed(InputEvent(0, 0, e.EV_ABS, e.ABS_X, 32767))
    assert m.state == RELEASED  # half a frame is never published
    assert m.feed(InputEvent(0, 0, e.EV_SYN, e.SYN_REPORT, 0)) and m.state.steering == 1.0
    assert not frame(m, ABS(e.ABS_X, 32767))  # the same values again: no change
    assert not frame(m, KEY(e.BTN_MODE, 1))  # an unmapped button changes nothing


def test_events_after_a_dropped_buffer_are_ignored_until_the_pad_is_read_back(mappings):
    m = xbox_mapper(mappings)
    frame(m, KEY(e.BTN_TL, 1))
    m.feed(InputEvent(0, 0, e.EV_SYN, e.SYN_DROPPED, 0))
    assert not frame(m, ABS(e.ABS_RY, -32768))
    assert m.resync_needed and m.state.throttle == 0.0
    assert m.reset({e.ABS_RY: -32768, e.ABS_X: 0}, [])  # the pad's real state, read back by the link
    assert m.state == PadState(throttle=1.0) and not m.resync_needed


def test_buttons_from_several_codes_from_an_axis_and_held_at_open(mappings, tmp_path):
    m = xbox_mapper(mappings)
    frame(m, KEY(e.BTN_START, 2))  # auto-repeat counts as held
    assert m.state.autopilot_toggle
    path = write(tmp_path, "mappings:\n  xbox:\n    buttons:\n      deadman: [BTN_TL, BTN_TR]\n"
                           "      estop: {axis: ABS_RZ, above: 0.5}\n")
    custom = load_mappings(path).get("xbox")
    m = PadMapper(custom, PADS["xbox_360"][4], {e.ABS_RZ: 0}, keys=[e.BTN_TR])
    assert m.state.deadman and not m.state.estop  # a button held when the pad is opened counts
    frame(m, ABS(e.ABS_RZ, 127))
    assert not m.state.estop
    frame(m, ABS(e.ABS_RZ, 200))
    assert m.state.estop
    with pytest.raises(ValueError, match="does not report"):
        PadMapper(custom, {e.ABS_X: STICK})


# --- the pad kept open ----------------------------------------------------------------------------------------------
def test_no_pad_at_start_is_the_released_state_and_a_pad_plugged_later_is_used(bus, mappings):
    link, log = make_link(bus, mappings)
    assert not run_until(link, lambda: link.connected, timeout_s=0.2)
    assert link.state == RELEASED
    assert log.text("warning").count("no gamepad found (no input devices in /dev/input); looking again") == 1
    pad = bus.plug("xbox_360")
    assert run_until(link, lambda: link.connected)
    assert "gamepad: 'Microsoft X-Box 360 pad' (045e:028e) on /dev/input/event0, mapping xbox" in log.text("info")
    pad.send(KEY(e.BTN_TL, 1), ABS(e.ABS_RY, -32768))
    assert run_until(link, lambda: link.state.throttle == 1.0)
    assert link.state.deadman and abs(link.stamp_ns - time.time_ns()) < 1e9


def test_an_unplugged_pad_is_released_at_once_and_a_replugged_one_resumes(bus, mappings):
    link, log = make_link(bus, mappings)
    pad = bus.plug("f710_xinput", 3)
    assert link.connect()
    pad.send(KEY(e.BTN_TL, 1), ABS(e.ABS_RY, -32768), ABS(e.ABS_X, 20000))
    assert run_until(link, lambda: link.state.deadman)
    bus.unplug(pad)
    assert link.step(0.5)  # the read that fails is itself "publish now"
    assert link.state == RELEASED and not link.connected and link.disconnects == 1
    assert "gamepad 'Logitech Gamepad F710' lost (No such device): released state sent" in log.text("warning")
    assert not link.step(0.01) and link.state == RELEASED  # still gone: nothing new, still released
    again = bus.plug("f710_xinput", 4)  # back on another event number, still holding the deadman
    again.held.add(e.BTN_TL)
    assert run_until(link, lambda: link.connected)
    assert link.reconnects == 1 and link.device.path == "/dev/input/event4" and link.state.deadman
    assert "gamepad again: 'Logitech Gamepad F710'" in log.text("info")
    assert not pad.handles  # the lost device's handle was closed


def test_after_the_kernel_dropped_events_the_pad_is_read_back(bus, mappings):
    link, _ = make_link(bus, mappings)
    pad = bus.plug("xbox_360")
    assert link.connect()
    pad.send(KEY(e.BTN_TL, 1), (e.EV_SYN, e.SYN_DROPPED, 0), ABS(e.ABS_RY, -32768))  # the stick move was lost
    assert run_until(link, lambda: link.state.throttle == 1.0)
    assert link.state.deadman


def test_the_pad_is_chosen_over_its_own_motion_sensors_listed_first(bus, mappings):
    bus.plug("keyboard", 0)
    bus.plug("ds4_motion", 5)
    bus.plug("ds4_touchpad", 6)
    bus.plug("ds4", 7)
    link, _log = make_link(bus, mappings)
    assert link.connect() and link.device.path == "/dev/input/event7" and link.mapping.name == "playstation_4"
    assert sum(len(m.handles) for m in bus.devices.values()) == 1  # the devices looked at and not taken are closed


def test_a_device_by_path_by_name_pattern_or_with_a_forced_mapping(bus, mappings):
    bus.plug("xbox_360", 2)
    bus.plug("8bitdo_dinput", 3)
    link, _ = make_link(bus, mappings, device="/dev/input/event3")
    assert link.connect() and link.mapping.name == "8bitdo_dinput"
    link, _ = make_link(bus, mappings, device="8bitdo*")
    assert link.connect() and link.device.path == "/dev/input/event3"
    link, _ = make_link(bus, mappings, device="/dev/input/event9")
    assert not link.connect() and "/dev/input/event9: No such file or directory" in link.problem
    link, _ = make_link(bus, mappings, device="/dev/input/event3", mapping="xbox")
    assert not link.connect()
    assert "lacks what mapping xbox uses (throttle axis 4)" in link.problem
    with pytest.raises(JetracerError, match="no gamepad mapping named 'xbox_one'"):
        make_link(bus, mappings, mapping="xbox_one")


def test_an_unmapped_or_unreadable_pad_says_what_to_do(bus, tmp_path):
    only_f710 = parse_layers([("test.yaml", {"f710": {"match": {"ids": ["046d:c21f"]},
                                                      "axes": {"steering": "ABS_X", "throttle": "ABS_RY"},
                                                      "buttons": {"deadman": "BTN_TL"}}})])
    bus.plug("generic_pad", 1)
    link, log = make_link(bus, only_f710)
    assert not run_until(link, lambda: link.connected, timeout_s=0.15)
    assert "'ACME Super Pad' (1234:5678) on /dev/input/event1 matches no mapping: see its codes with " \
           "`jetracer-trt joy test --device /dev/input/event1`" in log.text("warning")
    link, _ = make_link(bus, only_f710, require_mapping=False)  # joy test opens it for its raw codes
    assert link.connect() and link.mapping is None and link.state == RELEASED
    bus.denied.add("/dev/input/event1")
    link, _ = make_link(bus, only_f710)
    assert not link.connect() and "Permission denied; add the user to the 'input' group" in link.problem


def test_the_real_backend_lists_only_readable_character_devices_in_number_order(tmp_path):
    (tmp_path / "event0").write_text("not a device")
    backend = EvdevBackend(str(tmp_path))
    assert backend.list_devices() == [] and backend.unreadable() == []
    if os.path.exists("/dev/null"):  # a real character device, named like event devices
        for n in (10, 2):
            os.symlink("/dev/null", tmp_path / f"event{n}")
        assert backend.list_devices() == [str(tmp_path / "event2"), str(tmp_path / "event10")]


# --- jetracer-trt joy test -------------------------------------------------------------------------------------------
@pytest.fixture
def cli_bus(bus, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no user file of the machine's
    monkeypatch.setattr(link_module, "EvdevBackend", lambda: bus)
    return bus


def test_joy_test_without_a_pad_is_one_error_line_and_status_2(cli_bus, capsys):
    from jetracer_trt.cli.main import main

    cli_bus.plug("keyboard", 0)
    assert main(["joy", "test", "--seconds", "0.1"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: no gamepad found (among 1 input device(s): 'AT Translated Set 2 keyboard')\n"
    assert captured.out == ""


def test_without_evdev_the_gamepad_is_one_line_naming_the_extra(monkeypatch, capsys):
    from jetracer_trt.cli.main import main

    monkeypatch.setitem(sys.modules, "evdev", None)  # what `import evdev` meets where it is not installed
    assert main(["joy", "test"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: the gamepad needs the evdev package: pip install 'jetracer_trt[teleop]'")


def test_joy_test_prints_the_pad_its_mapping_and_raw_codes_next_to_mapped_values(cli_bus, capsys):
    from jetracer_trt.cli.main import main

    pad = cli_bus.plug("f710_xinput", 4)
    pad.send(ABS(e.ABS_RY, -32768), KEY(e.BTN_TL, 1), syn=False)  # already pushed when the test starts
    pad.values[e.ABS_RY], pad.held = -32768, {e.BTN_TL}
    for handle in list(pad.handles):
        handle._queue.clear()
    import threading

    threading.Timer(0.2, lambda: pad.send(ABS(e.ABS_X, 32767), KEY(e.BTN_EAST, 1))).start()
    threading.Timer(0.3, lambda: cli_bus.unplug(pad)).start()
    assert main(["joy", "test", "--seconds", "0.6"]) == 0
    out = capsys.readouterr().out
    assert "gamepad: 'Logitech Gamepad F710' (046d:c21f) on /dev/input/event4" in out
    assert "mapping: logitech_f710_xinput (Logitech F710, switch on the back at X" in out
    assert "axes: ABS_X(0) -32768..32767, ABS_Y(1) -32768..32767, ABS_Z(2) 0..255" in out
    assert "buttons: BTN_A/BTN_SOUTH(304), BTN_B/BTN_EAST(305), BTN_NORTH/BTN_X(307)" in out
    assert ("now: steering +0.00 throttle +1.00 | deadman 1 autopilot_toggle 0 record_toggle 0 estop 0") in out
    assert ("ABS_X(0)=32767 BTN_B/BTN_EAST(305)=1 -> steering +1.00 throttle +1.00 | deadman 1 "
            "autopilot_toggle 0 record_toggle 0 estop 1") in out
    assert "gamepad 'Logitech Gamepad F710' lost (No such device)" in out


def test_joy_test_shows_an_unmapped_pad_with_its_raw_codes(cli_bus, capsys, tmp_path):
    from jetracer_trt.cli.main import main

    own = write(tmp_path, "mappings:\n  linux_gamepad:\n    match: {names: [nothing-matches-this]}\n")
    cli_bus.plug("generic_pad", 0)
    assert main(["joy", "test", "--seconds", "0.1", "--gamepads-file", own]) == 0
    out = capsys.readouterr().out
    assert "gamepad: 'ACME Super Pad' (1234:5678)" in out
    assert f"mapping: none fits this pad: raw codes only; write one into {own}" in out
    assert "now: (no mapping)" in out


def test_a_pad_that_goes_away_while_being_opened_is_looked_for_again(bus, mappings, monkeypatch):
    pad = bus.plug("xbox_360")
    link, log = make_link(bus, mappings)
    monkeypatch.setattr(StandInDevice, "active_keys", lambda self, verbose=False: (_ for _ in ()).throw(
        OSError(19, "No such device")))
    assert not run_until(link, lambda: link.connected, timeout_s=0.15)
    assert "went away while being opened (No such device)" in log.text("warning") and not pad.handles
    monkeypatch.undo()
    assert run_until(link, lambda: link.connected)
