"""Gamepad mappings: which evdev codes of a pad are the canonical axes and buttons (``layout``), per pad model and
driver, read from ``config/gamepads.yaml`` and the user's own file (``user_file()``).

The same pad reports different codes under different drivers and modes (the F710's right stick is ABS_RX/ABS_RY in
XInput mode, ABS_Z/ABS_RZ in DirectInput mode), so a mapping is chosen per device, never by axis index::

    mappings:
      my_pad:
        description: what it is, which switch or driver
        extends: xbox            # optional: start from that mapping's axes and buttons
        match:
          names: ["My Pad*"]     # the evdev device name, a case-insensitive shell pattern
          ids: ["1234:5678"]     # vendor:product in hex, patterns allowed ("2dc8:*")
        axes:
          steering: {code: ABS_X, invert: false, deadzone: 0.06, expo: 0.3}
          throttle: {code: ABS_RY, invert: true}          # forward must come out positive
        buttons:
          deadman: BTN_TL                                 # a code, or a list: held when any is held
          estop: {axis: ABS_RZ, above: 0.5}               # or an axis past a fraction of its travel

Codes are evdev names (``ABS_*``, ``BTN_*``, ``KEY_*``) or the numbers ``jetracer-trt joy test`` prints. An axis
spec may also set ``min``/``max`` for a pad that reports a wrong range. A device gets the first mapping whose
name or id matches *and* whose codes the device has (every axis, at least one code per button): that is what
keeps a pad's motion-sensor and touchpad devices, which share its name and ids, from being taken for the pad.
Order: the user file's new mappings, then the shipped ones. A user mapping with a shipped name is merged onto it
(give only what changes); ``extends`` copies another mapping's axes and buttons, never its ``match``.

Code names are resolved through ``evdev.ecodes``, imported here only when a file is read.
"""
from __future__ import annotations

import copy
import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import share_dir
from ..errors import JetracerError
from . import layout

INSTALL_HINT = "pip install 'jetracer_trt[teleop]' (or: pip install evdev)"
REQUIRED_ROLES = ("steering", "throttle", "deadman")
MAPPING_KEYS = {"description", "extends", "match", "axes", "buttons"}
MATCH_KEYS = {"names", "ids"}
AXIS_KEYS = {"code", "invert", "deadzone", "expo", "min", "max"}
BUTTON_AXIS_KEYS = {"axis", "invert", "above"}
ABS_MAX, KEY_MAX = 0x3F, 0x2FF
DEFAULT_DEADZONE = 0.05
# names of the first code of a range, never the name a pad's button is known by
RANGE_ALIASES = frozenset({"BTN_MISC", "BTN_MOUSE", "BTN_JOYSTICK", "BTN_GAMEPAD", "BTN_DIGI", "BTN_WHEEL"})


def ecodes():
    """``evdev.ecodes``, or one clear error when evdev is not installed."""
    try:
        from evdev import ecodes as codes
    except ImportError as exc:
        raise JetracerError(f"the gamepad needs the evdev package: {INSTALL_HINT} ({exc})") from None
    return codes


def code_name(event_type: int, code: int) -> str:
    """``BTN_NORTH/BTN_X(307)``: every name evdev has for the code (aliases show what a driver may call it) and
    the number."""
    names = ecodes().bytype.get(event_type, {}).get(code, "?")
    if not isinstance(names, str):
        names = "/".join(n for n in names if n not in RANGE_ALIASES)
    return f"{names}({code})"


@dataclass(frozen=True)
class AxisSpec:
    code: int
    invert: bool = False
    deadzone: float = DEFAULT_DEADZONE
    expo: float = 0.0
    min: int | None = None  # overrides the device's absinfo
    max: int | None = None


@dataclass(frozen=True)
class ButtonSpec:
    """Held when any of ``keys`` is held, or (``axis`` set) when the axis is past ``above`` of its travel from rest
    (min, or max with ``invert``)."""

    keys: tuple[int, ...] = ()
    axis: int | None = None
    invert: bool = False
    above: float = 0.5


@dataclass(frozen=True)
class GamepadMapping:
    name: str
    description: str = ""
    names: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    axes: dict[str, AxisSpec] = field(default_factory=dict)
    buttons: dict[str, ButtonSpec] = field(default_factory=dict)
    source: str = ""

    def abs_codes(self) -> set[int]:
        codes = {spec.code for spec in self.axes.values()}
        return codes | {b.axis for b in self.buttons.values() if b.axis is not None}

    def matches(self, device_name: str, vendor: int, product: int) -> bool:
        """The device's name or vendor:product fits one of the patterns."""
        ident = f"{vendor:04x}:{product:04x}"
        return (any(fnmatch.fnmatchcase(device_name.lower(), p.lower()) for p in self.names)
                or any(fnmatch.fnmatchcase(ident, p.lower()) for p in self.ids))

    def missing(self, abs_codes, key_codes) -> list[str]:
        """What the mapping uses that a device with these codes lacks (empty: the mapping fits it)."""
        abs_codes, key_codes = set(abs_codes), set(key_codes)
        lacks = [f"{role} axis {spec.code}" for role, spec in self.axes.items() if spec.code not in abs_codes]
        for role, spec in self.buttons.items():
            if spec.axis is not None and spec.axis not in abs_codes:
                lacks.append(f"{role} axis {spec.axis}")
            elif spec.keys and not key_codes & set(spec.keys):
                lacks.append(f"{role} button {'/'.join(map(str, spec.keys))}")
        return lacks


