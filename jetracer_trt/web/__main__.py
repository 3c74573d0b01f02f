"""``python -m jetracer_trt.web --data DIR``: the web page on the simulator (drive it, click to label its frames)."""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from ..errors import JetracerError
from .app import WebApp, is_loopback, new_token
from .sim_backend import SimBackend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jetracer_trt.web", description=__doc__)
    parser.add_argument("--data", required=True, help="dataset folder that clicks and recordings go to")
    parser.add_argument("--web-host", default="127.0.0.1",
                        help="address to serve on; any but loopback (e.g. 0.0.0.0 for a phone) needs the token")
    parser.add_argument("--web-port", type=int, default=8080)
    parser.add_argument("--track-seed", type=int, default=0)
    parser.add_argument("--randomize", action="store_true")
    args = parser.parse_args(argv)
    try:
        backend = SimBackend(args.data, track_seed=args.track_seed, randomize=args.randomize)
    except JetracerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    token = None if is_loopback(args.web_host) else new_token()
    try:
        app = WebApp(backend, host=args.web_host, port=args.web_port, token=token).start()
    except JetracerError as exc:
        backend.stop()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    backend.start(app.show_frame)
    print(f"web page: {app.url}", flush=True)
    if not is_loopback(args.web_host):
        print("from a phone on the car's network: the same address with this machine's IP instead of 127.0.0.1",
              flush=True)
    try:
        stop.wait()
    finally:
        app.stop()
        backend.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
