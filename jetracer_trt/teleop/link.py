"""One gamepad kept open: ``GamepadLink`` finds the pad, reads its events into a ``PadMapper`` and, when the pad
goes away, drops to the released state at once and looks for it again.

Which pad: ``device`` is a path (``/dev/input/event5``, or better a stable ``/dev/input/by-id/...-event-joystick``
link), a device-name pattern (``"Xbox*"``), or empty for the first input device, in event-number order, that a
mapping fits; ``mapping`` forces a mapping by name (the device must still have its codes). A pad is lost when a
read fails (the kernel answers ENODEV once it is unplugged, out of Bluetooth range or out of battery): the state
becomes ``layout.RELEASED`` (deadman released, throttle 0) before anything else happens, one warning says so, and
every ``poll_s`` the devices are scanned again until the pad (or another that fits) is back. Nothing here raises
for a missing, unplugged or unreadable pad; ``step`` logs each distinct reason it was not found once.

``backend`` stands for /dev/input (``EvdevBackend``: evdev's ``InputDevice`` and the event device files); tests
pass a stand-in with the same methods.
"""
from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
import select
import stat
import time

from .layout import RELEASED, PadState
from .mapper import EV_ABS, EV_KEY, EV_SYN, SYN_REPORT, PadMapper
from .mapping import INSTALL_HINT, GamepadMapping, GamepadMappings, user_file

POLL_S = 0.5  # how often a missing pad is looked for
INPUT_GROUP_HINT = "add the user to the 'input' group (sudo usermod -aG input $USER, then log in again)"
BTN_JOYSTICK_RANGE = range(0x120, 0x140)  # BTN_TRIGGER .. BTN_THUMBR: joystick and gamepad buttons
BTN_TRIGGER_HAPPY = 0x2C0


class EvdevBackend:
    """The machine's /dev/input through evdev."""

    def __init__(self, input_dir: str = "/dev/input"):
        try:
            import evdev
        except ImportError as exc:
            from ..errors import JetracerError

            raise JetracerError(f"the gamepad needs the evdev package: {INSTALL_HINT} ({exc})") from None
        self._open = evdev.InputDevice
        self.input_dir = input_dir

    def _event_files(self) -> list[str]:
        paths = [p for p in glob.glob(os.path.join(self.input_dir, "event*")) if _is_char_device(p)]
        return sorted(paths, key=_event_number)

    def list_devices(self) -> list[str]:
        """Event devices this user can read (reading is all a pad needs), in event-number order."""
        return [p for p in self._event_files() if os.access(p, os.R_OK)]

    def unreadable(self) -> list[str]:
        return [p for p in self._event_files() if not os.access(p, os.R_OK)]

    def open(self, path: str):
        return self._open(path)


def _is_char_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def _event_number(path: str) -> tuple[int, str]:
    found = re.search(r"(\d+)$", path)
    return (int(found.group(1)) if found else -1, path)


def device_codes(device) -> tuple[set[int], set[int]]:
    """The axis and key codes a device reports."""
    caps = device.capabilities()
    return {code for code, _info in caps.get(EV_ABS, [])}, set(caps.get(EV_KEY, []))


def looks_like_gamepad(abs_codes: set[int], key_codes: set[int]) -> bool:
    """Axes and joystick/gamepad buttons: not a keyboard, a mouse, a touchpad or a pad's motion sensors."""
    return bool(abs_codes) and any(c in BTN_JOYSTICK_RANGE or c >= BTN_TRIGGER_HAPPY for c in key_codes)


def ids(device) -> str:
    return f"{device.info.vendor:04x}:{device.info.product:04x}"


