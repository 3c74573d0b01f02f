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
    if args.plot:  # fail now, not after the drive
        from ..sim.visualize import ensure_parent_dir

        ensure_parent_dir(args.plot)
    specs = drive_graph(**graph_args)
    until = None
    if args.laps:
        until = lambda monitor: monitor.laps_completed >= args.laps  # noqa: E731
    summary = run_graph(specs, duration_s=args.duration, params_file=args.params_file, until=until)
    if args.json:
        print(json.dumps(summary))
    else:
        lat = summary["e2e_latency_ms"]
        if summary["laps_completed"] is not None:
            print(f"laps {summary['laps_completed']}, off-track events {summary['off_track_events']}")
        latency = (f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms" if lat["p50"] is not None else "none measured")
        print(f"frames {summary['frames']} reached the model, {summary['dropped_frames']} dropped; "
              f"camera capture -> control command latency {latency}")
        print(f"stopped: {summary['stopped_because']}")
        if args.plot and summary["laps_completed"] is not None:
            print(f"plot of the driven path: {args.plot}")
    return 0
