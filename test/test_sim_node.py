"""The simulator node's clock: the world starts when the model is subscribed to its frames."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="the nodes need rclpy: pip install -e '.[ros]'")

from sensor_msgs.msg import Image  # noqa: E402

from in_process_node import node_maker  # noqa: E402
from jetracer_trt.nodes.common import LATEST_ONLY  # noqa: E402
from jetracer_trt.nodes.sim_node import SimNode  # noqa: E402


def test_real_time_frames_wait_for_a_subscriber_so_none_is_lost_before_the_model_listens(monkeypatch):
    with node_maker(SimNode) as make:
        sim = make()
        published = []
        monkeypatch.setattr(sim.image_pub, "publish", lambda msg: published.append(msg.header.stamp))
        for _ in range(5):
            sim.tick()
        assert published == [] and sim.world.stats.frames == 0  # nobody looking: the world has not started
        sim.create_subscription(Image, "camera/image_raw", lambda msg: None, LATEST_ONLY)
        for _ in range(5):
            sim.tick()
        assert len(published) == 5 and sim.world.stats.frames == 4  # the first frame is taken before any step
