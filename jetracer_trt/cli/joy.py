"""``jetracer-trt joy test``: the gamepad this machine finds, which mapping it gets, and live lines of its raw evdev
codes next to the canonical values the teleop node would publish: what a new pad's mapping is written from."""
from __future__ import annotations

import argparse
import sys
import time

from ..errors import JetracerError

DESCRIPTION = """\
Find the gamepad the teleop node would use and print its name, vendor:product, the mapping that matched and, for
every change, the raw evdev codes and values next to the mapped steering, throttle and buttons. To map a new pad:
move each stick and press each button, note the codes, and add a mapping to ~/.config/jetracer_trt/gamepads.yaml
(format and examples: config/gamepads.yaml). A pad that no mapping fits is shown with its raw codes only.
Stops on Ctrl-C or after --seconds. No pad: one line `error: no gamepad found (...)` and exit status 2."""


def register(subparsers) -> None:
    """Adds the ``joy`` verb and its ``test`` subcommand."""
    parser = subparsers.add_parser("joy", help="the gamepad: see its codes and what its mapping makes of them",
                                   description="The gamepad the teleop node reads (needs evdev: "
                                               "pip install 'jetracer_trt[teleop]').")
    commands = parser.add_subparsers(dest="joy_command", metavar="<command>")
    parser.set_defaults(func=lambda args: _print_help(parser))
    test = commands.add_parser("test", help="print the pad's live raw codes and mapped values", description=DESCRIPTION,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    test.add_argument("--device", default="", metavar="PATH|NAME",
                      help="/dev/input/eventN (or a by-id link) or a device-name pattern (default: the first pad a "
                      "mapping fits, else the first pad)")
    test.add_argument("--mapping", default="", metavar="NAME",
                      help="use this mapping instead of the one chosen by name and ids")
    test.add_argument("--seconds", type=float, default=0.0, metavar="S",
                      help="stop after S seconds (default: at Ctrl-C)")
    test.add_argument("--gamepads-file", default="", metavar="FILE",
                      help="your mappings over config/gamepads.yaml (default: ~/.config/jetracer_trt/gamepads.yaml "
                      "when it exists)")
    test.set_defaults(func=run_test)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 1


class _Printer:
    """The link's log lines (lost, back again) as plain output lines; none while ``out`` is None."""

    def __init__(self, out):
        self.out = out

    def info(self, message: str) -> None:
        if self.out is not None:
            print(message, file=self.out, flush=True)

    warning = info


def mapped_text(state, mapping) -> str:
    if mapping is None:
        return "(no mapping)"
    from ..teleop.layout import BUTTONS

    buttons = " ".join(f"{name} {int(getattr(state, name))}" for name in BUTTONS)
    return f"steering {state.steering:+.2f} throttle {state.throttle:+.2f} | {buttons}"


def run_test(args: argparse.Namespace, out=None) -> int:
    from ..teleop.link import GamepadLink, device_codes, ids
    from ..teleop.mapper import EV_ABS, EV_KEY
    from ..teleop.mapping import code_name, load_mappings, user_file

    out = out or sys.stdout
    if args.seconds < 0:
        raise JetracerError(f"--seconds must be 0 (until Ctrl-C) or more, got {args.seconds:g}")
    link = GamepadLink(load_mappings(args.gamepads_file or None), device=args.device, mapping=args.mapping,
                       log=_Printer(None), require_mapping=False)
    if not link.connect():
        raise JetracerError(link.problem)
    link.log = _Printer(out)  # from here on: the pad lost, back again
    device, mapping = link.device, link.mapping
    print(f"gamepad: {device.name!r} ({ids(device)}) on {device.path}", file=out)
    if mapping is not None:
        print(f"mapping: {mapping.name} ({mapping.description}) from {mapping.source}", file=out)
    else:
        print(f"mapping: none fits this pad: raw codes only; write one into {args.gamepads_file or user_file()}",
              file=out)
    abs_codes, key_codes = device_codes(device)
    ranges = dict(device.capabilities().get(EV_ABS, []))
    print("axes: " + ", ".join(f"{code_name(EV_ABS, c)} {ranges[c].min}..{ranges[c].max}" for c in sorted(abs_codes)),
          file=out)
    print("buttons: " + ", ".join(code_name(EV_KEY, c) for c in sorted(key_codes)), file=out)
    print(f"now: {mapped_text(link.state, mapping)}", file=out)
    print("move each stick and press each button (Ctrl-C to stop)", file=out, flush=True)

    def on_frame(events, state) -> None:
        raw = " ".join(f"{code_name(e.type, e.code)}={e.value}" for e in events) or "(sync)"
        print(f"{raw} -> {mapped_text(state, link.mapping)}", file=out, flush=True)

    link.on_frame = on_frame
    end = time.monotonic() + args.seconds if args.seconds else float("inf")
    try:
        while (left := end - time.monotonic()) > 0:
            link.step(min(0.1, left))
    except KeyboardInterrupt:
        pass
    finally:
        link.close()
    return 0
