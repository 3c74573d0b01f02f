"""What INT8 quantizers calibrate on: real frames (kept apart from the frames that verify the result), normalized
exactly as the runtime normalizes them, and the FP32 graph with plain FP32 weights.

Used by the ONNX Runtime INT8 route (``onnxruntime_int8``) and the TensorRT Q/DQ route (``qdq``), so both see the
same frames and the same graph.

No torch here; onnx and onnxruntime are imported only inside ``plain_fp32_graph``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..engines.artifacts import ONNX_SOURCE_SHA256
from ..engines.sidecar import source_hash
from ..errors import JetracerError
from ..preprocess import Preprocessor
from ..verify import MIN_FRAMES, verification_frames


@dataclass
class CalibrationFrames:
    """RGB uint8 (N, H, W, 3) frames: ``calibration`` sets the INT8 ranges, ``verification`` checks the result."""

    calibration: np.ndarray
    verification: np.ndarray
    source: str                       # the dataset or image folder, or "simulator"
    disjoint: bool                    # False when too few frames forced verifying on the calibration frames
    notes: list[str] = field(default_factory=list)


def split_frames(frames_dir: str | os.PathLike | None, calibration_count: int,
                 verification_count: int) -> CalibrationFrames:
    """Frames spread over ``frames_dir`` (a dataset or image folder; simulator frames when None), split into a
    calibration and a verification set that share no frame.

    Verifying on frames the quantizer has seen would flatter it, so the sets are disjoint whenever there are at
    least ``2 * MIN_FRAMES`` frames (each set shrinks in proportion when there are fewer than asked for); with fewer,
    both use every frame and a note says so. JetracerError for counts below ``MIN_FRAMES`` or an unusable folder.
    """
    for name, count in (("calibration", calibration_count), ("verification", verification_count)):
        if isinstance(count, bool) or not isinstance(count, int) or count < MIN_FRAMES:
            raise JetracerError(f"{name} needs at least {MIN_FRAMES} frames, got {count!r}")
    if frames_dir is not None:
        root = Path(frames_dir)
        if not root.is_dir():
            raise JetracerError(f"calibration folder not found: {root} (give a dataset from `jetracer-trt sim collect` "
                                "or a folder of .jpg/.png images)")
    wanted = calibration_count + verification_count
    frames = verification_frames(frames_dir, wanted)  # spread evenly over the whole source
    source = "simulator" if frames_dir is None else str(frames_dir)
    total = len(frames)
    notes = []
    if total < 2 * MIN_FRAMES:
        notes.append(f"only {total} frames in {source}: verified on the calibration frames themselves")
        return CalibrationFrames(frames, frames, source, disjoint=False, notes=notes)
    verify_n = verification_count if total >= wanted else max(MIN_FRAMES, round(total * verification_count / wanted))
    verify_n = min(verify_n, total - MIN_FRAMES)
    picks = np.unique(np.linspace(0, total - 1, num=verify_n).round().astype(int))
    is_verify = np.zeros(total, dtype=bool)
    is_verify[picks] = True
    calibration, verification = frames[~is_verify][:calibration_count], frames[is_verify]
    if total < wanted:
        notes.append(f"{source} has {total} usable frames, fewer than the {wanted} asked for: calibrated on "
                     f"{len(calibration)}, verified on the other {len(verification)}")
    return CalibrationFrames(calibration, verification, source, disjoint=True, notes=notes)


def normalized_batch(frames: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) float32: each frame through the runtime's own ``Preprocessor``, so calibration sees exactly the
    values the model will see when it drives."""
    pre = Preprocessor()
    out = np.empty((len(frames), 3, pre.height, pre.width), dtype=np.float32)
    for i, frame in enumerate(frames):
        out[i] = pre(frame)[0]
    return out


class FrameBatches:
    """An ``onnxruntime.quantization.CalibrationDataReader``: normalized frames in batches, as ``{input: batch}``.

    ORT's calibrators only call ``get_next`` (and ``rewind`` in some versions); duck typing keeps this module free
    of onnxruntime imports. Batches (the model has a dynamic batch axis) make calibration several times faster than
    one frame per run, with the same ranges.
    """

    def __init__(self, frames: np.ndarray, input_name: str, batch: int = 8):
        self.frames = frames
        self.input_name = input_name
        self.batch = batch
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.frames):
            return None
        chunk = self.frames[self._next:self._next + self.batch]
        self._next += len(chunk)
        return {self.input_name: normalized_batch(chunk)}

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


def record_quantization(proto, source: str | os.PathLike, facts: dict[str, str]) -> None:
    """Sets ``proto``'s ``metadata_props`` to the source model's (architecture, normalization, checkpoint) plus
    ``facts`` (precision, how it was quantized and calibrated) and the source's name and SHA-256, so a quantized
    file says what it was made from: ``backend auto`` runs it in the source's place only when the SHA-256 matches
    (the source's own ``checkpoint_sha256`` is kept too). ONNX Runtime exposes them as the model's custom
    metadata."""
    import onnx

    source = Path(source)
    props = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    props.update(facts)
    props.update({"source_model": source.name, ONNX_SOURCE_SHA256: source_hash(source),
                  "converted_by": f"jetracer_trt {__version__}"})
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
