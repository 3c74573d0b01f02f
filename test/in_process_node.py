"""A node built in the test's own process with parameters from the command line, as `--ros-args -p` gives them, and
shut down the node's own way afterwards (``shutdown()``, then destroyed)."""
import contextlib

import rclpy


@contextlib.contextmanager
def node_maker(node_class, **fixed):
    """Yields ``make(**params)``: a ``node_class`` with ``fixed`` and ``params`` as its parameters."""
    made = []

    def make(**params):
        args = ["--ros-args"]
        for key, value in {**fixed, **params}.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["-p", f"{key}:={text}"]
        rclpy.init(args=args)
        node = node_class()
        made.append(node)
        return node

    try:
        yield make
    finally:
        for node in made:
            node.shutdown()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
