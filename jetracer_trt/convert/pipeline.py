"""One conversion pipeline: every ``jetracer-trt convert`` route and ``jetracer-trt export`` run the same steps, and
a route (a ``Route``) supplies only what differs: its own checks and its build.

``run(route, request)``:

1. check, before anything heavy is imported: the precision, the source's kind and that it is there, the batch size
   and OUT (``check_output``: never the source, never an existing file without ``force``; OUT defaults to the
   conventional name beside the source, the one ``backend auto`` looks for), then the route's own refusals
   (``Route.check``) and, for a GPU engine, this machine (``sidecar.current_platform``);
2. the source's model contract (``Route.source_contract``, by default ``contract.read_contract``): the result
   records it;
3. frames (``calibration.split_frames``): verification frames, and calibration frames apart from them when the
   route calibrates (INT8), of the kind the model's task sees;
4. the reference: the source model in FP32 on the verification frames (``Route.reference``: by default
   ``verify.reference_outputs``, the source through its own CPU engine);
5. build: the route writes its result into a temporary folder beside OUT, under OUT's own name (``Route.build``);
   for a GPU engine the pipeline writes the sidecar beside it;
6. verify: the result loaded through its own engine (``Route.run_result``), its precision and contract checked, its
   outputs (``verify.engine_outputs``: the columns of a road-following model, each output tensor of a pose model,
   ``cmap`` and ``paf``) judged against the reference by ``verify.compare`` at its precision, with the tolerance
   table of its task (``verify.tolerances_for``);
7. write: only then is the result (and its sidecar, with the verification recorded) renamed over OUT, fsynced
   before and after the renames. On any failure OUT is left as it was and the temporary folder is removed.

Each route module (the table in ``convert/__init__.py``) defines one ``Route`` subclass and ``ROUTE``, its instance.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..contract import CONTRACT_KEY, ModelContract, read_contract
from ..engines import sidecar as sidecars
from ..engines.artifacts import converted_path
from ..errors import JetracerError
from ..fileio import fsync_dir, fsync_file
from ..verify import Comparison, Outputs, compare, engine_outputs, reference_outputs, require_match, tolerances_for
from .calibration import FrameSplit, split_frames

log = logging.getLogger(__name__)

@dataclass
class ConvertRequest:
    """One conversion.

    ``source`` is the FP32 model: an ``.onnx`` file (onnxruntime, tensorrt) or a checkpoint (torch, torch2trt,
    export). ``out`` defaults to the conventional name beside the source (``Route.default_out``). ``calib_dir`` is
    a dataset (or image folder) whose frames calibrate INT8 and verify the result; without it, simulator frames.
    """

    source: Path
    precision: str                  # fp32, fp16 or int8
    out: Path | None = None
    calib_dir: Path | None = None
    calib_frames: int = 512         # frames used to calibrate INT8 (spread over calib_dir)
    verify_frames: int = 64         # frames the result is checked on against the source
    workspace_mb: int = 1024        # TensorRT builder workspace
    max_batch: int = 1              # the largest batch the result must run
    force: bool = False             # replace an existing output
    verbose: bool = False           # list layers and the precision each runs in


@dataclass
class ConvertResult:
    """What was written and how well it agrees with the source."""

    path: Path
    backend: str
    precision: str
    comparison: Comparison
    seconds: float                  # wall time of the conversion, build and verification included
    files: list[Path] = field(default_factory=list)  # everything written (the model, a sidecar, a timing cache)
    notes: list[str] = field(default_factory=list)   # lines for the user (layer precisions with --verbose, ...)

    def as_dict(self) -> dict:
        return {"path": str(self.path), "backend": self.backend, "precision": self.precision,
                "seconds": round(self.seconds, 2), "files": [str(f) for f in self.files],
                "verification": self.comparison.as_dict()}


@dataclass
class Build:
    """What a route's build gives back besides the file it wrote."""

    notes: list[str] = field(default_factory=list)
    sidecar: dict[str, Any] = field(default_factory=dict)  # a GPU engine's own sidecar fields (builder, calibration)
    files: list[Path] = field(default_factory=list)        # written beside OUT besides the result (a timing cache)


