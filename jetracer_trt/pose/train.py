"""Training a pose network (``pose/network.py``: trt_pose's ``resnet18_baseline_att`` by default, or our small
``pose_small_resnet18_l2`` with ``--arch``), run by ``jetracer-trt train --task pose`` (``run_cli``;
``cli/train.py`` parses the options):

```bash
jetracer-trt train --task pose --data synthetic --out runs/pose --epochs 10          # fresh scenes every epoch
jetracer-trt train --task pose --data synthetic --out runs/pose --epochs 100 --minutes 3.4   # a time budget
jetracer-trt sim collect --task pose --out data-pose --frames 50000 && \\
jetracer-trt train --task pose --data data-pose --out runs/pose                      # or from a recorded dataset
jetracer-trt train --task pose --data synthetic --init resnet18_baseline_att_224x224_A_epoch_249.pth --out runs/ft
jetracer-trt train --task pose --out runs/pose --resume --epochs 14                  # continue
jetracer-trt train --task pose --arch pose_small_resnet18_l2 --data synthetic --out runs/small --minutes 6
```

* Network: ``arch`` (config/pose_train.yaml, ``--arch``), one of ``network.ARCHITECTURES``; the checkpoints record
  it. ``--init`` and ``--resume`` train the network their file holds (``--arch``, if given, must name it).

* Data: ``--data synthetic`` renders ``scenes_per_epoch`` new scenes per epoch (``data.render_scene``; epoch ``e``
  takes seeds ``e * scenes_per_epoch ...``, below the held-out ones) in the DataLoader workers; ``--data DIR ...``
  reads pose datasets (``data.read_pose_dataset``). Workers hand over only the uint8 frame and the (people,
  keypoints, 3) labels; the targets are drawn on the training device (``make_targets``), so nothing large crosses
  between processes.
* Targets and loss as trt_pose's: confidence maps and part affinity fields at 1/4 of the input, drawn as
  trt_pose's ``generate_cmap`` and ``generate_paf`` draw them (the widths are in config/pose_train.yaml), mean
  squared error of each, summed. With ``mirror`` every batch is trained on twice, as rendered and mirrored
  (``mirror_batch``: left and right keypoints swap places), which doubles what each rendered scene teaches.
* ``minutes`` (config/pose_train.yaml, ``--minutes``) is a time budget: the learning rate follows the warm-up and
  cosine of whichever runs out first, the steps or the time, and the run ends, scored and saved, when the time is
  spent; ``epochs`` then is only an upper bound.
* CUDA: channels_last, autocast in bf16 where the GPU supports it (else fp16 with a GradScaler). CPU: FP32.
  AdamW, linear warm-up, cosine decay (``train.make_optimizer``, ``train.lr_factor``).
* Every epoch is scored on ``val_scenes`` held-out scenes (seeds from ``data.VALIDATION_SEEDS``): the loss and PCK@0.1
  (``evaluate.py``); ``best.pt`` is the epoch with the best PCK. Files as the road-following trainer writes them:
  ``RUN/metrics.jsonl``, ``RUN/loss.png``, ``RUN/last.pt`` (full state, ``--resume``), ``RUN/best.pt`` (FP16
  weights, the pose model contract with its topology, ``pose/checkpoint.py``) and, unless ``--no-export``,
  ``RUN/best.onnx`` exported from it and verified.

The order of the scenes depends only on (seed, epoch), so a run resumed at an epoch boundary continues as an
uninterrupted one would (up to GPU non-determinism).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import load_config
from ..contract import ModelContract, pose_contract
from ..dataset import load_image
from ..errors import JetracerError
from ..model import imagenet_weights_path, load_torch_file, save_checkpoint
from ..preprocess import normalize_batch_torch, resize
from ..train import TrainResult, close_loader, lr_factor, make_loader, make_optimizer, prepare_run_dir, \
    resolve_device, resume_progress, write_loss_plot, write_metrics
from .checkpoint import load_pose_checkpoint, make_pose_checkpoint, pose_record
from .data import EVALUATION_SEEDS, MAX_PEOPLE, VALIDATION_SEEDS, pad_people, read_pose_dataset, render_scene
from .evaluate import ALPHA, PckResult, pck_of_maps
from .network import VARIANT, architecture_of, build_network, check_architecture, load_imagenet_backbone
from .topology import PoseTopology, load_topology

log = logging.getLogger(__name__)

BEST_NAME, LAST_NAME, METRICS_NAME, PLOT_NAME = "best.pt", "last.pt", "metrics.jsonl", "loss.png"
SYNTHETIC = "synthetic"  # the --data word for scenes rendered while training
VAL_WORKERS = 4  # the validation scenes are few: a few processes render them while the GPU scores the last batch
RESUMABLE_OVERRIDES = ("epochs", "workers")
_SETTINGS = ("epochs", "scenes_per_epoch", "batch_size", "lr", "weight_decay", "warmup_fraction", "min_lr_ratio",
             "val_scenes", "seed", "workers", "weights", "cmap_stdev", "paf_stdev", "mirror", "minutes", "arch")


# ---------------------------------------------------------------------------------------------------------------------
# Settings


def resolve_settings(overrides: Mapping[str, Any] | None = None,
                     base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``base`` (default: config/pose_train.yaml) with the non-None ``overrides``, validated."""
    settings = dict(base) if base is not None else load_config("pose_train")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _SETTINGS:
            raise JetracerError(f"unknown pose training setting {key!r}")
        settings[key] = value
    missing = [key for key in _SETTINGS if key not in settings]
    if missing:
        raise JetracerError(f"pose training settings lack {', '.join(missing)} (config/pose_train.yaml)")

    def whole(key: str, least: int) -> None:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise JetracerError(f"{key.replace('_', ' ')} must be an integer >= {least}, got {value!r}")

    def number(key: str, low: float, high: float) -> None:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise JetracerError(f"{key.replace('_', ' ')} must be a number in [{low}, {high}], got {value!r}")

    for key, least in (("epochs", 1), ("scenes_per_epoch", 1), ("batch_size", 1), ("val_scenes", 0), ("seed", 0),
                       ("workers", 0)):
        whole(key, least)
    number("lr", 1e-8, 1.0)
    number("weight_decay", 0.0, 1.0)
    number("warmup_fraction", 0.0, 0.99)
    number("min_lr_ratio", 0.0, 1.0)
    number("cmap_stdev", 0.1, 10.0)
    number("paf_stdev", 0.1, 10.0)
    if settings["weights"] not in ("imagenet", "none"):
        raise JetracerError(f"weights must be 'imagenet' or 'none', got {settings['weights']!r}")
    if not isinstance(settings["mirror"], bool):
        raise JetracerError(f"mirror must be true or false, got {settings['mirror']!r}")
    if settings["minutes"] is not None:
        number("minutes", 0.01, 1e6)
    check_architecture(settings["arch"], "arch")
    return settings


