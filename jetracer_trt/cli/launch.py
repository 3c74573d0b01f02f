"""``jetracer-trt launch drive``: the drive graph as separate processes, without a ROS 2 install (pip wheels only)."""
from __future__ import annotations

import argparse
import json

from ..graph import DRIVE_ARGUMENTS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "launch", help="run the ROS 2 drive graph without a ROS 2 install",
        description="Runs the same graph as `ros2 launch jetracer_trt drive.launch.py`, one process per node, "
                    "and stops it cleanly (car in neutral) on Ctrl-C.")
    commands = parser.add_subparsers(dest="launch_command", metavar="<graph>")
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])
    drive = commands.add_parser("drive", help="camera -> inference -> control (default: the simulator)",
                                description="The drive graph; options are the launch file's arguments.")
    for name, (default, description) in DRIVE_ARGUMENTS.items():
        drive.add_argument(f"--{name.replace('_', '-')}", default=default, help=f"{description} (default: {default!r})")
    drive.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    drive.add_argument("--laps", type=int, help="stop once the simulated car has completed this many laps")
    drive.add_argument("--json", action="store_true", help="print one JSON object summing the run up at the end")
    drive.set_defaults(func=run_drive)


def run_drive(args: argparse.Namespace) -> int:
    from ..graph import drive_graph
    from ..launcher import run_graph

    graph_args = {name: getattr(args, name) for name in DRIVE_ARGUMENTS if name != "params_file"}
    specs = drive_graph(**graph_args)
    until = None
    if args.laps:
        until = lambda monitor: monitor.laps_completed >= args.laps  # noqa: E731
    summary = run_graph(specs, duration_s=args.duration, params_file=args.params_file, until=until)
    if args.json:
        print(json.dumps(summary))
    else:
        lat = summary["e2e_latency_ms"]
        print(f"stopped: {summary['stopped_because']}; frames {summary['frames']}, dropped {summary['dropped_frames']}, "
              f"capture->command latency p50 {lat['p50']} ms p99 {lat['p99']} ms, laps {summary['laps_completed']}, "
              f"off-track events {summary['off_track_events']}")
    return 0