@dataclass
class Loaded:
    """What the result gave when loaded through its engine: its outputs on the verification frames, and what it
    says of itself."""

    outputs: Outputs
    precision: str
    contract: ModelContract
    notes: list[str] = field(default_factory=list)


class Route:
    """One way to convert a model. A subclass sets the class attributes and implements ``build``; the rest has
    defaults that fit most routes."""

    command = ""                    # how the user asks for it, for messages: "--backend tensorrt"
    backend = ""                    # the inference backend that runs the result
    what = ""                       # the result in words: "the TensorRT engine"
    precisions: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()   # suffixes of the source models it converts
    source_kind = ""                # the source in words: "an FP32 .onnx model (from `jetracer-trt export`)"
    engine = False                  # the result is a GPU engine with a sidecar

    def convert(self, request: ConvertRequest) -> ConvertResult:
        """Runs the pipeline for this route (see the module docstring)."""
        return run(self, request)

    def default_out(self, source: Path, precision: str) -> Path:
        """Where the result goes without ``--out``: the name ``backend auto`` looks for beside the source."""
        return converted_path(source, self.backend, precision)

    def precision_hint(self, precision: str) -> str:
        """What to do instead of asking this route for ``precision``."""
        return f"choose one of {', '.join(self.precisions)}"

    def calibrates(self, request: ConvertRequest) -> bool:
        return request.precision == "int8"

    def check(self, request: ConvertRequest) -> None:
        """The route's own refusals (JetracerError), before anything heavy is imported."""

    def build(self, request: ConvertRequest, contract: ModelContract, frames: FrameSplit, out: Path,
              work: Path) -> Build:
        """Writes the result of converting ``request.source`` to ``out``, recording ``contract``. ``out`` is a
        temporary path with the name of ``request.out`` in ``work``, a folder for intermediate files."""
        raise NotImplementedError

    def load_options(self, request: ConvertRequest) -> dict[str, Any]:
        """Options for ``create_engine`` when the result is loaded to be verified."""
        return {}

    def source_contract(self, request: ConvertRequest) -> ModelContract:
        """The contract of the source model, which the result will carry."""
        return read_contract(request.source)

    def reference(self, request: ConvertRequest, frames: np.ndarray, contract: ModelContract) -> Outputs:
        """The source model's FP32 outputs on ``frames``, which the result must reproduce."""
        return reference_outputs(request.source, frames)

    def report(self, engine, request: ConvertRequest) -> list[str]:
        """Lines for the user about the loaded result (``--verbose``)."""
        return []

    def run_result(self, request: ConvertRequest, candidate: Path, frames: np.ndarray) -> Loaded:
        """The result loaded through its own engine, run on ``frames``."""
        from ..engines import create_engine

        with create_engine(self.backend, candidate, max_batch=request.max_batch,
                           **self.load_options(request)) as engine:
            outputs = engine_outputs(engine, frames)
            return Loaded(outputs, engine.precision, engine.contract, self.report(engine, request))


