"""The drive graph, described once: which nodes, with which parameters and remappings, for given launch arguments.

``launch/drive.launch.py`` (ROS 2 installs) and ``jetracer-trt launch drive`` (pip-only) both build from
``drive_graph``, so the two cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import JetracerError

SOURCES = ("csi", "v4l2", "video", "folder", "sim")
ACTUATORS = ("pca9685", "sim", "none")

# launch argument -> (default, description); the launch file and the runner's options both come from here
DRIVE_ARGUMENTS = {
    "source": ("sim", "camera source: csi (Jetson CSI camera), v4l2 (USB), video (a file), folder (images) or sim"),
    "model": ("", "ONNX model (empty: the shipped models/road_following.onnx)"),
    "backend": ("auto", "inference backend: auto (a valid TensorRT engine beside the model, else the CUDA GPU, else "
                        "the CPU), onnxruntime, torch, tensorrt or torch2trt"),
    "actuator": ("", "pca9685 (the car), sim or none (empty: sim with source sim, else pca9685)"),
    "params_file": ("", "ROS 2 parameters YAML applied to every node (overrides the defaults)"),
    "check": ("false", "wheels-up check: throttle forced to 0, target and steering logged"),
    "track_seed": ("1001", "simulator track seed (source sim)"),
    "randomize": ("false", "simulator domain randomization (source sim)"),
    "lockstep": ("false", "the simulator waits for each frame's command before the next frame: every frame is "
                          "used and the run does not depend on the machine's speed (source sim)"),
    "device": ("", "camera device, file or folder (source v4l2, video or folder)"),
    "plot": ("", "PNG file the simulator draws the driven path into when it stops (source sim)"),
}


@dataclass(frozen=True)
class NodeSpec:
    name: str                 # ROS node name
    executable: str           # console script, what launch_ros and `ros2 run` start
    module: str               # Python module with main(), what the pip-only runner starts
    parameters: dict = field(default_factory=dict)
    remappings: tuple = ()


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise JetracerError(f"expected true or false, got {value!r}")


def drive_graph(source: str = "sim", model: str = "", backend: str = "auto", actuator: str = "",
                check=False, track_seed=1001, randomize=False, lockstep=False, device: str = "",
                plot: str = "", params_file: str = "") -> list[NodeSpec]:
    """The nodes of the drive graph for these launch arguments (``params_file`` is applied by the caller)."""
    if source not in SOURCES:
        raise JetracerError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    actuator = actuator or ("sim" if source == "sim" else "pca9685")
    if actuator not in ACTUATORS:
        raise JetracerError(f"unknown actuator {actuator!r}; choose one of {', '.join(ACTUATORS)}")
    try:
        track_seed = int(track_seed)
    except ValueError:
        raise JetracerError(f"track_seed must be an integer, got {track_seed!r}") from None
    sim = source == "sim"
    common = {"use_sim_time": sim}  # the simulator publishes /clock
    if sim:
        frames = NodeSpec("sim", "sim_node", "jetracer_trt.nodes.sim_node",
                          {"track_seed": track_seed, "randomize": _flag(randomize), "lockstep": _flag(lockstep),
                           "plot": plot})
    else:
        camera = {"source": source}
        if device:
            camera["device"] = device
        frames = NodeSpec("camera", "camera_node", "jetracer_trt.nodes.camera_node", camera)
    return [
        frames,
        NodeSpec("inference", "inference_node", "jetracer_trt.nodes.inference_node",
                 {**common, "model": model, "backend": backend}),
        NodeSpec("control", "control_node", "jetracer_trt.nodes.control_node",
                 {**common, "actuator": actuator, "check": _flag(check)}),
    ]
