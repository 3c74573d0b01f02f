"""Training the road-following ResNet18: plain functions and small classes, no ROS, driven by ``jetracer-trt train``.

Pipeline, shaped for a GPU box with 100k+ images:

* DataLoader workers only decode JPEGs (cv2, through ``dataset.load_image``) into uint8 HWC tensors: cheap to pickle
  between processes (a quarter of float32) and to copy to the GPU (pinned memory, ``non_blocking``).
* The run's model contract (``contract.py``; a new run takes the default of ``config/model.yaml``, a resumed run
  its own) sets the input size and normalization: workers resize frames of another size with ``preprocess.resize``,
  as the runtime does, and ``preprocess.normalize_batch_torch`` applies the runtime's ``Preprocessor`` arithmetic.
  Every checkpoint carries the contract, so the exported model is driven exactly as it was trained.
* Everything else happens on the training device, per batch: the horizontal flip (which negates the label x),
  photometric augmentation, then the normalization.
* CUDA: channels_last, autocast in bf16 where the GPU supports it, else fp16 with a GradScaler. CPU: plain FP32.
* AdamW with a linear warm-up and a cosine decay, MSE loss on (x, y).

Every epoch writes ``RUN/metrics.jsonl`` (one JSON object per epoch), ``RUN/loss.png``, ``RUN/last.pt`` (the full
state, for ``--resume``) and, when validation improved, ``RUN/best.pt`` (FP16 weights plus metadata, small enough
for git). All of them are written to a temporary name and renamed, so an interrupted run never leaves a torn file;
nothing else in RUN is ever touched.

Randomness is seeded per epoch from the run's seed (shuffling, augmentation), so a run resumed at an epoch boundary
continues the same way an uninterrupted one would (up to GPU non-determinism).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .config import load_config
from .contract import ModelContract, contract_from_record
from .dataset import Sample, load_image, read_dataset
from .errors import JetracerError
from .fileio import atomic_write_bytes
from .model import build_model, imagenet_weights_path, make_checkpoint, read_checkpoint, save_checkpoint
from .preprocess import normalize_batch_torch, resize

log = logging.getLogger(__name__)

BEST_NAME = "best.pt"
LAST_NAME = "last.pt"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "loss.png"
# Settings that may change when a run is resumed; the others would silently change what is being trained.
RESUMABLE_OVERRIDES = ("epochs", "workers")
# A corrupt JPEG that read_dataset could not see (it does not decode) is replaced by the next sample, not fatal.
MAX_SUBSTITUTES = 16
_GREY = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights, for contrast and saturation


# ---------------------------------------------------------------------------------------------------------------------
# Settings


def resolve_settings(
    overrides: Mapping[str, Any] | None = None, base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``base`` (default: config/train.yaml) with the non-None ``overrides`` applied, validated.

    ``overrides["augment"]`` may be a partial mapping; it is merged into the augmentation settings.
    """
    settings = dict(base) if base is not None else load_config("train")
    settings["augment"] = dict(settings.get("augment") or {})
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "augment":
            settings["augment"].update(value)
        elif key not in settings:
            raise JetracerError(f"unknown training setting {key!r}")
        else:
            settings[key] = value
    _validate_settings(settings)
    return settings