# ---------------------------------------------------------------------------------------------------------------------
# Data


class SceneFrames(torch.utils.data.Dataset):
    """Synthetic scenes: item ``k`` is the scene of seed ``first + k`` as (uint8 (H, W, 3) frame, (MAX_PEOPLE, C, 3)
    keypoints, (MAX_PEOPLE, 4) boxes), rendered in the worker that asks for it. For training (``first`` 0) the
    sampler hands out the epoch's seeds themselves."""

    def __init__(self, topology: PoseTopology, count: int, first: int = 0):
        self.topology = topology
        self.count = count
        self.first = first

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scene = render_scene(self.first + int(key), self.topology)
        return _item(scene.image, scene.keypoints, scene.boxes)


class StoredFrames(torch.utils.data.Dataset):
    """Samples of pose datasets: item ``i`` as ``SceneFrames`` gives it, the frame resized to the input size (and
    its labels scaled with it) when it is another size."""

    def __init__(self, samples: Sequence, size: tuple[int, int]):
        self.paths = np.array([str(s.image_path) for s in samples])
        self.keypoints = [s.keypoints for s in samples]
        self.boxes = [s.boxes for s in samples]
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frame = load_image(self.paths[index])
        scale = np.array([self.size[0] / frame.shape[1], self.size[1] / frame.shape[0]], dtype=np.float32)
        keypoints, boxes = self.keypoints[index].copy(), self.boxes[index].copy()
        keypoints[:, :, :2] *= scale
        boxes *= np.tile(scale, 2)
        return _item(resize(frame, self.size), keypoints, boxes)


