"""The drive graph, described once: which nodes, with which parameters and remappings, for given launch arguments.

``launch/drive.launch.py`` (ROS 2 installs) and ``jetracer-trt launch drive`` (pip-only) both build from
``drive_graph``, so the two cannot drift apart.

**Parameter precedence**, lowest first: (1) each node's own default; (2) the launch arguments' defaults and what
follows from them (``profile`` and ``armed_at_start`` from ``source``, the actuator a source implies,
``use_sim_time``): ``NodeSpec.defaults``; (3) the ``params_file``; (4) launch arguments given explicitly:
``NodeSpec.parameters``. So ``sim: {ros__parameters: {track_seed: 1005}}`` in a params file drives track 1005
unless ``track_seed`` is also given on the command line, which then wins. Both runners apply the three layers in
that order (``--ros-args -p ... --params-file F -p ...``: rcl applies them as given, the last one wins).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import JetracerError

SOURCES = ("csi", "v4l2", "video", "folder", "sim")
TASKS = ("road_following", "pose")
ACTUATORS = ("pca9685", "sim", "none")
# what drives the car when `actuator` is not given: a live camera is on the car, a recording is replayed at a desk
DEFAULT_ACTUATOR = {"csi": "pca9685", "v4l2": "pca9685", "video": "none", "folder": "none", "sim": "sim"}

# launch argument -> (default, description); the launch file and the runner's options both come from here
DRIVE_ARGUMENTS = {
    "source": ("sim", "camera source: csi (Jetson CSI camera), v4l2 (USB), video (a file), folder (images) or sim"),
    "task": ("road_following", "what the car does: road_following (the road model steers) or pose (people on "
                               "pose/* topics, and follow-me: the car follows the chosen person; with source sim a "
                               "walking figure is placed on the floor)"),
    "model": ("", "ONNX model (empty: the task's shipped model, models/road_following.onnx or "
                  "models/pose_small.onnx)"),
    "backend": ("auto", "inference backend: auto (a valid TensorRT engine beside the model, else the CUDA GPU, else "
                        "the CPU), onnxruntime, torch, tensorrt or torch2trt"),
    "actuator": ("", "pca9685 (the car), sim or none (empty: sim with source sim, none with video or folder, else "
                     "pca9685)"),
    "params_file": ("", "ROS 2 parameters YAML for the nodes: its values win over the other arguments' defaults; "
                        "arguments given explicitly win over it"),
    "check": ("false", "wheels-up check: throttle forced to 0, target and steering logged"),
    "track_seed": ("1001", "simulator track seed (source sim)"),
    "randomize": ("false", "simulator domain randomization (source sim)"),
    "lockstep": ("false", "the simulator waits for each frame's command before the next frame: every frame is "
                          "used and the run does not depend on the machine's speed (source sim)"),
    "source_path": ("", "what the camera source reads: a V4L2 device (/dev/video0), a video file or an image "
                        "folder (source v4l2, video or folder)"),
    "build_engine": ("false", "on a machine with TensorRT: build the TensorRT engine beside the model when it is "
                              "missing or stale, verify it, then use it"),
    "plot": ("", "PNG file the simulator draws the driven path into when it stops (source sim)"),
}


@dataclass(frozen=True)
class NodeSpec:
    name: str                 # ROS node name
    executable: str           # console script, what launch_ros and `ros2 run` start
    module: str               # Python module with main(), what the pip-only runner starts
    parameters: dict = field(default_factory=dict)  # applied after the params file: launch arguments given
    remappings: tuple = ()
    defaults: dict = field(default_factory=dict)    # applied before the params file: launch-argument defaults

    def effective_parameters(self, file_values: dict | None = None) -> dict:
        """What the node runs with (of what the launch sets): defaults, then the params file's values for this
        node, then the explicit arguments."""
        return {**self.defaults, **(file_values or {}), **self.parameters}


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise JetracerError(f"expected true or false, got {value!r}")


def drive_graph(source=None, task=None, model=None, backend=None, actuator=None, check=None, track_seed=None,
                randomize=None, lockstep=None, source_path=None, plot=None, build_engine=None) -> list[NodeSpec]:
    """The nodes of the drive graph. Each argument is a launch argument's value, or None when it was not given:
    a given value goes to ``NodeSpec.parameters`` (wins over a params file), a default to ``NodeSpec.defaults``
    (a params file wins over it). The params file itself is applied by the caller, between the two."""
    given = {name: value for name, value in (
        ("source", source), ("task", task), ("model", model), ("backend", backend), ("actuator", actuator),
        ("check", check), ("track_seed", track_seed), ("randomize", randomize), ("lockstep", lockstep),
        ("source_path", source_path), ("plot", plot), ("build_engine", build_engine)) if value is not None}
    values = {name: given.get(name, default) for name, (default, _) in DRIVE_ARGUMENTS.items()}
    source = values["source"]
    if source not in SOURCES:
        raise JetracerError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if values["task"] not in TASKS:
        raise JetracerError(f"unknown task {values['task']!r}; choose one of {', '.join(TASKS)}")
    if values["actuator"] and values["actuator"] not in ACTUATORS:
        raise JetracerError(f"unknown actuator {values['actuator']!r}; choose one of {', '.join(ACTUATORS)}")
    try:
        values["track_seed"] = int(values["track_seed"])
    except ValueError:
        raise JetracerError(f"track_seed must be an integer, got {values['track_seed']!r}") from None
    for name in ("check", "randomize", "lockstep", "build_engine"):
        values[name] = _flag(values[name])

    def node(name: str, executable: str, arguments: dict, derived: dict) -> NodeSpec:
        """``arguments``: parameter -> launch argument it comes from; ``derived``: values that follow from the
        arguments (always defaults: the params file may change them)."""
        explicit = {param: values[arg] for param, arg in arguments.items() if arg in given}
        defaults = {**derived, **{param: values[arg] for param, arg in arguments.items() if arg not in given}}
        return NodeSpec(name, executable, f"jetracer_trt.nodes.{executable}", explicit, defaults=defaults)

    sim = source == "sim"
    # The nodes stay on the system clock (use_sim_time false), with the simulator too: its /clock carries the
    # wall-clock time its frames are stamped with, so following it would change no time, and subscribing to it
    # costs the inference and control nodes a wake-up per frame, right when the frame arrives.
    common = {"use_sim_time": False}
    if sim:
        # follow-me needs someone to follow: the simulator's walking figure
        frames = node("sim", "sim_node", {"track_seed": "track_seed", "randomize": "randomize",
                                          "lockstep": "lockstep", "plot": "plot"},
                      {"walker": True} if values["task"] == "pose" else {})
    else:
        frames = node("camera", "camera_node", {"source": "source", **({"source_path": "source_path"}
                                                                      if values["source_path"] else {})}, {})
    # the simulator has its own tuned control defaults and arms itself; a real car starts disarmed, slow
    control_derived = {**common, "profile": "sim" if sim else "car", "armed_at_start": sim}
    if sim and values["task"] == "pose":  # a slow network's targets: see config/control.yaml
        from .control import profile_defaults

        control_derived.update(profile_defaults("sim_pose_safety"))
    control_arguments = {"check": "check"}
    if values["actuator"]:
        control_arguments["actuator"] = "actuator"
    else:
        control_derived["actuator"] = DEFAULT_ACTUATOR[source]
    return [
        frames,
        node("inference", "inference_node", {"task": "task", "model": "model", "backend": "backend",
                                             "build_engine": "build_engine"}, common),
        node("control", "control_node", control_arguments, control_derived),
    ]


TELEOPS = ("gamepad", "web", "none")
# the collection graph: the drive graph's arguments plus these (``launch/collect.launch.py``, ``launch collect``)
COLLECT_ARGUMENTS = {
    "out": ("", "dataset folder to record into (created, or appended to); required"),
    "teleop": ("web", "who drives by hand: gamepad (a pad through the teleop node), web (the page's joystick) or "
                      "none (click to label only; the model drives if armed)"),
    "gamepad": ("", "teleop gamepad: the pad's /dev/input/eventN, a by-id link or a name pattern (empty: the "
                    "first pad found)"),
    "web_host": ("127.0.0.1", "address the web page listens on (0.0.0.0: the car's Wi-Fi, with a printed token)"),
    "web_port": ("8080", "web page port (0: no page)"),
    "record": ("false", "record drive samples from the start (else: the pad's record button, the page, or "
                        "`ros2 topic pub --once /record std_msgs/msg/Bool '{data: true}'`)"),
    **DRIVE_ARGUMENTS,
}


def collect_graph(out=None, teleop=None, gamepad=None, web_host=None, web_port=None, record=None,
                  **drive_arguments) -> list[NodeSpec]:
    """The drive graph plus what records on the car: the data-collection node (with the web page) and, with
    ``teleop`` gamepad, the teleop node; the control node starts in manual mode when a hand drives. Arguments as
    for ``drive_graph`` (None: not given)."""
    given = {name: value for name, value in (("out", out), ("teleop", teleop), ("gamepad", gamepad),
                                             ("web_host", web_host), ("web_port", web_port), ("record", record))
             if value is not None}
    values = {name: given.get(name, COLLECT_ARGUMENTS[name][0]) for name in
              ("out", "teleop", "gamepad", "web_host", "web_port", "record")}
    if not values["out"]:
        raise JetracerError("the collection graph needs out (the dataset folder to record into)")
    if values["teleop"] not in TELEOPS:
        raise JetracerError(f"unknown teleop {values['teleop']!r}; choose one of {', '.join(TELEOPS)}")
    try:
        values["web_port"] = int(values["web_port"])
    except ValueError:
        raise JetracerError(f"web_port must be an integer, got {values['web_port']!r}") from None
    values["record"] = _flag(values["record"])
    frames, inference, control = drive_graph(**drive_arguments)
    control = replace(control, defaults={**control.defaults,
                                         "mode": "autopilot" if values["teleop"] == "none" else "manual"})

    def split(arguments: dict) -> tuple[dict, dict]:
        """(explicit, defaults) of the parameters that come from ``arguments`` (parameter -> argument)."""
        return ({p: values[a] for p, a in arguments.items() if a in given},
                {p: values[a] for p, a in arguments.items() if a not in given})

    explicit, defaults = split({"out": "out", "web_host": "web_host", "web_port": "web_port",
                                "record_at_start": "record"})
    profile = control.defaults.get("profile", "car")
    specs = [frames, inference, control,
             NodeSpec("data_collection", "data_collection_node", "jetracer_trt.nodes.data_collection_node",
                      explicit, defaults={**defaults, "profile": profile})]
    if values["teleop"] == "gamepad":
        explicit, defaults = split({"device": "gamepad"})
        specs.append(NodeSpec("teleop", "teleop_node", "jetracer_trt.nodes.teleop_node", explicit,
                              defaults=defaults))
    return specs


def _matches(pattern: str, node_name: str) -> bool:
    """A params file's node key against a node name (no namespace): ``/**``, ``/*``, ``name`` or ``/name``."""
    pattern = pattern.strip("/") or "**"
    return pattern in ("*", "**") or pattern == node_name


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def params_file_values(params_file: str | Path | None, node_name: str) -> dict:
    """The parameters a ROS 2 params file sets for ``node_name`` (sections in file order, the last one wins, as rcl
    applies them), for the supervisor to know e.g. the actuator the control node drives. Empty without a file."""
    if not params_file:
        return {}
    import yaml

    try:
        content = yaml.safe_load(Path(params_file).read_text())
    except FileNotFoundError:
        raise JetracerError(f"params file {params_file} not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise JetracerError(f"cannot read params file {params_file}: {exc}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise JetracerError(f"params file {params_file}: expected `<node name>: {{ros__parameters: ...}}` sections")
    values = {}
    for key, section in content.items():
        if _matches(str(key), node_name) and isinstance(section, dict):
            values.update(_flatten(section.get("ros__parameters") or {}))
    return values
