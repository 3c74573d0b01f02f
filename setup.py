"""jetracer_trt: installs with pip (a virtual environment, no ROS needed) and builds with colcon (ament_python)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "jetracer_trt"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Self-driving JetRacer-style car: camera -> TensorRT/ONNX ResNet18 road target -> control law",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*"]),
    # launch/, config/ and models/ go where ROS 2 looks for them: share/<package>/...
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.pt") + glob("models/*.md")),
    ],
    # the driving runtime: numpy, OpenCV, ONNX Runtime and a YAML reader (plus tqdm for progress bars)
    install_requires=["numpy", "opencv-python-headless", "onnxruntime", "PyYAML", "tqdm"],
    extras_require={
        "plot": ["matplotlib"],
        "train": ["torch", "torchvision", "onnx", "matplotlib"],
        "test": ["pytest", "torch", "torchvision", "onnx", "matplotlib"],
    },
    zip_safe=True,
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "jetracer-trt = jetracer_trt.cli.main:main",
        ],
    },
)
