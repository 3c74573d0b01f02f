"""The simulator: seeded taped tracks, a kinematic car, a wide-angle camera rendered from the floor plane, domain
randomization, the expert and its labels, and the closed loops that drive them. ROS-free; numpy and OpenCV only."""
from .runner import drive, expert_episode, sample_frames
from .track import generate_track, parse_seeds
from .world import SimWorld

__all__ = ["SimWorld", "drive", "expert_episode", "generate_track", "parse_seeds", "sample_frames"]