def _validate_settings(s: Mapping[str, Any]) -> None:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise JetracerError(what)

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    need(is_int(s.get("epochs")) and s["epochs"] >= 1, f"epochs must be an integer >= 1, got {s.get('epochs')!r}")
    need(is_int(s.get("batch_size")) and s["batch_size"] >= 1,
         f"batch size must be an integer >= 1, got {s.get('batch_size')!r}")
    need(is_num(s.get("lr")) and s["lr"] > 0, f"learning rate must be > 0, got {s.get('lr')!r}")
    need(is_num(s.get("weight_decay")) and s["weight_decay"] >= 0,
         f"weight decay must be >= 0, got {s.get('weight_decay')!r}")
    need(is_num(s.get("warmup_fraction")) and 0 <= s["warmup_fraction"] < 1, "warmup_fraction must be in [0, 1)")
    need(is_num(s.get("min_lr_ratio")) and 0 <= s["min_lr_ratio"] <= 1, "min_lr_ratio must be in [0, 1]")
    need(is_num(s.get("val_fraction")) and 0 <= s["val_fraction"] < 1,
         f"validation fraction must be in [0, 1), got {s.get('val_fraction')!r}")
    need(is_int(s.get("seed")) and s["seed"] >= 0, f"seed must be an integer >= 0, got {s.get('seed')!r}")
    need(is_int(s.get("workers")) and s["workers"] >= 0, f"workers must be an integer >= 0, got {s.get('workers')!r}")
    need(s.get("weights") in ("imagenet", "none"), f"weights must be 'imagenet' or 'none', got {s.get('weights')!r}")
    aug = s["augment"]
    for key in ("flip_prob", "blur_prob", "noise_prob"):
        need(is_num(aug.get(key, 0)) and 0 <= aug.get(key, 0) <= 1, f"augment.{key} must be a probability in [0, 1]")
    for key in ("brightness", "contrast", "saturation", "channel_gain"):
        need(is_num(aug.get(key, 0)) and 0 <= aug.get(key, 0) < 1, f"augment.{key} must be in [0, 1)")
    for key in ("blur_sigma_max", "noise_std_max"):
        need(is_num(aug.get(key, 0)) and aug.get(key, 0) >= 0, f"augment.{key} must be >= 0")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a usable GPU is a user error, not a fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise JetracerError("--device cuda, but PyTorch sees no CUDA GPU; use --device cpu or auto")
        return torch.device(device)
    raise JetracerError(f"unknown device {device!r}; choose auto, cpu or cuda")


def _seed_for(seed: int, epoch: int, stream: int) -> int:
    """A distinct, reproducible seed per (run seed, epoch, purpose)."""
    return (seed * 1_000_003 + epoch * 7_919 + stream * 104_729) % (2**63 - 1)


# ---------------------------------------------------------------------------------------------------------------------
# Data


def load_samples(data_dirs: Sequence[str | os.PathLike]) -> list[Sample]:
    """All usable samples of the given dataset folders, in order; JetracerError if there are none."""
    if not data_dirs:
        raise JetracerError("no dataset given; pass --data DIR (a folder recorded by `jetracer-trt sim collect`)")
    samples: list[Sample] = []
    for root in data_dirs:
        found, corrupt = read_dataset(root)
        skipped = f", {corrupt} corrupt entries skipped" if corrupt else ""
        log.info("dataset %s: %d samples%s", root, len(found), skipped)
        samples.extend(found)
    if not samples:
        raise JetracerError(f"no usable samples in {', '.join(str(d) for d in data_dirs)}; nothing to train on")
    if len(samples) < 2:
        raise JetracerError("only 1 usable sample; training needs at least 2 (one for training, one for validation)")
    return samples


@dataclass
class Split:
    """Indices into the sample list; ``mode`` says how val was chosen: track, mixed, sample or none."""

    train: list[int]
    val: list[int]
    mode: str
    val_tracks: list = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode, "train": len(self.train), "val": len(self.val), "val_tracks": list(self.val_tracks)}


def _track_of(sample: Sample) -> int | str | None:
    value = sample.meta.get("track_seed")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    return value