def _item(frame: np.ndarray, keypoints: np.ndarray, boxes: np.ndarray):
    padded_boxes = np.zeros((MAX_PEOPLE, 4), dtype=np.float32)
    padded_boxes[:min(len(boxes), MAX_PEOPLE)] = boxes[:MAX_PEOPLE]
    return (torch.from_numpy(np.ascontiguousarray(frame)), torch.from_numpy(pad_people(keypoints)),
            torch.from_numpy(padded_boxes))


class EpochOrder(torch.utils.data.Sampler):
    """Batches of item keys for one epoch, depending only on (seed, epoch): the scene seeds of that epoch
    (synthetic) or a shuffle of the dataset's indices."""

    def __init__(self, size: int, batch_size: int, seed: int, synthetic: bool):
        self.size, self.batch_size, self.seed, self.synthetic, self.epoch = size, batch_size, seed, synthetic, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 7_919)
        order = torch.randperm(self.size, generator=generator)
        if self.synthetic:
            order = (order + self.epoch * self.size) % EVALUATION_SEEDS
        keys = order.tolist()
        for start in range(0, len(keys) - self.batch_size + 1, self.batch_size):
            yield keys[start:start + self.batch_size]

    def __len__(self) -> int:
        return self.size // self.batch_size


def mirror_index(topology: PoseTopology) -> list[int]:
    """For each keypoint, the one it becomes in a mirrored frame (left and right swap places; others stay)."""
    names = list(topology.keypoints)

    def mirrored(name: str) -> str:
        for a, b in (("left_", "right_"), ("right_", "left_")):
            if name.startswith(a) and b + name[len(a):] in names:
                return b + name[len(a):]
        return name

    return [names.index(mirrored(name)) for name in names]


