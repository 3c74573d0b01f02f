"""``jetracer-trt sim``: drive the simulated car with a model (eval), follow a walking person (follow), record
expert data (collect), time the renderer."""
from __future__ import annotations

import argparse
import json
import sys
import time

from ..errors import JetracerError

COLLECT_TASKS = ("road_following", "pose")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sim", help="simulated JetRacer: evaluate a model, follow a walking person, collect training data, benchmark "
        "the renderer",
        description="A simulated JetRacer on a taped track generated from a seed, seen through a wide-angle camera.",
    )
    commands = parser.add_subparsers(dest="sim_command", metavar="<command>")
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])

    ev = commands.add_parser(
        "eval", help="drive the simulated car with a model and report laps, off-track events, error and speed",
        description="Closed-loop drive: camera frame -> model (ONNX Runtime) -> control law -> car, at the camera "
                    "rate with one frame of delay. Off-track (car centre beyond half the road width) puts the car "
                    "back on the road and counts an event.",
    )
    ev.add_argument("--model", help="model file (default: the shipped models/road_following.onnx; with backend auto, "
                    "the converted files beside it are found)")
    ev.add_argument("--backend", default="auto", help="inference backend: auto (a valid TensorRT engine, else the "
                    "CUDA GPU, else the CPU, with the INT8 model when there is one), onnxruntime, torch, tensorrt or "
                    "torch2trt (default: auto)")
    ev.add_argument("--precision", choices=("fp32", "fp16"),
                    help="precision for a backend that picks it at load (torch on a CUDA GPU: default fp16); "
                    "the other backends run the precision their model file was converted to")
    ev.add_argument("--track-seed", type=int, default=1001, help="which generated track to drive (default: 1001)")
    ev.add_argument("--laps", type=int, default=3, help="laps to drive (default: 3)")
    ev.add_argument("--randomize", action="store_true", help="domain randomization: floor, tape, light, clutter, "
                    "camera mount, blur, noise, JPEG")
    ev.add_argument("--run-seed", type=int, default=0, help="seed of the randomization and noise draws (default: 0)")
    ev.add_argument("--threads", type=int, default=0, help="CPU threads for inference (default: 0 = all cores)")
    ev.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a control or safety setting of config/control.yaml (profile sim) for this run, "
                    "e.g. --set throttle=0.8; repeatable")
    ev.add_argument("--params", metavar="FILE.yaml", help="control settings from a YAML file: a mapping of names "
                    "to values, or a ROS 2 parameters file's control section; --set wins over it")
    ev.add_argument("--json", action="store_true", help="print exactly one JSON object with the metrics on stdout")
    ev.add_argument("--plot", metavar="OUT.png", help="draw the track and the driven path, coloured by error")
    ev.add_argument("--video", metavar="OUT.mp4", help="record the camera view with the predicted target drawn")
    ev.set_defaults(func=run_eval)

    fo = commands.add_parser(
        "follow", help="follow a walking person with the pose model (or the oracle) and report distances and losses",
        description="Closed-loop follow-me: a person walks along the road ahead of the car (speed changes and "
                    "pauses from --seed); each camera frame -> people (the pose model through PoseEstimator, or "
                    "--oracle: ideal maps of the person's true keypoints, then the same parser) -> FollowMe -> the "
                    "control law and safety governor (profile sim) -> the car, with one frame of delay, in simulated "
                    "time (a slow model makes the run slow, not the car late). Reports the time following and lost, "
                    "the car-to-person distance (min / mean / max), collisions (nearer than walker.collision_m of "
                    "config/sim.yaml) and the person's lead along the road.",
    )
    source = fo.add_mutually_exclusive_group()
    source.add_argument("--model", help="pose model file (default: the shipped models/pose_small.onnx)")
    source.add_argument("--oracle", action="store_true", help="no network: the maps a perfect model would give "
                        "(the pose trainer's targets of the person's true keypoints), parsed as the model's are")
    fo.add_argument("--backend", default="onnxruntime", help="inference backend for --model: onnxruntime, torch, "
                    "tensorrt or torch2trt (default: onnxruntime)")
    fo.add_argument("--seed", type=int, default=None, help="the walk and the person (default: walker.seed of "
                    "config/sim.yaml)")
    fo.add_argument("--seconds", type=float, default=30.0, help="simulated seconds to follow (default: 30)")
    fo.add_argument("--track-seed", type=int, default=1001, help="which generated track (default: 1001)")
    fo.add_argument("--randomize", action="store_true", help="domain randomization of the floor, light and camera")
    fo.add_argument("--run-seed", type=int, default=0, help="seed of the randomization draws (default: 0)")
    fo.add_argument("--rate", type=float, help="camera rate in Hz (default: rate_hz of config/sim.yaml); a lower "
                    "rate makes a slow model's run shorter")
    fo.add_argument("--threads", type=int, default=0, help="CPU threads for inference (default: 0 = all cores)")
    fo.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a follow-me setting (config/follow.yaml, e.g. stop_size=0.12), a control or "
                    "safety setting (config/control.yaml, profile sim) or a walker setting (walker.NAME, e.g. "
                    "walker.speed_mps=1.0); repeatable")
    fo.add_argument("--params", metavar="FILE.yaml", help="settings from a YAML file, the names --set takes; "
                    "--set wins over it")
    fo.add_argument("--json", action="store_true", help="print exactly one JSON object with the metrics on stdout")
    fo.add_argument("--video", metavar="OUT.mp4", help="record the camera view with the follow target drawn")
    fo.set_defaults(func=run_follow)

    co = commands.add_parser(
        "collect", help="record expert-driven, labelled frames into a dataset (or synthetic people: --task pose)",
        description="The expert (the control law on the true road target) drives with injected steering noise, so "
                    "the data shows recoveries; every frame is labelled with the correct target. Appends to an "
                    "existing dataset. Track seeds 1000 and above are reserved for evaluation. With --task pose: "
                    "synthetic scenes of articulated people (one per scene seed: 224x224 frames, each person's 18 "
                    "keypoints with their visibility, jetracer_trt/pose/data.py) into a pose dataset for "
                    "`jetracer-trt train --task pose`; scene seeds from 1,000,000 are held out for evaluation.",
    )
    co.add_argument("--task", choices=COLLECT_TASKS, default=COLLECT_TASKS[0],
                    help="road_following (expert driving, the default) or pose (synthetic people)")
    co.add_argument("--out", required=True, metavar="DIR", help="dataset folder (created, or appended to)")
    co.add_argument("--frames", type=int, required=True, help="frames (scenes, with --task pose) to record")
    co.add_argument("--seeds", help="track seeds, or scene seeds with --task pose: N, A-B or a list like 1,4,10-12 "
                    "(default: 0-99; pose: the scenes after the dataset's last)")
    co.add_argument("--randomize", action="store_true", help="domain randomization for every episode (road "
                    "following; pose scenes are always randomized)")
    co.add_argument("--episode-frames", type=int, help="frames per episode before the next track (road following; "
                    "default: 300)")
    co.add_argument("--workers", type=int, default=1, help="parallel processes (default: 1)")
    co.set_defaults(func=run_collect)

    be = commands.add_parser("bench", help="time the renderer on one core",
                             description="Renders frames along a lap on one core and prints frames per second.")
    be.add_argument("--frames", type=int, default=2000)
    be.add_argument("--randomize", action="store_true", help="include the per-frame camera effects")
    be.add_argument("--track-seed", type=int, default=1001)
    be.add_argument("--json", action="store_true", help="print one JSON object")
    be.set_defaults(func=run_bench)


