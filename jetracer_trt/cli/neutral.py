"""``jetracer-trt neutral``: the car's servo board to neutral from a process of its own, the last resort when a
driving program died without it. The work is ``jetracer_trt.actuators.neutral``; this module only registers it."""
from __future__ import annotations


def register(subparsers) -> None:
    """Adds the ``neutral`` verb."""
    from ..actuators.neutral import DESCRIPTION, add_arguments, run

    parser = subparsers.add_parser(
        "neutral", help="set the car's servo board to neutral (the last resort after a crash)", description=DESCRIPTION
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