def mirror_batch(images: torch.Tensor, keypoints: torch.Tensor, flip: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A uint8 (N, H, W, 3) batch and its (N, P, C, 3) labels, mirrored left to right: a pixel x (spanning
    [x, x + 1)) goes to W - x, and left and right keypoints trade places (``mirror_index``)."""
    keypoints = keypoints[:, :, flip].clone()
    keypoints[..., 0] = images.shape[2] - keypoints[..., 0]
    return images.flip(2), keypoints


class _Clock:
    """The time a run has trained, against its budget (``minutes``; None: none)."""

    def __init__(self, minutes: float | None, already_s: float) -> None:
        self.budget_s = None if minutes is None else 60.0 * minutes
        self.already_s = already_s
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return self.already_s + time.perf_counter() - self.started

    def progress(self) -> float:
        return 0.0 if self.budget_s is None else min(1.0, self.elapsed() / self.budget_s)

    def out_of_time(self) -> bool:
        return self.budget_s is not None and self.elapsed() >= self.budget_s


# ---------------------------------------------------------------------------------------------------------------------
# Targets and loss


def make_targets(keypoints: torch.Tensor, topology: PoseTopology, map_size: tuple[int, int],
                 image_size: tuple[int, int], cmap_stdev: float, paf_stdev: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cmap (N, C, H, W), paf (N, 2K, H, W)) float32 targets, on ``keypoints``' device, for labels (N, P, C, 3)
    (x, y, v) in pixels of images of ``image_size`` (width, height); ``map_size`` is (height, width).

    As trt_pose's ``generate_cmap`` and ``generate_paf``: keypoints with v > 0 (visible or hidden, as COCO labels
    them), pixel centres at ``(i + 0.5)``; cmap is the largest of the people's ``exp(-d^2 / cmap_stdev^2)``; for
    each link with both ends labelled, paf channel 2k (rows) and 2k + 1 (columns) get the link's unit vector times
    ``exp(-d^2 / paf_stdev^2)``, d the distance to the segment, summed over people."""
    h, w = map_size
    width, height = image_size
    kp = keypoints.float()
    labelled = kp[..., 2] > 0                                            # (N, P, C)
    col = kp[..., 0] * (w / width)                                       # map coordinates
    row = kp[..., 1] * (h / height)
    cols = torch.arange(w, device=kp.device, dtype=torch.float32) + 0.5
    rows = torch.arange(h, device=kp.device, dtype=torch.float32) + 0.5
    var = cmap_stdev ** 2
    gx = torch.exp(-(cols - col[..., None]) ** 2 / var)                  # (N, P, C, W)
    gy = torch.exp(-(rows - row[..., None]) ** 2 / var) * labelled[..., None]
    cmap = (gy[..., :, None] * gx[..., None, :]).amax(dim=1)            # (N, C, H, W)

    links = torch.as_tensor(np.asarray(topology.skeleton), device=kp.device, dtype=torch.long)  # (K, 2)
    a_row, a_col, b_row, b_col = row[:, :, links[:, 0]], col[:, :, links[:, 0]], row[:, :, links[:, 1]], \
        col[:, :, links[:, 1]]                                           # (N, P, K)
    both = labelled[:, :, links[:, 0]] & labelled[:, :, links[:, 1]]
    ab_row, ab_col = b_row - a_row, b_col - a_col
    length = torch.sqrt(ab_row ** 2 + ab_col ** 2) + 1e-5
    u_row, u_col = ab_row / length, ab_col / length
    ac_row = rows.view(1, 1, 1, h, 1) - a_row[..., None, None]          # (N, P, K, H, 1)
    ac_col = cols.view(1, 1, 1, 1, w) - a_col[..., None, None]          # (N, P, K, 1, W)
    u_row5, u_col5, length5 = (t[..., None, None] for t in (u_row, u_col, length))
    along = ac_row * u_row5 + ac_col * u_col5                           # (N, P, K, H, W)
    beyond = torch.where(along < 0, along, torch.clamp(along - length5, min=0))
    across = ac_row * u_col5 - ac_col * u_row5
    scale = torch.exp(-(beyond ** 2 + across ** 2) / paf_stdev ** 2) * both[..., None, None]
    paf = torch.stack([(scale * u_row5).sum(dim=1), (scale * u_col5).sum(dim=1)], dim=2)  # (N, K, 2, H, W)
    return cmap, paf.flatten(1, 2)


def pose_loss(cmap: torch.Tensor, paf: torch.Tensor, cmap_target: torch.Tensor, paf_target: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(cmap, paf) mean squared errors in float32, trt_pose's loss (it trains on their sum)."""
    return F.mse_loss(cmap.float(), cmap_target), F.mse_loss(paf.float(), paf_target)


# ---------------------------------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def validate(model: torch.nn.Module, loader, device: torch.device, amp_dtype, contract: ModelContract,
             settings: Mapping[str, Any]) -> dict[str, Any]:
    """{"val_loss", "val_cmap_loss", "val_paf_loss", "val_pck", "val_people", "val_found"} on the held-out
    scenes, without augmentation."""
    model.eval()
    topology = contract.pose_topology()
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    batches = 0
    result = PckResult(ALPHA)
    for images, keypoints, boxes in loader:
        images, keypoints = images.to(device, non_blocking=True), keypoints.to(device, non_blocking=True)
        cmap, paf = _forward(model, images, contract, amp_dtype)
        targets = _targets(keypoints, contract, settings, cmap.shape[2:])
        sums += torch.stack(pose_loss(cmap, paf, *targets)).double()
        batches += 1
        labels = [(k[people], b[people]) for k, b in zip(keypoints.cpu().numpy(), boxes.numpy(), strict=True)
                  for people in [k[:, :, 2].max(axis=1) > 0]]
        result.merge(pck_of_maps(cmap.float().cpu().numpy(), paf.float().cpu().numpy(), labels, topology,
                                 contract.input_size))
    if not batches:
        return {}
    cmap_loss, paf_loss = (sums / batches).tolist()
    return {"val_loss": cmap_loss + paf_loss, "val_cmap_loss": cmap_loss, "val_paf_loss": paf_loss,
            "val_pck": result.pck, "val_people": result.people, "val_found": result.found}


def _forward(model, images: torch.Tensor, contract: ModelContract, amp_dtype):
    inputs = normalize_batch_torch(images, contract)
    if images.device.type == "cuda":
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with torch.autocast(images.device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
        return model(inputs)


def _targets(keypoints: torch.Tensor, contract: ModelContract, settings: Mapping[str, Any], map_size):
    return make_targets(keypoints, contract.pose_topology(), tuple(map_size), contract.input_size,
                        settings["cmap_stdev"], settings["paf_stdev"])


# ---------------------------------------------------------------------------------------------------------------------
# The run


def _sources(data: Sequence[str] | None) -> tuple[bool, list[str]]:
    """(synthetic, dataset folders) of ``--data``: the word ``synthetic``, or pose dataset folders."""
    data = [str(d) for d in (data or [])]
    synthetic = SYNTHETIC in data
    folders = [d for d in data if d != SYNTHETIC]
    if not data:
        raise JetracerError(f"train --task pose needs --data {SYNTHETIC} (scenes rendered while training) or pose "
                            "dataset folders from `jetracer-trt sim collect --task pose`")
    if synthetic and folders:
        raise JetracerError(f"--data takes either {SYNTHETIC} or pose dataset folders, not both")
    return synthetic, [str(Path(d).absolute()) for d in folders]


def _initial_network(init: str | None, topology: PoseTopology, weights: str, architecture: str
                     ) -> tuple[torch.nn.Module, str]:
    """The network (of ``architecture``) a new run starts from, and what it started from."""
    if init:
        model = load_pose_checkpoint(init, topology)[0]
        if architecture_of(model) != architecture:
            raise JetracerError(f"--init {Path(init).name} holds a {architecture_of(model)}, not a {architecture}; "
                                f"leave --arch out or give --arch {architecture_of(model)}")
        return model, f"init {Path(init).name}"
    model = build_network(architecture, topology)
    if weights == "imagenet":
        path = imagenet_weights_path()
        if path.is_file():
            load_imagenet_backbone(model, load_torch_file(path))
            return model, "imagenet"
        log.warning("ImageNet weights are not in the local torch hub cache (%s); training from scratch (never "
                    "downloaded)", path)
    return model, "none"


def train_pose(data: Sequence[str] | None, out_dir: str | os.PathLike, *, overrides: Mapping[str, Any] | None = None,
               resume: bool = False, device: str = "auto", max_steps: int | None = None, init: str | None = None,
               progress: bool | None = None) -> TrainResult:
    """Trains (or, with ``resume``, continues) a pose run in ``out_dir``; see the module docstring. ``overrides``:
    config/pose_train.yaml keys; ``max_steps`` ends the run after that many optimizer steps in all (the epoch then
    ends early, is scored and saved, marked ``partial``); ``init``: a pose checkpoint or trt_pose weights to start
    from."""
    from tqdm import tqdm

    run_dir = prepare_run_dir(out_dir)
    paths = {name: run_dir / name for name in (BEST_NAME, LAST_NAME, METRICS_NAME, PLOT_NAME)}
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise JetracerError(f"--max-steps must be an integer >= 1, got {max_steps!r}")
    state: dict[str, Any] | None = None
    if resume:
        state = _load_resume_state(paths[LAST_NAME])
        saved = dict(state["train_config"])
        kept = {k: v for k, v in (overrides or {}).items() if v is not None and k not in RESUMABLE_OVERRIDES
                and v != saved.get(k)}
        if kept:
            log.warning("--resume keeps the run's own settings; ignoring %s", ", ".join(f"{k}={v}" for k, v in
                                                                                         kept.items()))
        settings = resolve_settings({k: v for k, v in (overrides or {}).items() if k in RESUMABLE_OVERRIDES},
                                    base={**load_config("pose_train"), **saved})
        data = data or state.get("data")
        _, _, contract = pose_record(state, paths[LAST_NAME])
    else:
        settings = resolve_settings(overrides)
        if init and (overrides or {}).get("arch") is None:  # fine-tuning trains the network the file holds
            from .checkpoint import checkpoint_architecture

            settings["arch"] = checkpoint_architecture(load_torch_file(Path(init)), Path(init).name)
        contract = pose_contract(load_topology())
        if paths[LAST_NAME].exists():
            log.warning("%s already holds a run; starting over (pass --resume to continue it)", run_dir)
    synthetic, folders = _sources(data)
    topology = contract.pose_topology()
    dev = resolve_device(device)
    torch.manual_seed(settings["seed"])
    if state is not None:
        architecture = state.get("architecture", VARIANT)
        model, weights_init = build_network(architecture, topology), state.get("weights_init", "none")
        model.load_state_dict(state["state_dict"])
        settings["arch"] = architecture
    else:
        model, weights_init = _initial_network(init, topology, settings["weights"], settings["arch"])
    cuda = dev.type == "cuda"
    amp_dtype = None
    if cuda:
        torch.backends.cudnn.benchmark = True
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    model = model.to(dev, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    if synthetic:
        train_set = SceneFrames(topology, settings["scenes_per_epoch"])
        size = settings["scenes_per_epoch"]
    else:
        samples = []
        for folder in folders:
            found, skipped = read_pose_dataset(folder)
            log.info("pose dataset %s: %d samples%s", folder, len(found), f", {skipped} skipped" if skipped else "")
            samples += found
        if not samples:
            raise JetracerError(f"no usable samples in {', '.join(folders)}; nothing to train on")
        train_set, size = StoredFrames(samples, contract.input_size), len(samples)
    batch_size = min(settings["batch_size"], size)
    workers = min(settings["workers"], os.cpu_count() or 1)
    sampler = EpochOrder(size, batch_size, settings["seed"], synthetic)
    train_loader = make_loader(train_set, workers, cuda, batch_sampler=sampler)
    val_loader = (make_loader(SceneFrames(topology, settings["val_scenes"], VALIDATION_SEEDS),
                              min(workers, VAL_WORKERS), cuda, batch_size=min(64, batch_size * 2))
                  if settings["val_scenes"] else None)
    passes = 2 if settings["mirror"] else 1  # each batch as it came, then mirrored
    steps_per_epoch = len(sampler) * passes
    total_steps = settings["epochs"] * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    clock = _Clock(settings["minutes"], float(state.get("trained_s", 0.0)) if state is not None else 0.0)
    optimizer = make_optimizer(model, settings["lr"], settings["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # by steps, or by the time budget when that runs out first
        optimizer, lambda step: lr_factor(max(step, int(clock.progress() * total_steps)), total_steps,
                                          settings["warmup_fraction"], settings["min_lr_ratio"]))
    flip = mirror_index(topology)
    start_epoch, global_step, history, best_metrics, best_epoch = resume_progress(state, optimizer, scheduler, scaler)
    if state is not None:
        log.info("resuming %s at epoch %d, step %d", run_dir, start_epoch, global_step)
    selected_by = "val_pck" if val_loader is not None else "train_loss"
    best_value = best_metrics.get(selected_by, -math.inf if selected_by == "val_pck" else math.inf)
    log.info("training %s on %s%s: %d epochs x %d steps of %d (%s), from %s", settings["arch"], dev,
             f" with {amp_dtype} autocast" if amp_dtype else " in FP32", settings["epochs"], steps_per_epoch,
             batch_size, "synthetic scenes" if synthetic else f"{size} samples", weights_init)
    meta = {"train_config": settings, "data": [SYNTHETIC] if synthetic else folders, "weights_init": weights_init}
    try:
        for epoch in range(start_epoch, settings["epochs"]):
            if max_steps is not None and global_step >= max_steps or clock.out_of_time():
                break
            sampler.set_epoch(epoch)
            model.train()
            sums = torch.zeros(2, device=dev)
            steps, started = 0, time.perf_counter()
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{settings['epochs']}", unit="batch",
                       disable=None if progress is None else not progress, leave=False, dynamic_ncols=True)
            for batch_images, batch_keypoints, _ in train_loader:
                batch = batch_images.to(dev, non_blocking=True), batch_keypoints.to(dev, non_blocking=True)
                for images, keypoints in [batch, mirror_batch(*batch, flip)][:passes]:
                    cmap, paf = _forward(model, images, contract, amp_dtype)
                    cmap_loss, paf_loss = pose_loss(cmap, paf, *_targets(keypoints, contract, settings,
                                                                         cmap.shape[2:]))
                    loss = cmap_loss + paf_loss
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    sums += torch.stack([cmap_loss.detach(), paf_loss.detach()])
                    steps += 1
                    global_step += 1
                    bar.update(1)
                if max_steps is not None and global_step >= max_steps or clock.out_of_time():
                    break
            bar.close()
            seconds = time.perf_counter() - started
            cmap_loss, paf_loss = (sums / max(1, steps)).tolist()
            if not math.isfinite(cmap_loss + paf_loss):
                raise JetracerError(f"training diverged in epoch {epoch + 1}; lower --lr")
            val = validate(model, val_loader, dev, amp_dtype, contract, settings) if val_loader is not None else {}
            row: dict[str, Any] = {
                "epoch": epoch + 1, "global_step": global_step, "steps": steps, "partial": steps < steps_per_epoch,
                "train_loss": cmap_loss + paf_loss, "train_cmap_loss": cmap_loss, "train_paf_loss": paf_loss, **val,
                "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 3),
                "images_per_s": round(steps * batch_size / seconds, 1) if seconds > 0 else None,
            }
            value = row.get(selected_by, math.nan)
            row["best"] = bool(value > best_value if selected_by == "val_pck" else value < best_value)
            history.append(row)
            if row["best"]:
                best_value, best_epoch = value, epoch + 1
                best_metrics = {k: row[k] for k in ("train_loss", *val) if k in row}
                save_checkpoint(make_pose_checkpoint(model, half=True, contract=contract, kind="best",
                                                     epoch=epoch + 1, global_step=global_step, metrics=best_metrics,
                                                     selected_by=selected_by, **meta), paths[BEST_NAME])
            save_checkpoint(make_pose_checkpoint(
                model, half=False, contract=contract, kind="last", epoch=epoch + 1, global_step=global_step,
                metrics=row, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(), history=history, best_epoch=best_epoch, best_metrics=best_metrics,
                trained_s=clock.elapsed(), **meta), paths[LAST_NAME])
            write_metrics(history, paths[METRICS_NAME])
            with warnings.catch_warnings():  # the plot's panel of road-following errors stays empty: no legend
                warnings.simplefilter("ignore", UserWarning)
                write_loss_plot(history, paths[PLOT_NAME])
            log.info("epoch %d/%d: train loss %.6f (cmap %.6f, paf %.6f)%s%s, %.1f s, %s images/s", epoch + 1,
                     settings["epochs"], row["train_loss"], cmap_loss, paf_loss,
                     "".join(f", {k} {v:.5g}" for k, v in val.items()), " (best)" if row["best"] else "", seconds,
                     row["images_per_s"])
    finally:
        close_loader(train_loader)
        close_loader(val_loader)
    return TrainResult(run_dir=run_dir, last_path=paths[LAST_NAME],
                       best_path=paths[BEST_NAME] if best_epoch is not None else None,
                       metrics_path=paths[METRICS_NAME], plot_path=paths[PLOT_NAME],
                       epochs_done=history[-1]["epoch"] if history else 0, global_step=global_step,
                       best_epoch=best_epoch, best_metrics=best_metrics, selected_by=selected_by, data_dirs=folders)


def _load_resume_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise JetracerError(f"--resume: {path} not found; start the run without --resume")
    state = load_torch_file(path)
    missing = [k for k in ("optimizer", "scheduler", "epoch", "global_step", "train_config", "state_dict")
               if not isinstance(state, dict) or k not in state]
    if missing or state.get("kind") != "last":
        raise JetracerError(f"--resume: {path} is not a full pose training state (missing "
                            f"{', '.join(missing) or 'kind=last'})")
    return state


# ---------------------------------------------------------------------------------------------------------------------
# Command line (``jetracer-trt train --task pose``)

_NOT_FOR_POSE = ("val_fraction", "batchnorm", "augment")


def run_cli(args) -> int:
    """``jetracer-trt train --task pose``: trains with the options ``cli/train.py`` parsed, exports best.pt to
    best.onnx beside it (unless ``--no-export``), prints where everything is and the best PCK."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise JetracerError("pose training runs in one process; leave --nproc out")
    ignored = [f"--{name.replace('_', '-')}" for name in _NOT_FOR_POSE if getattr(args, name, None) is not None]
    if ignored:
        log.warning("%s: not used by pose training (it validates on held-out synthetic scenes)", ", ".join(ignored))
    overrides = {key: getattr(args, key, None) for key in ("epochs", "batch_size", "lr", "weight_decay", "seed",
                                                           "workers", "weights", "minutes", "arch")}
    result = train_pose(args.data, args.out, overrides=overrides, resume=args.resume, device=args.device,
                        max_steps=args.max_steps, init=getattr(args, "init", None))
    if result.best_path is None:
        print(f"no epoch finished; run state in {result.last_path}")
        return 1
    m = result.best_metrics
    score = (f"PCK@{ALPHA} {m['val_pck']:.4f} on the validation scenes" if "val_pck" in m
             else f"train loss {m.get('train_loss', math.nan):.6f}")
    print(f"best {score} at epoch {result.best_epoch}; {result.epochs_done} epochs, {result.global_step} steps")
    print(f"best checkpoint: {result.best_path}")
    print(f"metrics: {result.metrics_path}  plot: {result.plot_path}  resume state: {result.last_path}")
    if not getattr(args, "no_export", False):
        from ..cli.convert import describe_result
        from ..export import export_onnx

        onnx_path = result.best_path.with_suffix(".onnx")
        print(describe_result(export_onnx(result.best_path, onnx_path, force=True), result.best_path))
    return 0


if __name__ == "__main__":
    from ..cli.train import main

    raise SystemExit(main())
