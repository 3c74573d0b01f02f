"""The simulator: seeded taped tracks, a kinematic car, a wide-angle camera rendered from the floor plane, domain
randomization, the expert and its labels, a walking person to follow (``walker.py``), and the closed loops that
drive them. ROS-free; numpy and OpenCV (a world with a person also the pose package; its oracle, torch)."""
from .runner import drive, expert_episode, follow, sample_frames
from .track import generate_track, parse_seeds
from .world import SimWorld

__all__ = ["SimWorld", "drive", "expert_episode", "follow", "generate_track", "parse_seeds", "sample_frames"]