class GamepadLink:
    """``require_mapping`` False (``joy test``): a pad no mapping fits is opened too, for its raw codes."""

    def __init__(self, mappings: GamepadMappings, device: str = "", mapping: str = "", backend=None,
                 poll_s: float = POLL_S, log=None, sleep=time.sleep, clock_ns=time.time_ns,
                 require_mapping: bool = True):
        self.mappings = mappings
        self.device_arg = device or ""
        self.forced: GamepadMapping | None = mappings.get(mapping) if mapping else None
        self.backend = backend if backend is not None else EvdevBackend()
        self.poll_s = float(poll_s)
        self.log = log or logging.getLogger(__name__)
        self._sleep = sleep
        self._clock_ns = clock_ns
        self.require_mapping = require_mapping
        self.device = None
        self.mapping: GamepadMapping | None = None
        self.mapper: PadMapper | None = None
        self.state: PadState = RELEASED
        self.stamp_ns = clock_ns()
        self.events = 0
        self.connects = 0
        self.disconnects = 0
        self.problem = ""  # why no pad is open
        self._logged_problem = ""
        self.on_frame = None  # called with (events of the frame, state) at each SYN_REPORT
        self._frame: list = []
        self._next_attempt = 0.0

    @property
    def connected(self) -> bool:
        return self.device is not None

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)

    def describe(self) -> str:
        if self.device is None:
            return "no gamepad"
        mapping = f"mapping {self.mapping.name}" if self.mapping else "no mapping"
        return f"{self.device.name!r} ({ids(self.device)}) on {self.device.path}, {mapping}"

    def step(self, timeout_s: float) -> bool:
        """Reads the open pad, or (at most every ``poll_s``) looks for one; waits up to ``timeout_s``. True when
        the state changed or the pad came or went: publish now."""
        if self.device is not None:
            return self.read(timeout_s)
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            self._sleep(min(wait, timeout_s))
            return False
        self._next_attempt = time.monotonic() + self.poll_s
        if self.connect():
            return True
        if self.problem != self._logged_problem:
            self._logged_problem = self.problem
            self.log.warning(f"{self.problem}; looking again every {self.poll_s:g} s")
        return False

    def connect(self) -> bool:
        """One look for the pad; True when one was opened, else False with the reason in ``problem``."""
        found = self._find()
        if found is None:
            return False
        device, mapping = found
        try:
            mapper = PadMapper.for_device(mapping, device.capabilities(), device.active_keys()) if mapping else None
        except OSError as exc:  # gone between the scan and now
            self.problem = f"gamepad {device.name!r} went away while being opened ({exc.strerror or exc})"
            device.close()
            return False
        self.device, self.mapping, self.mapper = device, mapping, mapper
        self.connects += 1
        self.problem = self._logged_problem = ""
        self._frame = []
        self.state = mapper.state if mapper is not None else RELEASED
        self.stamp_ns = self._clock_ns()
        again = " again" if self.connects > 1 else ""
        self.log.info(f"gamepad{again}: {self.describe()}")
        return True

    def read(self, timeout_s: float) -> bool:
        """Waits up to ``timeout_s`` for the pad's events and applies them; a failed read loses the pad."""
        device = self.device
        try:
            ready, _, _ = select.select([device], [], [], timeout_s)
            if not ready:
                return False
            changed = False
            for event in device.read():
                changed |= self._apply(event)
            if self.mapper is not None and self.mapper.resync_needed:
                values = {code: device.absinfo(code).value for code in self.mapper.ranges}
                changed |= self.mapper.reset(values, device.active_keys())
        except BlockingIOError:
            return False
        except OSError as exc:
            return self._lost(exc)
        if changed:
            self.state = self.mapper.state
            self.stamp_ns = self._clock_ns()
        return changed

    def _apply(self, event) -> bool:
        self.events += 1
        changed = self.mapper.feed(event) if self.mapper is not None else False
        if event.type == EV_SYN and event.code == SYN_REPORT:
            if self.on_frame is not None:
                self.on_frame(self._frame, self.mapper.state if self.mapper is not None else RELEASED)
            self._frame = []
        elif event.type != EV_SYN:
            self._frame.append(event)
        return changed

    def _lost(self, exc: OSError) -> bool:
        name = self.device.name
        self.close()
        self.disconnects += 1
        self.stamp_ns = self._clock_ns()
        self._next_attempt = time.monotonic() + self.poll_s
        self.problem = self._logged_problem = f"gamepad {name!r} lost ({exc.strerror or exc})"
        self.log.warning(f"{self.problem}: released state sent (deadman off, throttle 0); looking for it every "
                         f"{self.poll_s:g} s")
        return True

    def close(self) -> None:
        """Closes the pad; the state is the released one from here on."""
        device, self.device, self.mapper = self.device, None, None
        self.state = RELEASED
        if device is not None:
            try:
                device.close()
            except OSError:
                pass

    def _find(self) -> tuple[object, GamepadMapping | None] | None:
        """The first device that qualifies, or None with the reason in ``problem``."""
        explicit = self.device_arg.startswith(("/", "."))
        pattern = "" if explicit else self.device_arg.lower()
        paths = [self.device_arg] if explicit else self.backend.list_devices()
        seen, unmapped = [], []
        for path in paths:
            try:
                device = self.backend.open(path)
            except OSError as exc:
                hint = f"; {INPUT_GROUP_HINT}" if isinstance(exc, PermissionError) else ""
                seen.append(f"{path}: {exc.strerror or exc}{hint}")
                continue
            abs_codes, key_codes = device_codes(device)
            if pattern and not fnmatch.fnmatchcase(device.name.lower(), pattern):
                seen.append(f"{device.name!r} (not named like {self.device_arg!r})")
            else:
                mapping = self._mapping_for(device, abs_codes, key_codes)
                if mapping is not None:
                    return device, mapping
                if looks_like_gamepad(abs_codes, key_codes):
                    if not self.require_mapping:
                        return device, None
                    unmapped.append(self._why_unmapped(device, abs_codes, key_codes))
                else:
                    seen.append(f"{device.name!r}" + (" (no gamepad axes and buttons)" if explicit else ""))
            try:
                device.close()
            except OSError:
                pass
        self._report_missing(paths, seen, unmapped)
        return None

    def _mapping_for(self, device, abs_codes, key_codes) -> GamepadMapping | None:
        if self.forced is not None:
            return None if self.forced.missing(abs_codes, key_codes) else self.forced
        return self.mappings.select(device.name, device.info.vendor, device.info.product, abs_codes, key_codes)

    def _why_unmapped(self, device, abs_codes, key_codes) -> str:
        where = f"{device.name!r} ({ids(device)}) on {device.path}"
        if self.forced is not None:
            lacks = ", ".join(self.forced.missing(abs_codes, key_codes))
            return f"{where} lacks what mapping {self.forced.name} uses ({lacks})"
        target = self.mappings.files[-1] if len(self.mappings.files) > 1 else user_file()
        return (f"{where} matches no mapping: see its codes with `jetracer-trt joy test --device {device.path}` "
                f"and add a mapping to {target}")

    def _report_missing(self, paths, seen, unmapped) -> None:
        if unmapped:
            self.problem = f"no usable gamepad ({'; '.join(unmapped)})"
        elif not paths:
            unreadable = getattr(self.backend, "unreadable", lambda: [])()
            where = getattr(self.backend, "input_dir", "/dev/input")
            self.problem = f"no gamepad found (no input devices in {where}" + (
                f" readable by this user: {len(unreadable)} not readable, {INPUT_GROUP_HINT})" if unreadable else ")")
        else:
            self.problem = f"no gamepad found (among {len(paths)} input device(s): {', '.join(seen)})"
