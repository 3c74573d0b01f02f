"""Human pose, compatible with NVIDIA's trt_pose: its topology files, its parser (confidence maps and part affinity
fields -> people), ``PoseEstimator`` (a frame -> the people in it, through any inference engine) and, in
``pose.network`` (torch), its ``resnet18_baseline_att`` network and checkpoint loader.

This package imports no ROS and no torch: parsing needs only numpy and SciPy.
"""
from .estimator import PoseEstimator
from .parse import (
    assign_links,
    best_assignment,
    connect_parts,
    find_peaks,
    paf_score_graph,
    parse_objects,
    refine_peaks,
)
from .people import Keypoint, Person, parse_people, people_from_objects
from .topology import PoseTopology, default_topology_path, links_array, load_topology, topology_from_category

__all__ = [
    "Keypoint", "Person", "PoseEstimator", "PoseTopology", "assign_links", "best_assignment", "connect_parts",
    "default_topology_path", "find_peaks", "links_array", "load_topology", "paf_score_graph", "parse_objects",
    "parse_people", "people_from_objects", "refine_peaks", "topology_from_category",
]