class GamepadMappings:
    """The mappings in the order devices are matched against them, and the files they came from."""

    def __init__(self, mappings: list[GamepadMapping], files: list[str]):
        self.mappings = list(mappings)
        self.files = list(files)

    def __iter__(self):
        return iter(self.mappings)

    def __len__(self) -> int:
        return len(self.mappings)

    def get(self, name: str) -> GamepadMapping:
        for mapping in self.mappings:
            if mapping.name == name:
                return mapping
        raise JetracerError(f"no gamepad mapping named {name!r} in {', '.join(self.files)}; known: "
                            f"{', '.join(m.name for m in self.mappings)}")

    def select(self, device_name: str, vendor: int, product: int, abs_codes, key_codes) -> GamepadMapping | None:
        """The first mapping that matches the device and fits its codes."""
        for mapping in self.mappings:
            if mapping.matches(device_name, vendor, product) and not mapping.missing(abs_codes, key_codes):
                return mapping
        return None


def user_file() -> Path:
    """Where a user's own mappings live: ``$XDG_CONFIG_HOME/jetracer_trt/gamepads.yaml`` (``~/.config/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "jetracer_trt" / "gamepads.yaml"


def shipped_file() -> Path:
    return share_dir() / "config" / "gamepads.yaml"


def load_mappings(user_path: str | os.PathLike | None = None) -> GamepadMappings:
    """The shipped mappings with the user's file on top: ``user_path`` (which must exist), or the default
    ``user_file()`` when it exists."""
    layers = [(str(shipped_file()), _read(shipped_file()))]
    if user_path:
        if not Path(user_path).is_file():
            raise JetracerError(f"gamepads file not found: {user_path}")
        layers.append((str(user_path), _read(Path(user_path))))
    elif user_file().is_file():
        layers.append((str(user_file()), _read(user_file())))
    return parse_layers(layers)


def _read(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise JetracerError(f"cannot read gamepads file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise JetracerError(f"gamepads file {path} is not valid YAML{where}: "
                            f"{getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("mappings", {}), dict) or set(data) - {"mappings"}:
        raise JetracerError(f"gamepads file {path} must hold one key, `mappings:`, a mapping of names to gamepads")
    return data.get("mappings") or {}


def parse_layers(layers: list[tuple[str, dict]]) -> GamepadMappings:
    """Mappings from (file, ``mappings`` dict) layers, later layers on top: a known name is merged onto the earlier
    entry in place, a new name goes before every earlier layer's mappings."""
    order: list[str] = []
    raw: dict[str, tuple[dict, str]] = {}
    for source, entries in layers:
        added = []
        for name, entry in entries.items():
            name = str(name)
            where = f"{source}: mapping {name!r}"
            if not isinstance(entry, dict):
                raise JetracerError(f"{where} must be a mapping with match, axes and buttons")
            _no_unknown_keys(where, entry, MAPPING_KEYS)
            entry = _shorthands_expanded(entry)
            if name in raw:
                raw[name] = (_merged(raw[name][0], entry), source)
            else:
                raw[name] = (entry, source)
                added.append(name)
        order = added + order
    mappings = [_parse(name, _with_bases(name, raw, ()), raw[name][1]) for name in order]
    return GamepadMappings(mappings, [source for source, _ in layers])


def _with_bases(name: str, raw: dict, chain: tuple[str, ...]) -> dict:
    entry, source = raw[name]
    base_name = entry.get("extends")
    if base_name is None:
        return entry
    if base_name not in raw:
        raise JetracerError(f"{source}: mapping {name!r} extends {base_name!r}, which no gamepads file defines")
    if base_name in chain + (name,):
        raise JetracerError(f"{source}: mapping {name!r}: `extends` loops through {' -> '.join(chain + (name,))}")
    base = _with_bases(base_name, raw, chain + (name,))
    inherited = {key: base[key] for key in ("axes", "buttons") if key in base}
    return _merged(inherited, {k: v for k, v in entry.items() if k != "extends"})