def run_eval(args: argparse.Namespace) -> int:
    from ..config import default_model_path
    from ..contract import ROAD_FOLLOWING
    from ..engines import create_engine
    from ..safety import SafetyGovernor
    from ..sim import SimWorld, drive
    from ..sim.visualize import RunVideo, ensure_parent_dir, plot_run

    if args.laps < 1:
        raise JetracerError("--laps must be at least 1")
    if args.plot:  # fail before driving, not after
        ensure_parent_dir(args.plot)
    controller = SafetyGovernor.from_config("sim", control_overrides(args.params, args.set))
    model = args.model or default_model_path()
    options = {"precision": args.precision} if args.precision else {}
    engine = create_engine(args.backend, model, task=ROAD_FOLLOWING, threads=args.threads, **options)
    engine.warmup()
    world = SimWorld(args.track_seed, randomize=args.randomize, run_seed=args.run_seed)
    video = RunVideo(args.video, world.rate_hz) if args.video else None
    bar = _progress(args.laps, "laps", quiet=args.json)
    laps_seen = [0]

    def progress(w):
        if w.laps_completed > laps_seen[0]:
            bar.update(w.laps_completed - laps_seen[0])
            laps_seen[0] = w.laps_completed

    try:
        metrics = drive(world, engine.infer, controller, args.laps, on_frame=video, progress=progress)
    finally:
        bar.close()
        if video:
            video.close()
    if args.plot:
        plot_run(world, args.plot, title=f"track seed {args.track_seed}{' randomized' if args.randomize else ''}: "
                 f"{metrics['laps_completed']} laps, {metrics['off_track_events']} off-track")
    if args.json:
        print(json.dumps({**metrics, "engine": engine.describe(), "control": controller.settings()}))
        return 0
    inf = metrics["inference_ms"]
    print(f"track seed {args.track_seed}{' (randomized)' if args.randomize else ''}, model {engine.model_path}")
    print(f"  laps {metrics['laps_completed']}/{args.laps}, off-track events {metrics['off_track_events']}, "
          f"|cross-track error| mean {metrics['mean_abs_cte_m']:.3f} m max {metrics['max_abs_cte_m']:.3f} m")
    print(f"  mean speed {metrics['mean_speed_mps']:.2f} m/s over {metrics['frames']} frames, "
          f"inference p50 {inf['p50']:.1f} ms p99 {inf['p99']:.1f} ms ({engine.describe()})")
    if args.plot:
        print(f"  plot: {args.plot}")
    if args.video:
        print(f"  video: {args.video}")
    return 0


