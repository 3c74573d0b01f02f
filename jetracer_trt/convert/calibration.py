"""The frames every conversion works on, and what INT8 quantizers calibrate on: real frames (kept apart from the
frames that verify the result), normalized exactly as the runtime normalizes them for the model's contract, and the
FP32 graph with plain FP32 weights.

``split_frames`` serves the whole pipeline (``pipeline.py``); the rest is shared by the ONNX Runtime INT8 route
(``onnxruntime_int8``) and the TensorRT Q/DQ route (``qdq``), so both see the same frames and the same graph.

No torch here; onnx and onnxruntime are imported only inside ``plain_fp32_graph``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..contract import CONTRACT_KEY, POSE, ROAD_FOLLOWING, ModelContract
from ..engines.artifacts import ONNX_SOURCE_SHA256
from ..engines.sidecar import source_hash
from ..errors import JetracerError
from ..preprocess import Preprocessor
from ..verify import MIN_FRAMES, verification_frames


@dataclass
class FrameSplit:
    """RGB uint8 (N, H, W, 3) frames: ``calibration`` sets the INT8 ranges (empty when nothing is calibrated),
    ``verification`` checks the result."""

    calibration: np.ndarray
    verification: np.ndarray
    source: str                       # the dataset or image folder, or "simulator"
    disjoint: bool                    # False when too few frames forced verifying on the calibration frames
    notes: list[str] = field(default_factory=list)


def split_frames(frames_dir: str | os.PathLike | None, calibration_count: int,
                 verification_count: int, task: str = ROAD_FOLLOWING) -> FrameSplit:
    """Frames spread over ``frames_dir`` (a dataset or image folder; when None, simulator frames, or synthetic
    scenes of people for ``task`` pose), split into a calibration and a verification set that share no frame;
    ``calibration_count`` 0: verification frames only.

    Verifying on frames the quantizer has seen would flatter it, so the sets are disjoint whenever there are at
    least ``2 * MIN_FRAMES`` frames (each set shrinks in proportion when there are fewer than asked for); with fewer,
    both use every frame and a note says so. JetracerError for counts below ``MIN_FRAMES`` or an unusable folder.
    """
    for name, count, least in (("calibration", calibration_count, 0), ("verification", verification_count, 1)):
        if isinstance(count, bool) or not isinstance(count, int) or count < least or 0 < count < MIN_FRAMES:
            raise JetracerError(f"{name} needs at least {MIN_FRAMES} frames, got {count!r}")
    if frames_dir is not None:
        root = Path(frames_dir)
        if not root.is_dir():
            raise JetracerError(f"frames folder not found: {root} (give a dataset from `jetracer-trt sim collect` "
                                "or a folder of .jpg/.png images)")
    wanted = calibration_count + verification_count
    frames = verification_frames(frames_dir, wanted, task)  # spread evenly over the whole source
    source = ("synthetic pose scenes" if task == POSE else "simulator") if frames_dir is None else str(frames_dir)
    total = len(frames)
    notes = []
    if not calibration_count:
        return FrameSplit(frames[:0], frames, source, disjoint=True, notes=notes)
    if total < 2 * MIN_FRAMES:
        notes.append(f"only {total} frames in {source}: verified on the calibration frames themselves")
        return FrameSplit(frames, frames, source, disjoint=False, notes=notes)
    verify_n = verification_count if total >= wanted else max(MIN_FRAMES, round(total * verification_count / wanted))
    verify_n = min(verify_n, total - MIN_FRAMES)
    picks = np.unique(np.linspace(0, total - 1, num=verify_n).round().astype(int))
    is_verify = np.zeros(total, dtype=bool)
    is_verify[picks] = True
    calibration, verification = frames[~is_verify][:calibration_count], frames[is_verify]
    if total < wanted:
        notes.append(f"{source} has {total} usable frames, fewer than the {wanted} asked for: calibrated on "
                     f"{len(calibration)}, verified on the other {len(verification)}")
    return FrameSplit(calibration, verification, source, disjoint=True, notes=notes)


class FrameBatches:
    """An ``onnxruntime.quantization.CalibrationDataReader``: frames normalized by the runtime's own
    ``Preprocessor`` for ``contract`` (so calibration sees exactly the values the model will see when it drives),
    in batches, as ``{input: batch}``.

    ORT's calibrators only call ``get_next`` (and ``rewind`` in some versions); duck typing keeps this module free
    of onnxruntime imports. Batches (the model has a dynamic batch axis) make calibration several times faster than
    one frame per run, with the same ranges.
    """

    def __init__(self, frames: np.ndarray, input_name: str, contract: ModelContract, batch: int = 8):
        self.frames = frames
        self.input_name = input_name
        self.batch = batch
        self._preprocess = Preprocessor(contract)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.frames):
            return None
        chunk = self.frames[self._next:self._next + self.batch]
        self._next += len(chunk)
        return {self.input_name: self._preprocess.batch(chunk)}

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self.frames)


def plain_fp32_graph(source: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Writes ``source`` to ``out`` ready for a quantizer: weights as plain FP32 initializers, BatchNormalization
    folded into the Convs, shapes inferred.

    The shipped model stores its weights as FP16 + ``Cast`` (see ``export.py``); a quantizer that finds a Conv weight
    behind a Cast treats it as an activation and leaves the Conv in FP32. ONNX Runtime's own pre-processing
    (``quant_pre_process``: symbolic shape inference, then ORT's basic graph optimizations, which constant-fold the
    Casts and fuse Conv+BatchNormalization, then ONNX shape inference) gives the graph quantizers expect; without it
    ``quantize_static`` can also crash on missing shape information.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, out = Path(source), Path(out)
    try:
        quant_pre_process(str(source), str(out))
    except Exception as exc:  # noqa: BLE001 - ORT and onnx raise many types for a model they cannot handle
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JetracerError(f"cannot prepare {source} for quantization: {first[:300]}") from None
    return out


def record_quantization(proto, source: str | os.PathLike, contract: ModelContract, facts: dict[str, str]) -> None:
    """Sets ``proto``'s ``metadata_props`` to the source model's (its checkpoint's records among them) plus the
    model ``contract``, ``facts`` (precision, how it was quantized and calibrated) and the source's name and
    SHA-256, so a quantized file says what it takes and what it was made from: ``backend auto`` runs it in the
    source's place only when the SHA-256 matches. ONNX Runtime exposes them as the model's custom metadata."""
    import onnx

    source = Path(source)
    props = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    props.update(facts)
    props.update({CONTRACT_KEY: contract.to_json(), "source_model": source.name,
                  ONNX_SOURCE_SHA256: source_hash(source), "converted_by": f"jetracer_trt {__version__}"})
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