def run(route: Route, request: ConvertRequest) -> ConvertResult:
    """Converts, verifies and writes (see the module docstring); JetracerError, with OUT untouched, for bad input or
    a result that disagrees with the source beyond the tolerance of its precision."""
    started = time.perf_counter()
    source = Path(request.source)
    out = Path(request.out) if request.out is not None else route.default_out(source, request.precision)
    request = dataclasses.replace(request, source=source, out=out)
    _check_request(route, request, source, out)
    route.check(request)
    platform = sidecars.current_platform() if route.engine else {}
    contract = route.source_contract(request)
    calibration = request.calib_frames if route.calibrates(request) else 0
    frames = split_frames(request.calib_dir, calibration, request.verify_frames, task=contract.task)
    for note in frames.notes:
        log.warning("%s", note)
    log.info("%s: %s %s from %s, verified on %d frames from %s", route.command, route.what, request.precision,
             source, len(frames.verification), frames.source)
    reference = route.reference(request, frames.verification, contract)

    with _staged(out, route.engine) as (candidate, work):
        build = route.build(request, contract, frames, candidate, work)
        fields = {}
        if route.engine:
            fields = {"backend": route.backend, **platform, "precision": request.precision,
                      CONTRACT_KEY: contract.as_dict(), "max_batch": request.max_batch, "source": str(source),
                      "source_sha256": sidecars.source_hash(source), "artifact_sha256": sidecars.source_hash(candidate),
                      **build.sidecar}
            sidecars.write_sidecar(candidate, fields)
        loaded = route.run_result(request, candidate, frames.verification)
        if loaded.precision != request.precision or loaded.contract != contract:
            raise JetracerError(f"{route.what} loads as {loaded.precision} with contract {loaded.contract.summary()}, "
                                f"not as the {request.precision} model of {contract.summary()} it was built to be; "
                                f"{out} was not written")
        comparison = compare(reference, loaded.outputs, request.precision, contract.outputs,
                             tolerances_for(contract.task))
        require_match(comparison, f"{route.what} ({request.precision})", out)
        if route.engine:
            sidecars.write_sidecar(candidate, {**fields, "verification": comparison.as_dict()})
    files = [out, *([sidecars.sidecar_path(out)] if route.engine else []), *build.files]
    notes = [*frames.notes, *build.notes, *loaded.notes]
    return ConvertResult(path=out, backend=route.backend, precision=request.precision, comparison=comparison,
                         seconds=time.perf_counter() - started, files=files, notes=notes)


def _check_request(route: Route, request: ConvertRequest, source: Path, out: Path) -> None:
    if request.precision not in route.precisions:
        raise JetracerError(f"{route.command} converts to {' or '.join(route.precisions)}, not {request.precision}: "
                            f"{route.precision_hint(request.precision)}")
    if source.suffix not in route.sources:
        raise JetracerError(f"{route.command} converts {route.source_kind}, not {source}")
    if not source.is_file():
        raise JetracerError(f"model file not found: {source}")
    for name, value in (("max batch", request.max_batch), ("calibration frames", request.calib_frames),
                        ("verification frames", request.verify_frames)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise JetracerError(f"{name} must be a positive integer, got {value!r}")
    check_output(out, request.force, source)


def check_output(out: Path, force: bool, source: Path) -> None:
    """JetracerError unless ``out`` can be written: not the source, not a folder, its folder writable (created if
    needed), and not there already unless ``force``."""
    if out.exists() and out.resolve() == source.resolve():
        raise JetracerError(f"--out {out} is the source model; choose another output file")
    if out.is_dir():
        raise JetracerError(f"--out {out} is a folder; give the file name to write")
    if out.exists() and not force:
        raise JetracerError(f"{out} already exists; pass --force to replace it")
    if out.parent.exists() and not out.parent.is_dir():
        raise JetracerError(f"cannot write {out}: {out.parent} is not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JetracerError(f"cannot create the folder of {out}: {exc.strerror or exc}") from None
    if not os.access(out.parent, os.W_OK):
        raise JetracerError(f"cannot write to {out.parent}: permission denied")


@contextlib.contextmanager
def _staged(out: Path, with_sidecar: bool) -> Iterator[tuple[Path, Path]]:
    """Yields (the temporary path of the result, a work folder), both in one temporary folder beside ``out`` (same
    file system: each rename is atomic). When the block ends without an exception the result, then its sidecar,
    are fsynced, renamed over ``out`` (and its sidecar) and the folder fsynced, so a power cut keeps either the old
    files or the new ones (a crash between the two renames is caught at load by the sidecar's ``artifact_sha256``).
    On any exception nothing at ``out`` is touched. The temporary folder is removed either way."""
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as work:
        candidate = Path(work) / out.name  # the result's own name: loaders that go by the suffix load it
        yield candidate, Path(work)
        staged = [candidate, *([sidecars.sidecar_path(candidate)] if with_sidecar else [])]
        for path in staged:
            fsync_file(path)
        for path in staged:
            os.replace(path, out.with_name(path.name))
        fsync_dir(out.parent)
