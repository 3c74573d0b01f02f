"""The first code of a node's process, before anything heavy is imported: from here on, a signal that asks the node
to stop ends it cleanly, whatever it is doing at the time.

A node starts in phases: Python starts, the node's module imports its libraries (rclpy, OpenCV, ONNX Runtime: seconds
on a loaded machine), rclpy starts, the node is built (a model loaded, an engine built), then it runs.

* Until ``common.run`` takes over nothing exists that needs undoing, so a stop ends the process at once with
  ``EXIT_STOPPED``. Python's own SIGINT handler would raise KeyboardInterrupt inside whatever import was running
  (a traceback, and an exit by the signal that a supervisor counts as a failure); SIGTERM's and SIGHUP's defaults
  end the process by the signal too.
* ``common.run`` then handles the signals itself: a stop interrupts ``rclpy.init`` or the constructor, or ends the
  running node the node's own way (``shutdown()``: the car neutral).
* Once ``run`` has finished, a stop ends the process at once with ``run``'s status: everything was done, and a
  thread that keeps the interpreter from exiting must not keep the process from stopping either.

Handlers cover everything after this module's first lines, not Python's own start before them. So the pip runner
(``launcher.start_nodes``) starts each node with the stop signals blocked: a stop sent while Python starts waits,
pending, until ``install`` has set the handlers and unblocks it. ``ros2 launch`` starts nodes with nothing blocked:
there a stop in the first milliseconds of the process can still end it Python's way.

SIGINT and SIGTERM are handled even when inherited as ignored (a shell starts a background job with SIGINT
ignored, and supervisors stop nodes with SIGINT), SIGHUP and SIGQUIT unless inherited as ignored (``nohup``).

``python -m jetracer_trt.nodes.entry MODULE [ARGS...]`` runs MODULE's ``main()`` (what the pip runner starts); the
console scripts ``sim_node``, ``inference_node``, ... (``ros2 run``, ``ros2 launch``) are the functions at the end.
This module imports nothing but the standard library's ``importlib``, ``os``, ``signal`` and ``sys``.
"""
from __future__ import annotations

import importlib
import os
import signal
import sys

# Exit statuses of a node (``common.run`` returns them; what `jetracer-trt launch` reports for them)
EXIT_STOPPED = 0      # stopped as asked (a signal) or because its supervisor is gone
EXIT_FAILED = 1       # an exception (traceback logged) or ``fatal_error`` set
EXIT_BAD_INPUT = 2    # a JetracerError: bad parameters, a missing model or device (one line logged)

ALWAYS_HANDLED = (signal.SIGINT, signal.SIGTERM)          # handled even when inherited as ignored
HANDLED_UNLESS_IGNORED = (signal.SIGHUP, signal.SIGQUIT)  # left ignored when inherited as ignored (nohup)
STOP_SIGNALS = ALWAYS_HANDLED + HANDLED_UNLESS_IGNORED

_exit_status = {"on_stop": EXIT_STOPPED}


def _exit_at_once(_signum, _frame) -> None:
    os._exit(_exit_status["on_stop"])


def install() -> None:
    """Every stop signal ends the process at once (with ``EXIT_STOPPED`` until ``stop_exits_with`` says
    otherwise), then unblocks them: a stop that came while they were blocked acts now. Main thread only."""
    for sig in ALWAYS_HANDLED:
        signal.signal(sig, _exit_at_once)
    for sig in HANDLED_UNLESS_IGNORED:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _exit_at_once)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def stop_exits_with(status: int) -> None:
    """The status a stop ends the process with from now on, while ``install``'s handlers are in place: ``run``
    sets its own once it has finished."""
    _exit_status["on_stop"] = status


def run_module(name: str, argv: list[str] | None = None) -> None:
    """Installs the handlers, then imports the node module ``name`` and runs its ``main()`` (which exits with the
    node's status); ``argv``: the arguments after the program (default: ``sys.argv[1:]``)."""
    install()
    rest = sys.argv[1:] if argv is None else list(argv)
    module = importlib.import_module(name)
    sys.argv = [getattr(module, "__file__", None) or name, *rest]  # the node's own name, as `python -m` gives it
    module.main()


def main() -> None:
    """``python -m jetracer_trt.nodes.entry MODULE [ARGS...]``"""
    if len(sys.argv) < 2:
        sys.exit("usage: python -m jetracer_trt.nodes.entry MODULE [ARGS...]")
    run_module(sys.argv[1], sys.argv[2:])


def _node(module: str):
    def start() -> None:
        run_module(f"{__package__}.{module}")
    start.__name__ = start.__qualname__ = module
    return start


# the console scripts (setup.py)
sim_node = _node("sim_node")
inference_node = _node("inference_node")
control_node = _node("control_node")
camera_node = _node("camera_node")
teleop_node = _node("teleop_node")
data_collection_node = _node("data_collection_node")

if __name__ == "__main__":
    # `python -m` runs this file as ``__main__``, a second copy of the module: the importable one holds the
    # handlers' state, which ``common.run`` sets
    from jetracer_trt.nodes.entry import main as entry_main

    entry_main()
