"""jetracer_trt: camera -> ResNet18 road target -> control law -> car, with a ROS-free core and thin ROS 2 nodes."""

__version__ = "0.1.0"
