"""What every node shares: the frame QoS, parameter declaration with descriptions, the diagnostics message and
one way to run a node (``run``: every signal that ends a node, a fatal error and an exception all end in
``node.shutdown()``, with an exit status that says which)."""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Callable, Iterator

import rclpy
import rclpy.logging
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..actuators.base import signals_handled_by
from ..errors import JetracerError
from . import entry
from .entry import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_STOPPED  # noqa: F401 - a node's exit statuses, also from here

# frames and targets: the latest wins; a late frame is worthless, so never queue and never retransmit
LATEST_ONLY = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)
# commands and e-stop: few, small and must arrive
RELIABLE = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)

# A supervisor that sets this variable to a file path learns a failed node's one-line reason from that file.
FAILURE_FILE_ENV = "JETRACER_TRT_FAILURE_FILE"
SPIN_SLICE_S = 0.1    # how often the run loop looks at signals, ``fatal_error`` and the parent process at the least


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


def ms_since(stamp) -> float:
    """Milliseconds from a capture stamp to now on the system clock, the clock the stamps are on (rcl's system
    time is the same CLOCK_REALTIME; node clocks may follow a coarse /clock)."""
    return (time.time_ns() - stamp_to_ns(stamp)) / 1e6


def diagnostics(node: Node, name: str, values: dict, level: bytes = DiagnosticStatus.OK, message: str = "ok"):
    """A /diagnostics message with one status (``values`` become key/value strings)."""
    msg = DiagnosticArray()
    msg.header.stamp = node.get_clock().now().to_msg()
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=node.get_name())
    status.values = [KeyValue(key=k, value=f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in values.items()]
    msg.status = [status]
    return msg


@contextlib.contextmanager
def stop_signals_handled_by(handler) -> Iterator[None]:
    """Within the block, every signal that asks a program to end goes to ``handler``: SIGINT (Ctrl-C) and SIGTERM
    always, even when inherited as ignored (a shell starts a background job with SIGINT ignored, and a supervisor
    stops its nodes with SIGINT); SIGHUP (the terminal or the SSH session went away) and SIGQUIT (Ctrl-\\) unless
    inherited as ignored (``nohup`` ignores SIGHUP on purpose). Python's defaults for the last three end the process
    without running any cleanup, which would leave the car's servo board on its last pulse. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in entry.ALWAYS_HANDLED}
    for sig in entry.ALWAYS_HANDLED:
        signal.signal(sig, handler)
    try:
        with signals_handled_by(handler, entry.HANDLED_UNLESS_IGNORED):
            yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def _node_name(args) -> str:
    """The node's name before the node exists (for the one-line error of a failing constructor): the
    ``__node:=``/``__name:=`` remapping launchers pass, else the executable's name without ``_node``."""
    for arg in args or ():
        for prefix in ("__node:=", "__name:="):
            if arg.startswith(prefix):
                return arg[len(prefix):]
    program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "node"
    return program.removesuffix(".py").removesuffix("_node")


def _report_failure(message: str) -> None:
    """The reason for the supervisor, when it asked for one (``FAILURE_FILE_ENV``)."""
    path = os.environ.get(FAILURE_FILE_ENV)
    if path:
        try:
            with open(path, "w") as f:
                f.write(message.strip() + "\n")
        except OSError:
            pass


def _fail(name: str, message: str) -> None:
    """The one line a failure is logged as: ``[ERROR] [time] [<node>]: <message>``."""
    rclpy.logging.get_logger(name).error(message)
    _report_failure(message)


class _RosLogHandler(logging.Handler):
    """The core's Python log records (``backend auto``'s choice, an engine build's progress, a calibration warning)
    on the node's ROS log, so they reach the console, the log files and /rosout like the node's own lines."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = rclpy.logging.get_logger(record.name)
        text = record.getMessage()
        if record.levelno >= logging.ERROR:
            logger.error(text)
        elif record.levelno >= logging.WARNING:
            logger.warning(text)
        else:
            logger.info(text)


def forward_core_logging() -> None:
    core = logging.getLogger("jetracer_trt")
    if not any(isinstance(h, _RosLogHandler) for h in core.handlers):
        core.addHandler(_RosLogHandler())
        core.setLevel(logging.INFO)
        core.propagate = False


def run(node_factory: Callable[[], Node], args=None) -> int:
    """Runs one node until a signal ends it; ``shutdown()`` (e.g. neutral outputs) runs on every way out once the
    node exists. Returns the exit status:

    * 0: stopped by SIGINT, SIGTERM, SIGHUP or SIGQUIT, or because the parent process (its supervisor) is gone;
    * 2: a ``JetracerError`` (from the constructor or a callback): one line ``[<node>]: <message>``, no traceback;
    * 1: any other exception (traceback logged), or the node set ``self.fatal_error = "message"`` (from any thread,
      e.g. a capture thread whose camera is gone for good): ``[<node>]: <message>`` logged once, then shutdown.

    rclpy's own signal handlers would shut the context down before ``shutdown()`` could still publish, so they are
    off: a signal only asks the loop to stop (before the node exists it interrupts ``rclpy.init`` or the constructor;
    before and after ``run``, ``nodes.entry``'s handlers end the process at once), and the loop
    looks every ``SPIN_SLICE_S`` at the latest, and between waiting and running each callback. One executor serves
    the node for its whole life (the global ``rclpy.spin_once(node)`` adds and removes the node, making the
    executor rebuild its wait set, on every call).
    """
    from rclpy.executors import (
        ExternalShutdownException, ShutdownException, SingleThreadedExecutor, TimeoutException,
    )
    from rclpy.signals import SignalHandlerOptions

    name = _node_name(args)
    parent = os.getppid()  # before anything slow: a supervisor that dies while the node starts is noticed too
    stop = {"signal": None, "node": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum
        if stop["node"] is None:  # still being built: nothing to shut down yet
            raise KeyboardInterrupt

    status = EXIT_STOPPED
    node = None
    forward_core_logging()
    with stop_signals_handled_by(on_signal):
        try:
            rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
            node = node_factory()
            # everything built so far (the imported libraries, the model, the node) lives until the end: out of the
            # collector's reach, a full collection no longer walks it and stalls a frame by ~10 ms
            gc.freeze()
            stop["node"] = node
            name = node.get_name()
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            while rclpy.ok() and stop["signal"] is None:
                # spin_once, but a callback that became ready while a stop was being asked for is not run: a
                # simulator publishes no frame after its SIGINT (one more would be lost in the teardown and
                # counted as dropped), a control node acts on no target after it
                try:
                    handler, _entity, _node = executor.wait_for_ready_callbacks(timeout_sec=SPIN_SLICE_S)
                except (TimeoutException, ShutdownException, ExternalShutdownException):
                    handler = None
                if handler is not None and stop["signal"] is None:
                    handler()
                    handler.result()  # raises what the callback raised
                elif handler is not None:
                    handler.cancel()  # closes its coroutine: not run, and no "never awaited" warning at exit
                fatal = getattr(node, "fatal_error", None)
                if fatal:
                    _fail(name, str(fatal))
                    status = EXIT_FAILED
                    break
                if os.getppid() != parent:
                    node.get_logger().warning("the process that started this node is gone: stopping")
                    break
        except KeyboardInterrupt:
            pass
        except JetracerError as exc:
            _fail(name, str(exc))
            status = EXIT_BAD_INPUT
        except Exception as exc:  # noqa: BLE001 - logged with its traceback, the node still shuts down
            traceback.print_exc()
            _report_failure(f"{type(exc).__name__}: {exc}")
            status = EXIT_FAILED
        finally:
            stop["node"] = node if node is not None else False  # from here on a signal never interrupts
            if node is not None:
                try:
                    getattr(node, "shutdown", lambda: None)()
                except Exception:  # noqa: BLE001
                    traceback.print_exc()
                    status = status or EXIT_FAILED
                node.destroy_node()
            rclpy.try_shutdown()
            # the handlers ``entry`` set come back next: a stop from here on ends the process at once, with this status
            entry.stop_exits_with(status)
    return status


def main_for(node_class) -> Callable[..., None]:
    """The node's ``main()``: it exits with ``run``'s status. The processes of a graph start through
    ``nodes.entry`` (the console scripts, the pip runner), which handles the stop signals before the node's module
    imports anything; ``python -m jetracer_trt.nodes.<module>`` runs it too, without that."""
    def main(args=None) -> None:
        sys.exit(run(node_class, args=args if args is not None else sys.argv))
    return main
