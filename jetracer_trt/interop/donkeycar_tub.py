"""Donkeycar tub v2 (``donkeycar.parts.tub_v2.Tub``, donkeycar 5.x): a folder of JSON-lines catalogs and images.

What donkeycar's ``Tub`` writes (read from its files, donkeycar 5.3.0)::

    tub/manifest.json                five JSON lines: the inputs (["cam/image_array", "user/angle", ...]), their types
                                     (["image_array", "float", ...]), user metadata {}, {"created_at": ..., "sessions":
                                     {...}}, and {"paths": ["catalog_0.catalog", ...], "current_index": N,
                                     "max_len": 1000, "deleted_indexes": [...]}
    tub/catalog_<k>.catalog          one record per line (keys sorted): {"_index": 12, "_session_id": "24-01-31_0",
                                     "_timestamp_ms": ..., "cam/image_array": "12_cam_image_array_.jpg",
                                     "user/angle": 0.1, "user/mode": "user", "user/throttle": 0.3}
    tub/catalog_<k>.catalog_manifest {"created_at", "line_lengths": [...], "path", "start_index"}: a seek table that
                                     reading does not need
    tub/images/                      the frames (JPEG, RGB)

Deleting records in donkeycar only lists their ``_index`` in ``deleted_indexes``; the lines and images stay, and
import leaves them out. ``user/angle`` (-1 full left .. +1 full right, as this project's steering) becomes the
label through the control law run backwards, ``control.target_from_steering``: x = clamp((angle - steering_offset) /
steering_gain, -1, 1) with the ``--control-profile``'s gains (``car``: x = angle), and y = ``--label-y`` (the law
ignores y). Records a pilot steered (``user/mode`` other than ``user``) are left out unless asked for: their
``user/angle`` is the idle stick, not what drove. Export runs the law forwards: angle = clamp(steering_gain * x +
steering_offset, +-steering_limit).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ..control import compute_command, target_from_steering
from ..dataset import Sample, atomic_folder
from ..errors import JetracerError
from ..fileio import atomic_write_bytes, fsync_dir, fsync_file
from .common import ForeignSample, InteropOptions, Skipped, sample_jpeg

MANIFEST = "manifest.json"
IMAGES = "images"
IMAGE_TYPES = ("image_array", "image")
IMAGE_KEY, ANGLE_KEY, THROTTLE_KEY, MODE_KEY = "cam/image_array", "user/angle", "user/throttle", "user/mode"
CATALOG_LEN = 1000  # records per catalog file, donkeycar's default max_catalog_len
EXPORT_INPUTS = [IMAGE_KEY, ANGLE_KEY, THROTTLE_KEY, MODE_KEY]
EXPORT_TYPES = ["image_array", "float", "float", "str"]


def _tubs(src: Path) -> list[Path]:
    """``src`` when it is a tub, else the tubs directly inside it (a donkeycar car folder's ``data/``)."""
    if (src / MANIFEST).exists():
        return [src]
    tubs = sorted(child for child in src.iterdir() if (child / MANIFEST).is_file())
    if not tubs:
        raise JetracerError(f"{src} is not a donkeycar tub (no {MANIFEST}) and holds no tubs")
    return tubs


def read_manifest(tub: Path) -> dict:
    """The five lines of a tub's manifest.json as {"inputs", "types", "metadata", "manifest", "catalogs"}."""
    path = tub / MANIFEST
    try:
        lines = [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
        parsed = [json.loads(line) for line in lines[:5]]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise JetracerError(f"cannot read the donkeycar manifest {path}: {exc}") from None
    shapes = (list, list, dict, dict, dict)
    if len(parsed) < 5 or not all(isinstance(value, shape) for value, shape in zip(parsed, shapes, strict=True)):
        raise JetracerError(f"{path} is not a donkeycar tub v2 manifest (five JSON lines: inputs, types, metadata, "
                            "manifest metadata, catalogs); a tub cut short by a crash cannot tell its deleted records")
    inputs, types, metadata, manifest, catalogs = parsed
    if len(inputs) != len(types):
        raise JetracerError(f"{path}: {len(inputs)} inputs but {len(types)} types")
    if not isinstance(catalogs.get("paths"), list) or not isinstance(catalogs.get("deleted_indexes", []), list):
        raise JetracerError(f"{path}: its catalog line has no \"paths\" list")
    return {"inputs": inputs, "types": types, "metadata": metadata, "manifest": manifest, "catalogs": catalogs}


def read_source(src: Path, options: InteropOptions) -> tuple[list[ForeignSample], list[Skipped]]:
    params = options.control_params()
    found: list[ForeignSample] = []
    skipped: list[Skipped] = []
    for tub in _tubs(src):
        _read_tub(tub, params, options, found, skipped)
    return found, skipped


def _image_key(tub: Path, inputs: list, types: list) -> str:
    kinds = dict(zip(inputs, types, strict=True))
    for key in (ANGLE_KEY, THROTTLE_KEY):
        if key not in kinds:
            raise JetracerError(f"donkeycar tub {tub} records no {key} (its inputs: {', '.join(map(str, inputs))})")
    if kinds.get(IMAGE_KEY) in IMAGE_TYPES:
        return IMAGE_KEY
    for key, kind in kinds.items():
        if kind in IMAGE_TYPES:
            return key
    raise JetracerError(f"donkeycar tub {tub} records no camera image (no input of type image_array)")


def _read_tub(tub: Path, params, options: InteropOptions, found: list, skipped: list) -> None:
    manifest = read_manifest(tub)
    image_key = _image_key(tub, manifest["inputs"], manifest["types"])
    deleted = set(manifest["catalogs"].get("deleted_indexes", []))
    # the tub's creation time names it for good (a folder gets renamed); a hand-made tub may lack it
    created = manifest["manifest"].get("created_at")
    tub_id = f"tub-{created!r}" if isinstance(created, (int, float)) else f"tub-{tub.name}"
    line_number = 0  # donkeycar counts records across catalogs the same way when _index is missing
    for catalog in manifest["catalogs"]["paths"]:
        path = tub / str(catalog)
        try:
            lines = path.read_bytes().split(b"\n")
        except OSError as exc:
            skipped.append(Skipped(f"{tub.name}/{catalog}", f"catalog unreadable ({exc.strerror or exc})"))
            continue
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            where = f"{tub.name}/{catalog}:{number}"
            index, line_number = line_number, line_number + 1
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                skipped.append(Skipped(where, "catalog line is not valid JSON (cut short by a crash?)"))
                continue
            if not isinstance(record, dict):
                skipped.append(Skipped(where, "catalog line is not a JSON object"))
                continue
            if isinstance(record.get("_index"), int):
                index = record["_index"]
            problem = _record_problem(record, index, deleted, image_key, options)
            if problem:
                skipped.append(Skipped(f"{tub.name}#{index}", problem))
                continue
            angle = float(record[ANGLE_KEY])
            x, y = target_from_steering(angle, params, options.label_y)
            meta = {"steering": angle, "throttle": _number(record.get(THROTTLE_KEY)), "mode": record.get(MODE_KEY),
                    "source_index": index, "source_tub": tub.name,
                    "session": f"{tub.name}/{record.get('_session_id', '')}".rstrip("/"),
                    "timestamp_ms": record.get("_timestamp_ms")}
            meta = {key: value for key, value in meta.items() if value is not None}
            found.append(ForeignSample(f"{tub_id}/{index}", tub / IMAGES / str(record[image_key]),
                                       _fixed_label(x, y), meta))


def _record_problem(record: dict, index: int, deleted: set, image_key: str, options: InteropOptions) -> str:
    if index in deleted:
        return "deleted in the tub (manifest.json deleted_indexes)"
    if not isinstance(record.get(image_key), str) or not record[image_key]:
        return f"record has no {image_key} image"
    if _number(record.get(ANGLE_KEY)) is None:
        return f"record has no finite {ANGLE_KEY}"
    mode = record.get(MODE_KEY, "user")
    if mode != "user" and not options.include_pilot_modes:
        return f"driven by the pilot (user/mode {mode!r}), so user/angle is not what steered"
    return ""


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _fixed_label(x: float, y: float):
    return lambda width, height: (x, y)


# ---------------------------------------------------------------------------------------------------------------------
# Export


def export(samples: list[Sample], root: Path, dst: Path, options: InteropOptions, on_progress=None) -> dict:
    """Writes the samples as one new tub at ``dst`` (built beside it and renamed into place when complete, so a
    killed export leaves no half tub; running it again starts over). ``user/angle`` comes from the label through the
    control law; ``user/throttle`` is the sample's recorded throttle when it has one, else the law's."""
    params = options.control_params()
    now = time.time()
    session = f"{time.strftime('%y-%m-%d', time.localtime(now))}_0"
    records: list[str] = []
    unreadable = 0
    try:
        with atomic_folder(dst, "exporting") as building:
            (building / IMAGES).mkdir()
            for number, sample in enumerate(samples, start=1):
                image = sample_jpeg(sample)
                if image is None:
                    unreadable += 1
                else:
                    records.append(_export_record(building, sample, len(records), image[0], params, session, now))
                if on_progress:
                    on_progress(number, len(samples))
            fsync_dir(building / IMAGES)
            paths = _write_catalogs(building, records, now)
            manifest = [EXPORT_INPUTS, EXPORT_TYPES, {},
                        {"created_at": now, "sessions": {"all_full_ids": [session], "last_id": 0,
                                                         "last_full_id": session}},
                        {"paths": paths, "current_index": len(records), "max_len": CATALOG_LEN, "deleted_indexes": []}]
            atomic_write_bytes(building / MANIFEST, "".join(json.dumps(line) + "\n" for line in manifest).encode())
    except OSError as exc:
        raise JetracerError(f"cannot write the tub {dst}: {exc.strerror or exc}") from None
    return {"exported": len(records), "unreadable": unreadable, "tub": str(dst)}


def _export_record(tub: Path, sample: Sample, index: int, jpeg: bytes, params, session: str, now: float) -> str:
    """Writes one sample's image into the tub and returns its catalog line (keys sorted, as donkeycar writes)."""
    name = f"{index}_{IMAGE_KEY.replace('/', '_')}_.jpg"  # donkeycar's own image names
    path = tub / IMAGES / name
    path.write_bytes(jpeg)  # inside the folder being built, so no rename per file: the folder's rename is the one
    fsync_file(path)
    steering, law_throttle = compute_command(sample.x, sample.y, params)
    throttle = _number(sample.meta.get("throttle"))
    return json.dumps({"_index": index, "_session_id": session, "_timestamp_ms": int(now * 1000) + index,
                       IMAGE_KEY: name, ANGLE_KEY: steering, MODE_KEY: "user",
                       THROTTLE_KEY: law_throttle if throttle is None else throttle}, sort_keys=True)


def _write_catalogs(tub: Path, records: list[str], now: float) -> list[str]:
    """catalog_<k>.catalog of CATALOG_LEN records each, with their .catalog_manifest; returns the catalog names."""
    paths = []
    for k, start in enumerate(range(0, max(len(records), 1), CATALOG_LEN)):
        lines = [record + "\n" for record in records[start:start + CATALOG_LEN]]
        name = f"catalog_{k}.catalog"
        atomic_write_bytes(tub / name, "".join(lines).encode())
        seek_table = {"created_at": now, "line_lengths": [len(line) for line in lines],
                      "path": f"catalog_{k}.catalog_manifest", "start_index": start}
        atomic_write_bytes(tub / f"catalog_{k}.catalog_manifest", (json.dumps(seek_table, sort_keys=True)
                                                                  + "\n").encode())
        paths.append(name)
    return paths
