"""What every node shares: the frame QoS, parameter declaration with descriptions, the diagnostics message and
one way to run a node (Ctrl-C, SIGTERM and exceptions all end in ``node.shutdown()``)."""
from __future__ import annotations

import signal
import sys
from typing import Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

# frames and targets: the latest wins; a late frame is worthless, so never queue and never retransmit
LATEST_ONLY = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)
# commands and e-stop: few, small and must arrive
RELIABLE = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


def declare(node: Node, name: str, default, description: str, low=None, high=None, read_only: bool = False):
    """Declares a parameter with its description (and range, for numbers) and returns its current value."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if low is not None and isinstance(default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    elif low is not None and isinstance(default, int) and not isinstance(default, bool):
        descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    return node.declare_parameter(name, default, descriptor).value


def steady_timer(node: Node, period_s: float, callback):
    """A timer on the steady clock. Safety checks and diagnostics must keep running when a simulator's /clock
    stalls or stops (use_sim_time), so they never run on the node's ROS clock."""
    from rclpy.clock import Clock, ClockType

    return node.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


_SYSTEM_CLOCK = None


def ms_since(stamp) -> float:
    """Milliseconds from a capture stamp to now on the system clock (node clocks may follow a coarse /clock)."""
    global _SYSTEM_CLOCK
    if _SYSTEM_CLOCK is None:
        from rclpy.clock import Clock, ClockType

        _SYSTEM_CLOCK = Clock(clock_type=ClockType.SYSTEM_TIME)
    return (_SYSTEM_CLOCK.now().nanoseconds - stamp_to_ns(stamp)) / 1e6


def percentiles(values, qs=(50, 99)) -> list[float]:
    return [float(np.percentile(values, q)) for q in qs] if len(values) else [0.0 for _ in qs]


def diagnostics(node: Node, name: str, values: dict, level: bytes = DiagnosticStatus.OK, message: str = "ok"):
    """A /diagnostics message with one status (``values`` become key/value strings)."""
    msg = DiagnosticArray()
    msg.header.stamp = node.get_clock().now().to_msg()
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=node.get_name())
    status.values = [KeyValue(key=k, value=f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in values.items()]
    msg.status = [status]
    return msg


def run(node_factory: Callable[[], Node], args=None) -> int:
    """Runs one node until Ctrl-C or SIGTERM; ``shutdown()`` (e.g. neutral outputs) runs on every way out.

    rclpy's own signal handlers would shut the context down before ``shutdown()`` could still publish, so they are
    off: SIGINT is Python's KeyboardInterrupt, and SIGTERM is turned into one.
    """
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    # Python leaves SIGINT alone when it starts with SIGINT ignored, which is how a shell starts a background job
    # (`nohup jetracer-trt launch drive &`): the node would then ignore the launcher's Ctrl-C and be killed
    # without putting the car in neutral. So both signals are set here, whatever was inherited.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    node = None
    try:
        node = node_factory()
        # spin in slices: a blocking spin waits in C++ and would not see Ctrl-C until the next message or timer,
        # and with use_sim_time no timer fires once the simulator (the clock) has stopped
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        if node is not None:
            getattr(node, "shutdown", lambda: None)()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def _raise_keyboard_interrupt(*_):
    raise KeyboardInterrupt


def main_for(node_class) -> Callable[[], int]:
    def main(args=None) -> int:
        return run(node_class, args=args if args is not None else sys.argv)
    return main