def run_follow(args: argparse.Namespace) -> int:
    import math

    from ..config import default_model_path, load_config
    from ..contract import POSE
    from ..follow import FOLLOW_SETTINGS, FollowMe, FollowSettings
    from ..pose.estimator import PoseEstimator
    from ..safety import SafetyGovernor
    from ..sim import SimWorld, follow
    from ..sim.visualize import RunVideo
    from ..sim.walker import OracleEngine, WalkerSettings

    if not (math.isfinite(args.seconds) and args.seconds > 0):
        raise JetracerError(f"--seconds must be a positive number, got {args.seconds}")
    if args.rate is not None and not (math.isfinite(args.rate) and 1 <= args.rate <= 120):
        raise JetracerError(f"--rate must be in [1, 120] Hz, got {args.rate}")
    settings = control_overrides(args.params, args.set)
    walker_overrides = {k.partition(".")[2]: settings.pop(k) for k in list(settings) if k.startswith("walker.")}
    follow_overrides = {k: settings.pop(k) for k in list(settings) if k in FOLLOW_SETTINGS}
    cfg = load_config("sim")
    if args.rate is not None:
        cfg["rate_hz"] = args.rate
    walker = WalkerSettings.from_config(cfg["walker"], **{**walker_overrides, "seed": args.seed})
    follow_me = FollowMe(FollowSettings.from_config(follow_overrides))
    controller = SafetyGovernor.from_config("sim", settings)
    world = SimWorld(args.track_seed, randomize=args.randomize, run_seed=args.run_seed, cfg=cfg, walker=walker)
    if args.oracle:
        engine = OracleEngine(world)
    else:
        from ..engines import create_engine

        model = args.model or default_model_path(POSE)
        if not args.model and not model.is_file():
            raise JetracerError(f"no pose model at {model}: give --model, or --oracle to run without one "
                                "(models/POSE_MODEL_CARD.md makes the model)")
        engine = create_engine(args.backend, str(model), task=POSE, threads=args.threads)
        engine.warmup()
    estimator = PoseEstimator(engine)
    video = RunVideo(args.video, world.rate_hz) if args.video else None
    frames = int(round(args.seconds * world.rate_hz))
    bar = _progress(frames, "frames", quiet=args.json)
    try:
        metrics = follow(world, estimator.people, follow_me, controller, args.seconds, on_frame=video,
                         progress=lambda w: bar.update(1))
    finally:
        bar.close()
        if video:
            video.close()
    if args.json:
        print(json.dumps({**metrics, "engine": engine.describe(), "follow": follow_me.settings.__dict__,
                          "walker": walker.__dict__, "control": controller.settings()}))
        return 0
    pm = metrics["people_ms"]
    print(f"track seed {args.track_seed}, walker seed {walker.seed}, {metrics['seconds']:.1f} s at "
          f"{world.rate_hz:g} Hz, {engine.describe()}")
    print(f"  following {metrics['following_s']:.1f} s, lost {metrics['lost_s']:.1f} s ({metrics['lost_events']} "
          f"times), collisions {metrics['collisions']}")
    print(f"  distance to the person min {metrics['walker_distance_min_m']:.2f} m, mean "
          f"{metrics['walker_distance_mean_m']:.2f} m, max {metrics['walker_distance_max_m']:.2f} m; their lead "
          f"along the road mean {metrics['walker_lead_mean_m']:.2f} m")
    print(f"  the car drove {metrics['distance_driven_m']:.1f} m, the person walked {metrics['walker_walked_m']:.1f} m;"
          f" people per frame p50 {pm['p50']:.1f} ms p99 {pm['p99']:.1f} ms")
    if args.video:
        print(f"  video: {args.video}")
    return 0