def split_samples(samples: Sequence[Sample], val_fraction: float, seed: int) -> Split:
    """Train/val split, deterministic for a given seed and sample list.

    Samples with a ``track_seed`` are split by whole tracks (about ``val_fraction`` of the tracks go to val, at least
    one, never all), so validation measures driving on tracks never seen in training. Samples without one, or all
    samples when there are fewer than two tracks, are split at random per sample.
    """
    if val_fraction <= 0:
        return Split(list(range(len(samples))), [], "none")
    rng = np.random.default_rng(seed)
    tracks: dict[Any, list[int]] = {}
    loose: list[int] = []
    for index, sample in enumerate(samples):
        track = _track_of(sample)
        if track is None:
            loose.append(index)
        else:
            tracks.setdefault(track, []).append(index)
    train: list[int] = []
    val: list[int] = []
    val_tracks: list = []
    if len(tracks) >= 2:
        names = sorted(tracks, key=lambda t: (isinstance(t, str), t))
        order = [names[i] for i in rng.permutation(len(names))]
        n_val = min(max(1, round(val_fraction * len(names))), len(names) - 1)
        val_tracks = sorted(order[:n_val], key=lambda t: (isinstance(t, str), t))
        for name in names:
            (val if name in val_tracks else train).extend(tracks[name])
    elif tracks:
        log.warning("all tracked samples come from one track; splitting them by sample, not by track")
        loose = sorted(loose + next(iter(tracks.values())))
    if loose:
        perm = rng.permutation(len(loose))
        n_val = round(val_fraction * len(loose))
        if not val and n_val == 0:
            n_val = 1
        if not train:
            n_val = min(n_val, len(loose) - 1)
        chosen = set(perm[:n_val].tolist())
        for i, index in enumerate(loose):
            (val if i in chosen else train).append(index)
    if not train:
        raise JetracerError("the validation split took every sample; lower --val-fraction or add data")
    mode = "track" if val_tracks and not loose else "mixed" if val_tracks else "sample"
    return Split(sorted(train), sorted(val), mode, val_tracks)


class FrameDataset(torch.utils.data.Dataset):
    """Decodes one sample per call into (uint8 (H, W, 3) tensor at the contract's input size, float32 (2,) label
    tensor); runs in the workers.

    Paths and labels live in numpy arrays rather than lists of objects: forked workers then share them without
    copy-on-write page duplication (touching a Python object writes its reference count).
    """

    def __init__(self, samples: Sequence[Sample], contract: ModelContract):
        self.paths = np.array([str(s.image_path) for s in samples])
        self.labels = np.array([[s.x, s.y] for s in samples], dtype=np.float32).reshape(-1, 2)
        self.size, self.resize_policy = contract.input_size, contract.resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        for attempt in range(min(MAX_SUBSTITUTES, len(self.paths))):
            j = (index + attempt) % len(self.paths)
            try:
                frame = load_image(self.paths[j])
            except JetracerError as exc:
                log.warning("%s; using the next sample in its place", exc)
                continue
            frame = resize(frame, self.size, self.resize_policy)  # as the runtime resizes: the same pixels
            return torch.from_numpy(np.ascontiguousarray(frame)), torch.from_numpy(self.labels[j].copy())
        raise JetracerError(
            f"{MAX_SUBSTITUTES} images in a row from {self.paths[index]} cannot be decoded; "
            "run `jetracer-trt data check --decode DIR`"
        )


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A shuffle that depends only on (seed, epoch): reproducible, and the same after a resume."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = int(size), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(_seed_for(self.seed, self.epoch, 0))
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def _worker_init(_worker_id: int) -> None:
    cv2.setNumThreads(1)  # one decode per worker process; OpenCV's own threads would only oversubscribe the cores


def make_loader(
    dataset: FrameDataset, batch_size: int, workers: int, pin_memory: bool, sampler: EpochShuffleSampler | None = None
) -> torch.utils.data.DataLoader:
    """A DataLoader over ``dataset``: shuffled by ``sampler`` (training) or in order (validation)."""
    kwargs: dict[str, Any] = {}
    if workers > 0:
        # forkserver, not fork: forking a process that already runs CUDA or DDS threads can deadlock the workers
        kwargs.update(persistent_workers=True, prefetch_factor=4, worker_init_fn=_worker_init,
                      multiprocessing_context="forkserver")
    drop_last = sampler is not None and len(dataset) >= batch_size  # no tiny, noisy last batch when training
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin_memory,
        drop_last=drop_last, **kwargs,
    )


def close_loader(loader: torch.utils.data.DataLoader | None) -> None:
    """Stops a DataLoader's persistent worker processes now, without waiting on them.

    Why: on the H200 test box, idle persistent workers did not react to the DataLoader's own shutdown request, so
    each one was joined with its 5 s timeout (pytorch/pytorch#81794 describes the same) -- two minutes at the end of
    a 12-worker run. The workers hold nothing we need once training is over, so they are terminated; the DataLoader's
    own cleanup then finds them gone and returns at once.
    """
    iterator = getattr(loader, "_iterator", None) if loader is not None else None
    if iterator is None:
        return
    for worker in getattr(iterator, "_workers", []):
        if worker.is_alive():
            worker.terminate()
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()
    loader._iterator = None


