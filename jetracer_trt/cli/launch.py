"""``jetracer-trt launch drive|collect``: a graph as separate processes, without a ROS 2 install (pip wheels only)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import JetracerError
from ..graph import COLLECT_ARGUMENTS, DRIVE_ARGUMENTS

PRECEDENCE = ("Parameters, lowest first: each node's defaults, these options' defaults, the --params-file, the "
              "options given on the command line.")
STOPPING = ("Ctrl-C, SIGINT, SIGTERM, SIGHUP (closed terminal, dropped SSH session) or SIGQUIT stop the graph in "
            "order, car in neutral, and print the summary (exit status 0). A node that fails ends the run with "
            "`error: node NAME failed: REASON` (exit status 2); if the control node ended without setting neutral "
            "itself, the runner sets it.")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "launch", help="run a ROS 2 graph (drive, collect) without a ROS 2 install",
        description="Runs the same graph as `ros2 launch jetracer_trt drive.launch.py` (or collect.launch.py), one "
                    "process per node, and stops it cleanly (car in neutral) on Ctrl-C.")
    commands = parser.add_subparsers(dest="launch_command", metavar="<graph>")
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])
    drive = commands.add_parser("drive", help="camera -> inference -> control (default: the simulator)",
                                description=f"The drive graph; options are the launch file's arguments. "
                                            f"{PRECEDENCE} {STOPPING}")
    _add_arguments(drive, DRIVE_ARGUMENTS)
    drive.add_argument("--laps", type=int, help="stop once the simulated car has completed this many laps")
    drive.set_defaults(func=run_drive, graph="drive")
    collect = commands.add_parser(
        "collect", help="the drive graph plus recording and the car's web page (teleop by pad or page)",
        description=f"Records training samples on the car (or in the simulator): drive by hand with a gamepad or "
                    f"the web page's joystick, or click the road target on live frames; options are "
                    f"collect.launch.py's arguments. {PRECEDENCE} {STOPPING}")
    _add_arguments(collect, COLLECT_ARGUMENTS)
    collect.set_defaults(func=run_drive, graph="collect", laps=None)


def _add_arguments(parser, arguments: dict) -> None:
    for name, (default, description) in arguments.items():
        # None: not given, so a params file may set it (see graph.drive_graph)
        parser.add_argument(f"--{name.replace('_', '-')}", default=None, help=f"{description} (default: {default!r})")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)")
    parser.add_argument("--json", action="store_true", help="print one JSON object summing the run up at the end")


def _ms(pair: dict) -> str:
    if pair["p50"] is None:
        return "-"
    return f"{pair['p50']:.1f}/{pair['p99']:.1f}" if pair["p99"] is not None else f"{pair['p50']:.1f}/-"


def summary_text(summary: dict, plot: str | None = None) -> str:
    """The run in a few lines, for a person."""
    lines = []
    if summary["laps_completed"] is not None:
        lines.append(f"laps {summary['laps_completed']}, off-track events {summary['off_track_events']}")
    lat = summary["e2e_latency_ms"]
    latency = f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms" if lat["p50"] is not None else "none measured"
    dropped = summary["dropped_frames"]
    dropped_text = f"{dropped} dropped" if dropped is not None else "dropped frames not counted (no source count)"
    lines.append(f"frames {summary['frames']} reached the model, {dropped_text}; camera capture -> control command "
                 f"latency {latency}")
    stages = ", ".join(f"{name.replace('_to_', '->')} {_ms(pair)}" for name, pair in summary["stages_ms"].items())
    lines.append(f"per stage p50/p99 ms (whole run): {stages}; overhead {_ms(summary['overhead_ms'])}")
    pose = summary.get("pose")
    if pose is not None:
        lines.append(f"people found in {pose['frames_with_people']} frames, followed in {pose['following_frames']}; "
                     f"follow-me at the end: {pose['follow']}; parsing p50/p99 ms {_ms(pose['parse_ms'])}")
    walker = summary.get("walker")
    if walker is not None:
        lines.append(f"walker: car-to-walker distance min {walker['walker_distance_min_m']:.2f} m, mean "
                     f"{walker['walker_distance_mean_m']:.2f} m; {walker['collisions']:.0f} collisions; out of "
                     f"view {walker['walker_out_of_view_s']:.1f} s")
    if summary.get("samples_recorded") is not None:
        lines.append(f"samples recorded this session: {summary['samples_recorded']}")
    lines.append(f"stopped: {summary['stopped_because']}")
    if summary["neutral_by_supervisor"]:
        lines.append("the control node ended without its own neutral: the runner set neutral")
    if plot and summary["laps_completed"] is not None:
        lines.append(f"plot of the driven path: {plot}")
    return "\n".join(lines)


def _print(text: str) -> None:
    """Prints, or drops the text when the terminal is gone (SIGHUP from a dropped SSH session): the graph has
    stopped either way, and a failed write must not turn a clean stop into a traceback."""
    try:
        print(text, flush=True)
    except OSError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout for the rest of the process


def run_drive(args: argparse.Namespace) -> int:
    from ..graph import collect_graph, drive_graph, params_file_values
    from ..launcher import run_graph

    graph, arguments = (collect_graph, COLLECT_ARGUMENTS) if args.graph == "collect" else (drive_graph,
                                                                                           DRIVE_ARGUMENTS)
    given = {name: getattr(args, name) for name in arguments if name != "params_file"}
    params_file = args.params_file or ""
    params_file_values(params_file, "control")  # fail now on a missing or unreadable file, not in every node
    if args.plot:  # fail now, not after the drive
        from ..sim.visualize import ensure_parent_dir

        ensure_parent_dir(args.plot)
    specs = graph(**given)
    until = None
    if args.laps:
        until = lambda monitor: monitor.laps_completed >= args.laps  # noqa: E731
    summary = run_graph(specs, duration_s=args.duration, params_file=params_file, until=until)
    _print(json.dumps(summary) if args.json else summary_text(summary, args.plot))
    if summary["failed_nodes"]:
        raise JetracerError("; ".join(f"node {name} failed: {reason}"
                                      for name, reason in summary["failed_nodes"].items()))
    return 0