def control_overrides(params_file: str | None, assignments: list[str]) -> dict:
    """Settings from ``--params FILE.yaml`` and then ``--set NAME=VALUE`` (names and ranges are checked by the
    controller)."""
    overrides: dict = {}
    if params_file:
        import yaml

        try:
            with open(params_file, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise JetracerError(f"cannot read --params {params_file}: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("control"), dict):  # a ROS 2 parameters file
            data = data["control"].get("ros__parameters", data["control"])
        if not isinstance(data, dict):
            raise JetracerError(f"--params {params_file} must hold a mapping of setting names to values")
        overrides.update(data)
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise JetracerError(f"--set takes NAME=VALUE, got {item!r}")
        overrides[name.strip()] = value.strip()
    return overrides


def run_collect(args: argparse.Namespace) -> int:
    from ..sim.track import parse_seeds

    if args.task == "pose":
        return run_collect_pose(args)
    from ..sim.collect import collect

    seeds = parse_seeds(args.seeds or "0-99")
    bar = _progress(args.frames, "frames")
    try:
        written = collect(args.out, seeds, args.frames, args.randomize, episode_frames=args.episode_frames or 300,
                          workers=args.workers, on_progress=bar.update)
    finally:
        bar.close()
    print(f"recorded {written} frames from {len(seeds)} track seed(s) into {args.out}")
    return 0


def run_collect_pose(args: argparse.Namespace) -> int:
    """``sim collect --task pose``: the scenes of ``--frames`` seeds into a pose dataset."""
    from ..pose.data import collect_pose, next_seed
    from ..sim.track import parse_seeds

    for flag, given in (("--randomize", args.randomize), ("--episode-frames", args.episode_frames is not None)):
        if given:
            raise JetracerError(f"{flag} is for road-following data; pose scenes are always randomized")
    if args.frames < 1:
        raise JetracerError("--frames must be a positive number")
    if args.seeds:
        seeds = parse_seeds(args.seeds)
        if len(seeds) < args.frames:
            raise JetracerError(f"--seeds names {len(seeds)} scenes, fewer than the {args.frames} frames asked for")
        seeds = seeds[:args.frames]
    else:
        first = next_seed(args.out)
        seeds = list(range(first, first + args.frames))
    bar = _progress(len(seeds), "scenes")
    try:
        written = collect_pose(args.out, seeds, workers=args.workers, on_progress=bar.update)
    finally:
        bar.close()
    print(f"recorded {written} scenes (seeds {seeds[0]}..{seeds[-1]}) into {args.out}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from ..sim import SimWorld

    cv2.setNumThreads(1)  # the claim is per core
    world = SimWorld(args.track_seed, randomize=args.randomize)
    track = world.track
    step = max(1, len(track.points) // args.frames)
    world.observe()  # first call warms caches
    start = time.perf_counter()
    for k in range(args.frames):
        i = (k * step) % len(track.points)
        world.car.state.x, world.car.state.y = track.points[i]
        world.car.state.yaw = float(np.arctan2(track.tangents[i, 1], track.tangents[i, 0]))
        world.observe()
    elapsed = time.perf_counter() - start
    result = {"frames": args.frames, "fps": args.frames / elapsed, "ms_per_frame": 1e3 * elapsed / args.frames,
              "randomize": bool(args.randomize), "threads": 1}
    print(json.dumps(result) if args.json else
          f"rendered {args.frames} frames of {world.renderer.camera.width}x{world.renderer.camera.height} in "
          f"{elapsed:.2f} s on one core: {result['fps']:.0f} frames/s ({result['ms_per_frame']:.2f} ms/frame)")
    return 0


def _progress(total: int, unit: str, quiet: bool = False):
    from tqdm import tqdm

    return tqdm(total=total, unit=f" {unit}", file=sys.stderr, disable=quiet or None, dynamic_ncols=True)