# ---------------------------------------------------------------------------------------------------------------------
# Augmentation (on the device, per batch)


def _uniform(n: int, low: float, high: float, shape: tuple, generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand((n, *shape), generator=generator, device=device)


def _gaussian_blur(x_nhwc: torch.Tensor, sigma: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """Per-sample Gaussian blur of a float NHWC batch with per-sample ``sigma`` (N,), separable, reflect padding."""
    n, h, w, c = x_nhwc.shape
    radius = max(1, math.ceil(2.0 * sigma_max))
    offsets = torch.arange(-radius, radius + 1, device=x_nhwc.device, dtype=x_nhwc.dtype)
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2.0 * sigma.view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (N, K)
    kernel = kernel.repeat_interleave(c, dim=0)  # (N*C, K): one kernel per (sample, channel) group
    planes = x_nhwc.permute(0, 3, 1, 2).reshape(1, n * c, h, w)
    planes = F.pad(planes, (radius, radius, radius, radius), mode="reflect")
    planes = F.conv2d(planes, kernel.view(n * c, 1, 1, -1), groups=n * c)
    planes = F.conv2d(planes, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return planes.view(n, c, h, w).permute(0, 2, 3, 1)


def augment_batch(
    images: torch.Tensor, targets: torch.Tensor, aug: Mapping[str, Any], generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-preserving augmentation of a uint8 (N, H, W, 3) RGB batch and its (N, 2) targets, on their device.

    Per sample: a horizontal flip with probability ``flip_prob`` (x -> -x, y kept), then brightness, contrast,
    saturation, per-channel gains, Gaussian blur and Gaussian noise (see config/train.yaml). No geometric transform
    other than the flip, since any other would move the road target. Returns new tensors (uint8 images, so the
    result goes through ``normalize_batch_torch`` exactly like a camera frame); inputs are not modified. Nothing here
    synchronises with the GPU.
    """
    n, device = images.shape[0], images.device
    targets = targets.clone()
    flip_prob = float(aug.get("flip_prob", 0.0))
    if flip_prob > 0:
        flip = torch.rand(n, generator=generator, device=device) < flip_prob
        images = torch.where(flip.view(n, 1, 1, 1), images.flip(2), images)
        targets[:, 0] = torch.where(flip, -targets[:, 0], targets[:, 0])
    brightness, contrast = float(aug.get("brightness", 0.0)), float(aug.get("contrast", 0.0))
    saturation, gain = float(aug.get("saturation", 0.0)), float(aug.get("channel_gain", 0.0))
    blur_prob, sigma_max = float(aug.get("blur_prob", 0.0)), float(aug.get("blur_sigma_max", 0.0))
    noise_prob, noise_max = float(aug.get("noise_prob", 0.0)), float(aug.get("noise_std_max", 0.0))
    blur = blur_prob > 0 and sigma_max > 0
    noise = noise_prob > 0 and noise_max > 0
    if not (brightness or contrast or saturation or gain or blur or noise):
        return images, targets
    x = images.float()
    grey_weights = torch.tensor(_GREY, device=device, dtype=x.dtype)
    if brightness:
        x = x * _uniform(n, 1 - brightness, 1 + brightness, (1, 1, 1), generator, device)
    if gain:
        x = x * _uniform(n, 1 - gain, 1 + gain, (1, 1, 3), generator, device)
    if contrast:
        mean = (x * grey_weights).sum(dim=3, keepdim=True).mean(dim=(1, 2), keepdim=True)
        x = (x - mean) * _uniform(n, 1 - contrast, 1 + contrast, (1, 1, 1), generator, device) + mean
    if saturation:
        grey = (x * grey_weights).sum(dim=3, keepdim=True)
        x = grey + (x - grey) * _uniform(n, 1 - saturation, 1 + saturation, (1, 1, 1), generator, device)
    if blur:
        chosen = torch.rand(n, generator=generator, device=device) < blur_prob
        sigma = _uniform(n, min(0.3, sigma_max), sigma_max, (), generator, device)
        x = torch.where(chosen.view(n, 1, 1, 1), _gaussian_blur(x, sigma, sigma_max), x)
    if noise:
        chosen = torch.rand(n, generator=generator, device=device) < noise_prob
        std = _uniform(n, 0.0, noise_max, (), generator, device) * chosen
        x = x + torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype) * std.view(n, 1, 1, 1)
    return x.round_().clamp_(0, 255).to(torch.uint8), targets


def prepare_batch(
    images: torch.Tensor, targets: torch.Tensor, aug: Mapping[str, Any] | None, generator: torch.Generator | None,
    channels_last: bool, contract: ModelContract,
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 NHWC batch on the device -> (float32 NCHW network input normalised for ``contract``, targets),
    augmented if ``aug``."""
    if aug:
        images, targets = augment_batch(images, targets, aug, generator)
    inputs = normalize_batch_torch(images, contract)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    else:
        inputs = inputs.contiguous()
    return inputs, targets


# ---------------------------------------------------------------------------------------------------------------------
# Optimisation


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; biases and BatchNorm parameters (1-D tensors) get no weight decay, as usual for ResNets."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def lr_factor(step: int, total_steps: int, warmup_fraction: float, min_ratio: float) -> float:
    """Multiplier of the peak lr at optimizer step ``step``: linear warm-up, then cosine down to ``min_ratio``."""
    total_steps = max(1, total_steps)
    warmup = int(warmup_fraction * total_steps)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """Mixed precision on CUDA; a no-op context in FP32 (CPU), where autocast would only warn."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, loader: torch.utils.data.DataLoader, device: torch.device, amp_dtype: torch.dtype | None,
    channels_last: bool, contract: ModelContract,
) -> dict[str, float]:
    """{"val_loss": MSE over (x, y), "val_mae_x": mean |dx|, "val_mae_y": mean |dy|} on un-augmented frames."""
    model.eval()
    sq = torch.zeros(2, dtype=torch.float64, device=device)
    ab = torch.zeros(2, dtype=torch.float64, device=device)
    count = 0
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        inputs, targets = prepare_batch(images, targets, None, None, channels_last, contract)
        with _autocast(device, amp_dtype):
            pred = model(inputs)
        err = pred.float() - targets
        sq += (err * err).sum(dim=0).double()
        ab += err.abs().sum(dim=0).double()
        count += targets.shape[0]
    if count == 0:
        return {}
    sq, ab = (sq / count).tolist(), (ab / count).tolist()
    names = contract.outputs
    metrics = {"val_loss": sum(sq) / len(sq)}
    metrics.update({f"val_mae_{name}": ab[i] for i, name in enumerate(names)})
    return metrics


# ---------------------------------------------------------------------------------------------------------------------
# Run folder: metrics, plot, checkpoints


def prepare_run_dir(out_dir: str | os.PathLike) -> Path:
    """Creates RUN if needed and checks it is a writable folder; JetracerError otherwise."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JetracerError(f"cannot create the run folder {out}: {exc.strerror or exc}") from None
    if not out.is_dir():
        raise JetracerError(f"{out} exists and is not a folder; choose another --out")
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise JetracerError(f"the run folder {out} is not writable: {exc.strerror or exc}") from None
    return out


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise JetracerError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_metrics(history: Sequence[Mapping[str, Any]], path: Path) -> None:
    """RUN/metrics.jsonl: one JSON object per epoch, rewritten whole (atomically) from the run's history."""
    _atomic_write_bytes(path, "".join(json.dumps(dict(row)) + "\n" for row in history).encode())


def write_loss_plot(history: Sequence[Mapping[str, Any]], path: Path) -> None:
    """RUN/loss.png: train and val loss per epoch (log scale), and val mean |dx|, |dy| beside them.

    matplotlib is imported here, and without pyplot (no global backend state): only training needs it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_mae = fig.subplots(1, 2)
    ax_loss.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    if any(row.get("val_loss") is not None for row in history):
        ax_loss.plot(epochs, [row.get("val_loss", math.nan) for row in history], "o-", label="val")
    best = [row for row in history if row.get("best")]
    if best:
        key = "val_loss" if best[-1].get("val_loss") is not None else "train_loss"
        ax_loss.plot([best[-1]["epoch"]], [best[-1][key]], "k*", markersize=14,
                     label=f"best (epoch {best[-1]['epoch']})")
    ax_loss.set(xlabel="epoch", ylabel="MSE loss", title="loss", yscale="log")
    ax_loss.legend()
    ax_loss.grid(True, alpha=0.3)
    for key in dict.fromkeys(k for row in history for k in row if k.startswith("val_mae_")):
        name = key[len("val_mae_"):]
        if any(row.get(key) is not None for row in history):
            ax_mae.plot(epochs, [row.get(key, math.nan) for row in history], "o-", label=f"mean |d{name}|")
    ax_mae.set(xlabel="epoch", ylabel="mean absolute error", title="validation error")
    ax_mae.legend()
    ax_mae.grid(True, alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _atomic_write_bytes(path, buffer.getvalue())


def _rng_states() -> dict[str, Any]:
    """RNG states in plain types, so last.pt still loads with ``torch.load(weights_only=True)``."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _restore_rng_states(states: Mapping[str, Any]) -> None:
    try:
        random.setstate(states["python"])
        name, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(states["torch"])
        if torch.cuda.is_available() and len(states.get("cuda", [])) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        log.warning("could not restore the RNG states (%s); continuing with fresh ones", exc)


@dataclass
class TrainResult:
    """What a training run left in its folder, for the CLI summary and for callers."""

    run_dir: Path
    last_path: Path
    best_path: Path | None
    metrics_path: Path
    plot_path: Path
    epochs_done: int
    global_step: int
    best_epoch: int | None
    best_metrics: dict[str, Any]
    selected_by: str  # "val_loss", or "train_loss" when there is no validation split


# ---------------------------------------------------------------------------------------------------------------------
# The training run


def train(
    data_dirs: Sequence[str | os.PathLike] | None,
    out_dir: str | os.PathLike,
    *,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    device: str = "auto",
    max_steps: int | None = None,
    progress: bool | None = None,
    contract: ModelContract | None = None,
) -> TrainResult:
    """Trains (or, with ``resume``, continues) a run in ``out_dir``; returns where the results are.

    ``overrides`` are config/train.yaml keys (epochs, batch_size, lr, weight_decay, val_fraction, seed, workers,
    weights, augment); None values are ignored. On ``resume`` the settings stored in RUN/last.pt are kept, except
    ``epochs`` and ``workers``; ``data_dirs`` defaults to the run's own. ``max_steps`` stops after that many optimizer
    steps in total (counting those before a resume): the epoch then ends early, is validated and saved, and is
    marked ``partial`` in metrics.jsonl. ``progress``: tqdm bar (None: only on a terminal). ``contract``: the model
    contract of a new run (input size, normalization, outputs; default: config/model.yaml's); a resumed run keeps
    its own.
    """
    from tqdm import tqdm

    run_dir = prepare_run_dir(out_dir)
    paths = {name: run_dir / name for name in (BEST_NAME, LAST_NAME, METRICS_NAME, PLOT_NAME)}
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise JetracerError(f"--max-steps must be an integer >= 1, got {max_steps!r}")

    state: dict[str, Any] | None = None
    if resume:
        state = _load_resume_state(paths[LAST_NAME])
        saved = dict(state["train_config"])
        ignored = {
            k: v for k, v in (overrides or {}).items()
            if v is not None and k not in RESUMABLE_OVERRIDES and v != saved.get(k)
        }
        if ignored:
            log.warning("--resume keeps the run's own settings; ignoring %s",
                        ", ".join(f"{k}={v}" for k, v in ignored.items()))
        base = {**load_config("train"), **saved}  # keys added to config/train.yaml since the run started: defaults
        settings = resolve_settings({k: v for k, v in (overrides or {}).items() if k in RESUMABLE_OVERRIDES}, base=base)
        if not data_dirs:
            data_dirs = list(state.get("data_dirs") or [])
        saved_contract = contract_from_record(state, paths[LAST_NAME])
        if contract is not None and contract != saved_contract:
            log.warning("--resume keeps the run's own model contract (%s)", saved_contract.summary())
        contract = saved_contract
    else:
        settings = resolve_settings(overrides)
        contract = contract or ModelContract.default()
        if paths[LAST_NAME].exists():
            log.warning("%s already holds a run; starting over (pass --resume to continue it)", run_dir)
    data_dirs = [str(Path(d).absolute()) for d in (data_dirs or [])]
    dev = resolve_device(device)

    samples = load_samples(data_dirs)
    split = split_samples(samples, settings["val_fraction"], settings["seed"])
    log.info(
        "split by %s: %d train, %d val samples%s", split.mode, len(split.train), len(split.val),
        f" (val tracks: {split.val_tracks})" if split.val_tracks else "",
    )
    if state is not None and state.get("split", {}).get("val") not in (None, len(split.val)):
        log.warning("the data changed since this run started: val now has %d samples, was %d",
                    len(split.val), state["split"]["val"])

    # reproducibility: model init from the global RNGs, everything per-epoch from its own generators
    random.seed(settings["seed"])
    np.random.seed(settings["seed"] % 2**32)
    torch.manual_seed(settings["seed"])

    weights = settings["weights"]
    if state is None and weights == "imagenet" and not imagenet_weights_path().is_file():
        log.warning(
            "ImageNet weights are not in the local torch hub cache (%s); training from scratch (never downloaded)",
            imagenet_weights_path(),
        )
        weights = "none"
    weights_init = state.get("weights_init", "none") if state is not None else weights
    model = build_model(weights="none" if state is not None else weights, num_outputs=len(contract.outputs))
    if state is not None:
        model.load_state_dict(state["state_dict"])

    cuda = dev.type == "cuda"
    amp_dtype: torch.dtype | None = None
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels once
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    model = model.to(dev, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    train_set = FrameDataset([samples[i] for i in split.train], contract)
    val_set = FrameDataset([samples[i] for i in split.val], contract)
    sampler = EpochShuffleSampler(len(train_set), settings["seed"])
    batch_size, workers = settings["batch_size"], settings["workers"]
    if workers > (os.cpu_count() or 1):
        log.info("%d workers requested, %d CPU cores: using %d", workers, os.cpu_count() or 1, os.cpu_count() or 1)
        workers = os.cpu_count() or 1
    train_loader = make_loader(train_set, batch_size, workers, cuda, sampler)
    val_loader = make_loader(val_set, batch_size * 2, workers, cuda) if len(val_set) else None
    steps_per_epoch = len(train_loader)
    total_steps = settings["epochs"] * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)

    optimizer = make_optimizer(model, settings["lr"], settings["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, settings["warmup_fraction"], settings["min_lr_ratio"])
    )
    start_epoch, global_step, history = 0, 0, []
    best_metrics: dict[str, Any] = {}
    best_epoch: int | None = None
    if state is not None:
        # optimizer after the scheduler's construction (which resets the lr), scheduler last
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler.is_enabled() and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, global_step = int(state["epoch"]), int(state["global_step"])
        history = list(state.get("history") or [])
        best_metrics = dict(state.get("best_metrics") or {})
        best_epoch = state.get("best_epoch")
        _restore_rng_states(state.get("rng") or {})
        log.info("resuming %s at epoch %d, step %d", run_dir, start_epoch, global_step)
    selected_by = "val_loss" if val_loader is not None else "train_loss"
    best_value = best_metrics.get(selected_by, math.inf)
    log.info(
        "training on %s%s: %d epochs x %d steps of %d (lr %g, %s)", dev,
        f" with {amp_dtype} autocast" if amp_dtype else " in FP32", settings["epochs"], steps_per_epoch, batch_size,
        settings["lr"], f"at most {max_steps} steps" if max_steps else "no step limit",
    )
    log.info("model contract: %s", contract.summary())

    common_meta = {
        "contract": contract,
        "train_config": settings,
        "data_dirs": data_dirs,
        "split": split.summary(),
        "weights_init": weights_init,
    }
    aug = settings["augment"]
    try:
        for epoch in range(start_epoch, settings["epochs"]):
            if max_steps is not None and global_step >= max_steps:
                break
            sampler.set_epoch(epoch)
            aug_generator = torch.Generator(device=dev).manual_seed(_seed_for(settings["seed"], epoch, 1))
            model.train()
            loss_sum = torch.zeros((), device=dev)
            steps = 0
            started = time.perf_counter()
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{settings['epochs']}", unit="batch",
                       disable=None if progress is None else not progress, leave=False, dynamic_ncols=True)
            for images, targets in train_loader:
                images = images.to(dev, non_blocking=True)
                targets = targets.to(dev, non_blocking=True)
                inputs, targets = prepare_batch(images, targets, aug, aug_generator, cuda, contract)
                with _autocast(dev, amp_dtype):
                    pred = model(inputs)
                loss = F.mse_loss(pred.float(), targets)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += loss.detach()
                steps += 1
                global_step += 1
                bar.update(1)
                if steps % 20 == 0:  # .item() waits for the GPU: not every step
                    bar.set_postfix(loss=f"{loss_sum.item() / steps:.4f}")
                if max_steps is not None and global_step >= max_steps:
                    break
            bar.close()
            seconds = time.perf_counter() - started
            train_loss = loss_sum.item() / max(1, steps)
            if not math.isfinite(train_loss):
                kept = f"; the last good state is in {paths[LAST_NAME]}" if paths[LAST_NAME].exists() else ""
                raise JetracerError(f"training diverged in epoch {epoch + 1} (loss {train_loss}); lower --lr{kept}")
            val_metrics = evaluate(model, val_loader, dev, amp_dtype, cuda, contract) if val_loader is not None else {}
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "global_step": global_step,
                "steps": steps,
                "partial": steps < steps_per_epoch,
                "train_loss": train_loss,
                **val_metrics,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(seconds, 3),
                "images_per_s": round(steps * batch_size / seconds, 1) if seconds > 0 else None,
            }
            value = row.get(selected_by, math.inf)
            row["best"] = value < best_value
            history.append(row)
            if row["best"]:
                best_value, best_epoch = value, epoch + 1
                best_metrics = {k: row[k] for k in ("train_loss", *val_metrics) if k in row}
                save_checkpoint(
                    make_checkpoint(model, half=True, kind="best", epoch=epoch + 1, global_step=global_step,
                                    metrics=best_metrics, selected_by=selected_by, **common_meta),
                    paths[BEST_NAME],
                )
            save_checkpoint(
                make_checkpoint(
                    model, half=False, kind="last", epoch=epoch + 1, global_step=global_step, metrics=row,
                    optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), scaler=scaler.state_dict(),
                    rng=_rng_states(), history=history, best_epoch=best_epoch, best_metrics=best_metrics, **common_meta,
                ),
                paths[LAST_NAME],
            )
            write_metrics(history, paths[METRICS_NAME])
            write_loss_plot(history, paths[PLOT_NAME])
            log.info(
                "epoch %d/%d: train loss %.5f%s%s, %.1f s", epoch + 1, settings["epochs"], train_loss,
                "".join(f", {k} {v:.5f}" for k, v in val_metrics.items()), " (best)" if row["best"] else "", seconds,
            )
    finally:
        close_loader(train_loader)
        close_loader(val_loader)
    epochs_done = history[-1]["epoch"] if history else 0
    if state is not None and epochs_done == start_epoch:
        log.info("nothing to do: %s already reached %d epochs / step %d", run_dir, epochs_done, global_step)
    return TrainResult(
        run_dir=run_dir,
        last_path=paths[LAST_NAME],
        best_path=paths[BEST_NAME] if paths[BEST_NAME].exists() and best_epoch is not None else None,
        metrics_path=paths[METRICS_NAME],
        plot_path=paths[PLOT_NAME],
        epochs_done=epochs_done,
        global_step=global_step,
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        selected_by=selected_by,
    )


def _load_resume_state(path: Path) -> dict[str, Any]:
    """RUN/last.pt, checked to be a full training state; JetracerError with what to do otherwise."""
    if not path.exists():
        raise JetracerError(f"--resume: {path} not found; start the run without --resume")
    state = read_checkpoint(path)
    missing = [k for k in ("optimizer", "scheduler", "epoch", "global_step", "train_config") if k not in state]
    if state.get("kind") != "last" or missing:
        what = ", ".join(missing) or "kind=last"
        raise JetracerError(f"--resume: {path} is not a full training state (missing {what})")
    return state