def _merged(base: dict, top: dict) -> dict:
    """``top`` over ``base``: dicts merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def _shorthands_expanded(entry: dict) -> dict:
    """``steering: ABS_X`` means ``steering: {code: ABS_X}``, so a later layer can merge ``{expo: 0.5}`` onto it."""
    axes = entry.get("axes")
    if isinstance(axes, dict):
        entry = dict(entry, axes={role: spec if isinstance(spec, dict) else {"code": spec}
                                  for role, spec in axes.items()})
    return entry


def _no_unknown_keys(where: str, entry: dict, known: set[str]) -> None:
    unknown = sorted(str(k) for k in set(entry) - known)
    if unknown:
        raise JetracerError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def _parse(name: str, entry: dict, source: str) -> GamepadMapping:
    where = f"{source}: mapping {name!r}"
    match = entry.get("match") or {}
    if not isinstance(match, dict):
        raise JetracerError(f"{where}: `match` must hold `names` and/or `ids`")
    _no_unknown_keys(f"{where}: match", match, MATCH_KEYS)
    names, ids = _strings(where, match, "names"), _strings(where, match, "ids")
    if not names and not ids:
        raise JetracerError(f"{where}: `match` needs at least one of `names` (device name patterns) or `ids`")
    axes_raw, buttons_raw = entry.get("axes") or {}, entry.get("buttons") or {}
    if not isinstance(axes_raw, dict) or not isinstance(buttons_raw, dict):
        raise JetracerError(f"{where}: `axes` and `buttons` must map roles to codes")
    _no_unknown_keys(f"{where}: axes", axes_raw, set(layout.AXES))
    _no_unknown_keys(f"{where}: buttons", buttons_raw, set(layout.BUTTONS))
    axes = {role: _axis(f"{where}: axes.{role}", spec) for role, spec in axes_raw.items()}
    buttons = {role: _button(f"{where}: buttons.{role}", spec) for role, spec in buttons_raw.items()}
    lacking = [role for role in REQUIRED_ROLES if role not in axes and role not in buttons]
    if lacking:
        raise JetracerError(f"{where}: needs {', '.join(lacking)} (steering and throttle axes, a deadman button)")
    return GamepadMapping(name=name, description=str(entry.get("description", "")), names=names, ids=ids,
                          axes=axes, buttons=buttons, source=source)


def _strings(where: str, match: dict, key: str) -> tuple[str, ...]:
    value = match.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise JetracerError(f"{where}: match.{key} must be a list of strings")
    return tuple(value)


def _axis(where: str, spec: dict) -> AxisSpec:
    _no_unknown_keys(where, spec, AXIS_KEYS)
    if "code" not in spec:
        raise JetracerError(f"{where}: needs `code` (an ABS_* name or number)")
    deadzone = _number(where, spec, "deadzone", DEFAULT_DEADZONE, 0.0, 0.9)
    expo = _number(where, spec, "expo", 0.0, 0.0, 1.0)
    low, high = spec.get("min"), spec.get("max")
    if (low is None) != (high is None) or (low is not None and not (isinstance(low, int) and isinstance(high, int)
                                                                      and low < high)):
        raise JetracerError(f"{where}: `min` and `max` go together, as integers with min < max")
    return AxisSpec(code=resolve_code(where, spec["code"], "axis"), invert=_flag(where, spec), deadzone=deadzone,
                    expo=expo, min=low, max=high)


def _button(where: str, spec) -> ButtonSpec:
    if isinstance(spec, dict):
        _no_unknown_keys(where, spec, BUTTON_AXIS_KEYS)
        if "axis" not in spec:
            raise JetracerError(f"{where}: a button from an axis needs `axis` (and `above`, a fraction of travel)")
        return ButtonSpec(axis=resolve_code(where, spec["axis"], "axis"), invert=_flag(where, spec),
                          above=_number(where, spec, "above", 0.5, 0.01, 0.99))
    keys = spec if isinstance(spec, list) else [spec]
    if not keys:
        raise JetracerError(f"{where}: needs at least one button code")
    return ButtonSpec(keys=tuple(resolve_code(where, k, "button") for k in keys))


def _number(where: str, spec: dict, key: str, default: float, low: float, high: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise JetracerError(f"{where}: {key} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _flag(where: str, spec: dict) -> bool:
    value = spec.get("invert", False)
    if not isinstance(value, bool):
        raise JetracerError(f"{where}: invert must be true or false, got {value!r}")
    return value


def resolve_code(where: str, value, kind: str) -> int:
    """An evdev code from its name (``ABS_RY``, ``BTN_TL``, ``KEY_SPACE``) or number; ``kind`` "axis" or "button"."""
    prefixes, highest = (("ABS_",), ABS_MAX) if kind == "axis" else (("BTN_", "KEY_"), KEY_MAX)
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= highest:
            return value
        raise JetracerError(f"{where}: {kind} code {value} is out of range 0..{highest}")
    if isinstance(value, str):
        code = ecodes().ecodes.get(value.strip().upper())
        if code is not None and value.strip().upper().startswith(prefixes):
            return int(code)
    raise JetracerError(f"{where}: {value!r} is not an evdev {kind} code (a name such as "
                        f"{'ABS_X' if kind == 'axis' else 'BTN_TL'}, or the number `jetracer-trt joy test` prints)")
