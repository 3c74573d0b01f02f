"""The one command line: ``jetracer-trt <verb>``. Each verb lives in its own module with ``register(subparsers)``."""
