"""Where converted models sit beside their source, so that ``backend auto`` can find them without being told, and
what each of them records about the file it was made from, so that it is used only with that file.

``models/road_following.onnx`` is the source; ``jetracer-trt convert`` writes, unless given another ``--out``,
``road_following.int8.onnx`` (ONNX Runtime INT8), ``road_following.<precision>.engine`` (TensorRT, with
``.engine.json`` beside it), ``road_following.<precision>.<device>.pt2`` (PyTorch AOTInductor) and
``road_following.<precision>.trt.pth`` (torch2trt). ``road_following.pt`` is the checkpoint the ONNX was exported
from (``jetracer-trt export`` writes ``<checkpoint stem>.onnx`` beside the checkpoint unless given ``--out``).

Every made file records the SHA-256 of the file it was made from, inside itself where its format has room for it:

| file                     | made from         | where the SHA-256 is recorded                                    |
|--------------------------|-------------------|------------------------------------------------------------------|
| ``<stem>.onnx`` (export) | the checkpoint    | ONNX ``metadata_props`` ``checkpoint_sha256`` (``export.py``)    |
| ``<stem>.int8.onnx``     | ``<stem>.onnx``   | ONNX ``metadata_props`` ``source_sha256`` (``convert``)          |
| ``<stem>.*.pt2``         | the checkpoint    | AOTInductor package metadata ``jetracer_source_sha256``          |
| ``.engine``, ``.trt.pth``| ``.onnx`` / ``.pt``| the sidecar ``<file>.json``, ``source_sha256`` (``sidecar.py``) |

The readers below take only the record, not the model: ``onnx_metadata`` walks the top level of the ONNX protobuf
and skips the graph without reading it (no ``onnx`` package needed: the driving runtime has only ONNX Runtime), and
``package_metadata`` reads one small JSON member of the package's zip archive (no torch needed).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

SUFFIXES = {"onnxruntime": ".onnx", "tensorrt": ".engine", "torch2trt": ".trt.pth"}

# the keys of the records in the table above
ONNX_CHECKPOINT_SHA256 = "checkpoint_sha256"
ONNX_SOURCE_SHA256 = "source_sha256"
PACKAGE_SOURCE_SHA256 = "jetracer_source_sha256"

_ONNX_METADATA_FIELD = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {key = 1, value = 2}
_PACKAGE_METADATA_SUFFIX = "_metadata.json"  # AOTInductor's <archive>/data/aotinductor/<model>/<hash>.*_metadata.json


def checkpoint_path(source) -> Path:
    """The PyTorch checkpoint ``source`` (an ``.onnx`` or a converted file) was made from: ``<stem>.pt`` beside it."""
    source = Path(source)
    return source.with_name(f"{source.name.split('.')[0]}.pt")


def converted_path(source, backend: str, precision: str, device: str = "cuda") -> Path:
    """The conventional file name of ``source`` converted for ``backend`` at ``precision``."""
    source = Path(source)
    stem = source.name.split(".")[0]
    if backend == "torch":
        return source.with_name(f"{stem}.{precision}.{device}.pt2")
    if backend == "onnxruntime" and precision == "fp32":
        return source.with_name(f"{stem}.onnx")
    return source.with_name(f"{stem}.{precision}{SUFFIXES[backend]}")


def short_hash(sha256: str | None) -> str:
    """The first 12 hex digits of a SHA-256, enough to tell two files apart in a message."""
    return f"{sha256[:12]}..." if sha256 else "none"


# ---------------------------------------------------------------------------------------------------------------------
# Reading the records


def onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file ``path`` as a dict, read without loading the model: the top-level
    fields of the ``ModelProto`` are walked and the graph is skipped by its length. ValueError for a file that is
    not a well-formed protobuf message; OSError when it cannot be read."""
    props: dict[str, str] = {}
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while f.tell() < size:
            field, wire = divmod(_varint(f), 8)
            if wire == 0:
                _varint(f)
            elif wire in (1, 5):  # fixed 64 / 32 bits
                f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
            elif wire == 2:
                length = _varint(f)
                if f.tell() + length > size:
                    raise ValueError(f"field {field} runs past the end of the file")
                if field == _ONNX_METADATA_FIELD:
                    key, value = _string_pair(f.read(length))
                    props[key] = value
                else:
                    f.seek(length, os.SEEK_CUR)
            else:
                raise ValueError(f"wire type {wire} of field {field} is not one ONNX uses")
        if f.tell() != size:
            raise ValueError("the last field runs past the end of the file")
    return props


def package_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata an AOTInductor package (``.pt2``) was compiled with (``AOTICompiledModel.get_metadata()``
    without loading the package). ValueError for a file that is not such a package; OSError when unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in sorted(archive.namelist()):
                if "/data/aotinductor/" in f"/{name}" and name.endswith(_PACKAGE_METADATA_SUFFIX):
                    data = json.loads(archive.read(name).decode("utf-8"))
                    if isinstance(data, dict):
                        return {str(k): str(v) for k, v in data.items()}
    except (zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a readable AOTInductor package ({exc})") from None
    raise ValueError("the package holds no AOTInductor metadata")


def recorded_hash(path: str | os.PathLike, key: str) -> tuple[str | None, str | None]:
    """(the SHA-256 that ``path`` records under ``key``, None) or (None, why there is none): an ONNX file's
    ``metadata_props`` or a ``.pt2`` package's metadata."""
    path = Path(path)
    reader = package_metadata if path.suffix == ".pt2" else onnx_metadata
    try:
        value = reader(path).get(key)
    except OSError as exc:
        return None, f"{path.name} cannot be read ({exc.strerror or exc})"
    except ValueError as exc:
        return None, f"{path.name} is damaged or not what its name says: {exc}"
    if not value:
        return None, (f"{path.name} records no {key} (made before jetracer_trt recorded what each file was made "
                      "from)")
    return value, None


def _varint(f) -> int:
    """One protobuf base-128 varint from the file ``f``; ValueError at the end of the file or past 10 bytes."""
    value = shift = 0
    for _ in range(10):
        byte = f.read(1)
        if not byte:
            raise ValueError("the file ends inside a field")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    raise ValueError("a varint longer than 10 bytes")


def _string_pair(entry: bytes) -> tuple[str, str]:
    """(key, value) of a serialized ``StringStringEntryProto``."""
    fields = {1: "", 2: ""}
    f = io.BytesIO(entry)
    while f.tell() < len(entry):
        field, wire = divmod(_varint(f), 8)
        if wire != 2:
            raise ValueError(f"metadata entry field {field} has wire type {wire}, not a string")
        length = _varint(f)
        data = f.read(length)
        if len(data) != length:
            raise ValueError("a metadata entry runs past its end")
        if field in fields:
            fields[field] = data.decode("utf-8", errors="replace")
    return fields[1], fields[2]
