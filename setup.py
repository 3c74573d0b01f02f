"""jetracer_trt: installs with pip (a virtual environment, no ROS needed) and builds with colcon (ament_python)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "jetracer_trt"
# every ROS package the nodes and the core import (package.xml lists the same as exec_depend; a test checks both)
ROS_WHEELS = ["ros-kilted-rclpy[fastrtps]"] + [
    f"ros-kilted-{name}" for name in ("sensor-msgs", "std-msgs", "geometry-msgs", "diagnostic-msgs",
                                      "visualization-msgs", "rosgraph-msgs", "builtin-interfaces", "rcl-interfaces",
                                      "ament-index-python")
]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Self-driving JetRacer-style car: camera -> TensorRT/ONNX ResNet18 road target -> control law",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={"jetracer_trt.web": ["page.html"]},
    # launch/, config/ and models/ go where ROS 2 looks for them: share/<package>/...
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py") + glob("launch/*.service")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.json")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.pt") + glob("models/*.md")),
    ],
    # the driving runtime: numpy, OpenCV, ONNX Runtime and a YAML reader (plus tqdm for progress bars, SciPy for the
    # pose parser's larger assignments)
    install_requires=["numpy", "opencv-python-headless", "onnxruntime", "PyYAML", "tqdm", "scipy"],
    extras_require={
        "plot": ["matplotlib"],
        "train": ["torch", "torchvision", "onnx", "matplotlib"],
        # explicit Q/DQ INT8 ONNX for TensorRT (NVIDIA ModelOpt's ONNX PTQ). Its own [onnx] extra pins older onnx and
        # onnxruntime-gpu, so the pieces its ONNX path needs are listed here instead
        "quantize": ["nvidia-modelopt", "onnx-graphsurgeon", "onnxslim", "onnxscript", "lief"],
        # ROS 2 (Kilted) client library and message packages as wheels: the graph without a ROS 2 install
        "ros": ROS_WHEELS,
        # the gamepad (evdev builds from source: a C compiler and the Python headers) and the car's web page
        "teleop": ["evdev"],
        "web": ["aiohttp"],
        "test": ["pytest", "ruff", "torch", "torchvision", "onnx", "matplotlib", "nvidia-modelopt", "onnx-graphsurgeon",
                 "onnxslim", "onnxscript", "lief", "evdev", "aiohttp", "selenium"] + ROS_WHEELS,
    },
    zip_safe=True,
    tests_require=["pytest"],
    entry_points={
        # each node through nodes.entry: the stop signals are handled before the node's module imports anything
        "console_scripts": [
            "jetracer-trt = jetracer_trt.cli.main:main",
            "sim_node = jetracer_trt.nodes.entry:sim_node",
            "inference_node = jetracer_trt.nodes.entry:inference_node",
            "control_node = jetracer_trt.nodes.entry:control_node",
            "camera_node = jetracer_trt.nodes.entry:camera_node",
            "teleop_node = jetracer_trt.nodes.entry:teleop_node",
            "data_collection_node = jetracer_trt.nodes.entry:data_collection_node",
        ],
    },
)
