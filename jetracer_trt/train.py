"""Training the road-following ResNet18: plain functions and small classes, no ROS, driven by ``jetracer-trt train``
(or ``python -m jetracer_trt.train``, the same options, which is what ``torchrun`` starts on each process).

Pipeline, shaped for a GPU box with 100k+ images:

* DataLoader workers only decode JPEGs (cv2, through ``dataset.load_image``) into uint8 HWC tensors: cheap to pickle
  between processes (a quarter of float32) and to copy to the GPU (pinned memory, ``non_blocking``).
* The run's model contract (``contract.py``; a new run takes the default of ``config/model.yaml``, a fine-tuning run
  the contract of the model it starts from, a resumed run its own) sets the input size and normalization: workers
  resize frames of another size with ``preprocess.resize``, as the runtime does, and
  ``preprocess.normalize_batch_torch`` applies the runtime's ``Preprocessor`` arithmetic. Every checkpoint carries
  the contract, so the exported model is driven exactly as it was trained.
* Everything else happens on the training device, per batch: the horizontal flip (which negates the label x),
  photometric augmentation, then the normalization.
* CUDA: channels_last, autocast in bf16 where the GPU supports it, else fp16 with a GradScaler. CPU: plain FP32.
* AdamW with a linear warm-up and a cosine decay, MSE loss on (x, y).

Several datasets, with weights (``--data real:3 sim:1``): each epoch draws as many samples as the training split
holds, each dataset's share of them in proportion to its weight (``EpochBatchSampler``); without weights every
training sample is drawn once per epoch. Validation holds out whole simulator tracks (``track_seed``) and whole
recording sessions (``session``: the car's recorder, imports), chosen within each dataset, so a small real dataset
is validated on sessions it was not trained on.

Fine-tuning (``init``): the weights and the model contract come from a checkpoint of ours or from a JetRacer
notebook's ResNet18 state dict (``model.read_checkpoint``); the optimizer, its schedule and the epoch count start
fresh.

Several processes (``torchrun``, ``DistributedDataParallel``): ``batch_size`` is the global batch of one optimizer
step; each of the N processes takes its contiguous 1/N of every batch of the one shared epoch order, so together they
take exactly the batches one process would. Gradients are averaged by DDP, validation is split over the processes
and summed, and only process 0 logs, writes checkpoints, metrics and the plot. BatchNorm statistics are each
process's own (over B/N images), as in torchvision's reference recipes without SyncBatchNorm (which PyTorch does not
run on CPUs); with ``batchnorm: frozen`` N processes compute what one does, up to floating-point summation order.
A run resumes in either mode, whatever mode it ran in before.

Every epoch writes ``RUN/metrics.jsonl`` (one JSON object per epoch), ``RUN/loss.png``, ``RUN/last.pt`` (the full
state, for ``--resume``) and, when validation improved, ``RUN/best.pt`` (FP16 weights plus metadata, small enough
for git). All of them are written to a temporary name and renamed, so an interrupted run never leaves a torn file;
nothing else in RUN is ever touched. ``export_best`` then writes ``RUN/best.onnx`` beside ``best.pt``, verified
against it (``export.py``).

Randomness is seeded per epoch from the run's seed (shuffling, augmentation), so a run resumed at an epoch boundary
continues the same way an uninterrupted one would (up to GPU non-determinism). Process k > 0 of a multi-process run
draws its own augmentation stream, so its images are augmented differently from process 0's.
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
import torch.distributed as dist
import torch.nn.functional as F

from .config import load_config
from .contract import ModelContract, contract_from_record
from .dataset import Sample, load_image, read_dataset
from .errors import JetracerError
from .fileio import atomic_write_bytes
from .model import (build_model, imagenet_weights_path, load_checkpoint, make_checkpoint, read_checkpoint,
                    save_checkpoint)
from .preprocess import normalize_batch_torch, resize

log = logging.getLogger(__name__)

BEST_NAME = "best.pt"
LAST_NAME = "last.pt"
METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "loss.png"
# Settings that may change when a run is resumed; the others would silently change what is being trained.
RESUMABLE_OVERRIDES = ("epochs", "workers")
BATCHNORM_MODES = ("batch", "frozen")
SPLIT_MODES = {"group": "whole tracks and sessions", "mixed": "whole tracks and sessions, and single samples",
               "sample": "single samples", "none": "nothing (no validation)"}
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
    need(s.get("batchnorm") in BATCHNORM_MODES,
         f"batchnorm must be {' or '.join(BATCHNORM_MODES)}, got {s.get('batchnorm')!r}")
    aug = s["augment"]
    for key in ("flip_prob", "blur_prob", "noise_prob"):
        need(is_num(aug.get(key, 0)) and 0 <= aug.get(key, 0) <= 1, f"augment.{key} must be a probability in [0, 1]")
    for key in ("brightness", "contrast", "saturation", "channel_gain"):
        need(is_num(aug.get(key, 0)) and 0 <= aug.get(key, 0) < 1, f"augment.{key} must be in [0, 1)")
    for key in ("blur_sigma_max", "noise_std_max"):
        need(is_num(aug.get(key, 0)) and aug.get(key, 0) >= 0, f"augment.{key} must be >= 0")


@dataclass(frozen=True)
class Processes:
    """Where this process stands among the processes that train one run together: ``torchrun`` sets ``RANK``,
    ``WORLD_SIZE`` and ``LOCAL_RANK``; without them, process 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Processes:
        try:
            rank, world = int(environ.get("RANK", "0")), int(environ.get("WORLD_SIZE", "1"))
            local_rank = int(environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise JetracerError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
        if world < 1 or not 0 <= rank < world or local_rank < 0:
            raise JetracerError(f"RANK {rank} of WORLD_SIZE {world} is not a process of the run")
        return cls(rank, world, local_rank)

    @property
    def main(self) -> bool:
        """Process 0: the one that logs and writes the run's files."""
        return self.rank == 0


def resolve_device(device: str = "auto", processes: Processes | None = None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a usable GPU is a user error, not a fallback.

    With several processes on CUDA, process ``local_rank`` takes GPU ``local_rank`` of its machine."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise JetracerError("--device cuda, but PyTorch sees no CUDA GPU; use --device cpu or auto")
        if processes is None or processes.world == 1:
            return torch.device(device)
        if processes.local_rank >= torch.cuda.device_count():
            raise JetracerError(f"process {processes.rank} would take GPU {processes.local_rank}, but PyTorch sees "
                                f"{torch.cuda.device_count()}; start at most that many processes per machine")
        return torch.device("cuda", processes.local_rank)
    raise JetracerError(f"unknown device {device!r}; choose auto, cpu or cuda")


def _seed_for(seed: int, epoch: int, stream: int) -> int:
    """A distinct, reproducible seed per (run seed, epoch, purpose)."""
    return (seed * 1_000_003 + epoch * 7_919 + stream * 104_729) % (2**63 - 1)


# ---------------------------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class DataSource:
    """One dataset folder of a run and its weight: the share of every epoch's draws it gets, relative to the other
    folders' weights; None for all folders: every training sample once per epoch."""

    path: str
    weight: float | None = None


def parse_data_sources(specs: Sequence[str | os.PathLike | DataSource]) -> list[DataSource]:
    """``DIR`` or ``DIR:WEIGHT`` per folder (``--data real:3 sim:1``); a weight for every folder or for none.

    A folder whose own name ends in ``:<number>`` is taken as a folder when it exists."""
    sources: list[DataSource] = []
    for spec in specs:
        if isinstance(spec, DataSource):
            sources.append(spec)
            continue
        text, weight = os.fspath(spec), None
        head, sep, tail = text.rpartition(":")
        if isinstance(spec, str) and sep and head and not Path(text).exists():
            try:
                weight = float(tail)
            except ValueError:
                weight = None  # not DIR:WEIGHT: a folder name with a colon in it
            else:
                if not (math.isfinite(weight) and weight > 0):
                    raise JetracerError(f"--data {spec}: the weight after ':' must be a number > 0")
                text = head
        sources.append(DataSource(str(Path(text).absolute()), weight))
    weighted = [s.weight is not None for s in sources]
    if any(weighted) and not all(weighted):
        bare = ", ".join(s.path for s in sources if s.weight is None)
        raise JetracerError(f"--data: give every folder a weight (DIR:WEIGHT) or none; no weight for {bare}")
    return sources


def source_names(sources: Sequence[DataSource]) -> list[str]:
    """A short, distinct name per dataset (its folder's name), for metrics and logs."""
    names: list[str] = []
    for source in sources:
        name = Path(source.path).name or source.path
        while name in names:
            name += "'"
        names.append(name)
    return names


def load_datasets(sources: Sequence[DataSource]) -> tuple[list[Sample], np.ndarray]:
    """All usable samples of the given datasets, in order, and the index of the dataset each came from;
    JetracerError if there are fewer than two."""
    if not sources:
        raise JetracerError("no dataset given; pass --data DIR (a folder recorded by `jetracer-trt sim collect`)")
    samples: list[Sample] = []
    origins: list[int] = []
    for index, source in enumerate(sources):
        found, corrupt = read_dataset(source.path)
        skipped = f", {corrupt} corrupt entries skipped" if corrupt else ""
        weight = f" (weight {source.weight:g})" if source.weight is not None else ""
        log.info("dataset %s: %d samples%s%s", source.path, len(found), skipped, weight)
        if not found and source.weight is not None:
            raise JetracerError(f"no usable samples in {source.path}, which --data gives weight {source.weight:g}")
        samples.extend(found)
        origins.extend([index] * len(found))
    if not samples:
        raise JetracerError(f"no usable samples in {', '.join(s.path for s in sources)}; nothing to train on")
    if len(samples) < 2:
        raise JetracerError("only 1 usable sample; training needs at least 2 (one for training, one for validation)")
    return samples, np.asarray(origins, dtype=np.int64)


@dataclass
class Split:
    """Indices into the sample list; ``mode`` says how val was chosen: group (whole tracks and sessions only),
    mixed, sample or none. ``val_groups``: the held-out tracks (their seeds) and sessions (``session:NAME``)."""

    train: list[int]
    val: list[int]
    mode: str
    val_groups: list = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode, "train": len(self.train), "val": len(self.val), "val_groups": list(self.val_groups)}


def _group_of(sample: Sample) -> tuple[str, Any] | None:
    """("track", seed) for a simulator sample, ("session", name) for a recorded or imported one, else None."""
    value = sample.meta.get("track_seed")
    if not isinstance(value, bool) and isinstance(value, (int, str)):
        return ("track", value)
    session = sample.meta.get("session")
    if isinstance(session, str) and session:
        return ("session", session)
    return None


def _group_label(group: tuple[str, Any]) -> Any:
    kind, value = group
    return value if kind == "track" else f"session:{value}"


def split_samples(samples: Sequence[Sample], val_fraction: float, seed: int,
                  origins: Sequence[int] | None = None) -> Split:
    """Train/val split, deterministic for a given seed, sample list and ``origins`` (the dataset of each sample).

    Whole groups go to val: simulator tracks (``track_seed``, one pool over all datasets, since a seed names the
    same track everywhere) and recording sessions (``session``, chosen within each dataset, so every dataset with
    sessions has some held out): about ``val_fraction`` of the groups of each pool, at least one, never all.
    Samples without a group, and the samples of a pool with a single group, are split at random per sample, within
    each dataset; every dataset keeps at least one training sample.
    """
    if val_fraction <= 0:
        return Split(list(range(len(samples))), [], "none")
    origins = [0] * len(samples) if origins is None else [int(o) for o in origins]
    rng = np.random.default_rng(seed)
    pools: dict[tuple, dict[Any, list[int]]] = {}  # (kind, dataset or None) -> group -> sample indices
    loose: dict[int, list[int]] = {}  # dataset -> sample indices split per sample
    for index, sample in enumerate(samples):
        group = _group_of(sample)
        if group is None:
            loose.setdefault(origins[index], []).append(index)
        else:
            pool = ("track", None) if group[0] == "track" else ("session", origins[index])
            pools.setdefault(pool, {}).setdefault(group, []).append(index)
    train: list[int] = []
    val: list[int] = []
    val_groups: list = []
    for pool in sorted(pools, key=lambda p: (p[0] != "track", p[1] or 0)):
        groups = pools[pool]
        if len(groups) < 2:
            only = next(iter(groups))
            log.warning("all samples with a %s%s come from one %s (%s); splitting them by sample%s", pool[0],
                        "" if pool[1] is None else f" in --data folder {pool[1] + 1}", pool[0], only[1],
                        "" if pool[0] == "track" else " (record several sessions to validate on one never trained on)")
            for index in groups[only]:
                loose.setdefault(origins[index], []).append(index)
            continue
        names = sorted(groups, key=lambda g: (isinstance(g[1], str), g[1]))
        order = [names[i] for i in rng.permutation(len(names))]
        n_val = min(max(1, round(val_fraction * len(names))), len(names) - 1)
        chosen = set(order[:n_val])
        val_groups.extend(_group_label(g) for g in names if g in chosen)
        for name in names:
            (val if name in chosen else train).extend(groups[name])
    sample_val = {dataset: min(round(val_fraction * len(indices)), len(indices) - 1)
                  for dataset, indices in loose.items()}
    if not val and loose and not any(sample_val.values()):
        biggest = max(loose, key=lambda d: len(loose[d]))
        sample_val[biggest] = min(1, len(loose[biggest]) - 1)
    for dataset in sorted(loose):
        indices = sorted(loose[dataset])
        chosen_positions = set(rng.permutation(len(indices))[:sample_val[dataset]].tolist())
        for i, index in enumerate(indices):
            (val if i in chosen_positions else train).append(index)
    if not train:
        raise JetracerError("the validation split took every sample; lower --val-fraction or add data")
    by_sample = any(sample_val.values())
    mode = "group" if val_groups and not by_sample else "mixed" if val_groups else "sample"
    return Split(sorted(train), sorted(val), mode, val_groups)


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


def epoch_draws(origins: np.ndarray, weights: Sequence[float] | None, generator: torch.Generator) -> torch.Tensor:
    """One epoch's order of draws from ``len(origins)`` training samples (``origins``: each one's dataset).

    Without ``weights``: every sample once, shuffled. With them, as many draws as there are samples, dataset d's
    share in proportion to ``weights[d]`` (largest remainder, so the counts add up): each of its samples the same
    number of times, the remainder a random subset without repeats, so a small dataset is repeated evenly rather
    than sampled with replacement; then all of it shuffled.
    """
    total = len(origins)
    if weights is None:
        return torch.randperm(total, generator=generator)
    members = [np.flatnonzero(origins == d) for d in range(len(weights))]
    present = np.array([float(w) if len(m) else 0.0 for w, m in zip(weights, members, strict=True)])
    exact = total * present / present.sum()
    counts = np.floor(exact).astype(np.int64)
    for d in np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]:
        counts[d] += 1
    parts = []
    for index, count in zip(members, counts, strict=True):
        if count == 0:
            continue
        repeats, rest = divmod(int(count), len(index))
        chosen = torch.from_numpy(index)
        parts.extend([chosen] * repeats)
        parts.append(chosen[torch.randperm(len(index), generator=generator)[:rest]])
    draws = torch.cat(parts)
    return draws[torch.randperm(len(draws), generator=generator)]


class EpochBatchSampler(torch.utils.data.Sampler):
    """This process's part of every optimizer step's batch; the order depends only on (seed, epoch), so it is
    reproducible and the same after a resume, in one process or several.

    The epoch's draws (``epoch_draws``) are cut into batches of ``batch_size`` (a last, partial batch is dropped
    when there is a full one); process ``rank`` of ``world`` takes the contiguous slice ``[rank * b, (rank + 1) *
    b)`` of each, ``b = batch_size / world``. Like ``DistributedSampler``, the processes share the epoch without
    overlap; unlike it, together they take exactly the batches one process would, weights included.
    """

    def __init__(self, origins: np.ndarray, weights: Sequence[float] | None, batch_size: int, seed: int,
                 rank: int = 0, world: int = 1):
        self.origins, self.weights = np.asarray(origins, dtype=np.int64), None if weights is None else list(weights)
        self.batch_size, self.seed, self.rank, self.world, self.epoch = int(batch_size), int(seed), rank, world, 0
        if self.batch_size % world:
            raise JetracerError(f"--batch-size {batch_size} must be a multiple of the {world} processes: each "
                                "takes the same share of every batch")
        if world > 1 and len(self.origins) < self.batch_size:
            raise JetracerError(f"{len(self.origins)} training samples, fewer than --batch-size {batch_size}: with "
                                f"{world} processes every batch must be full; lower --batch-size")
        self.per_process = self.batch_size // world
        self.steps = max(1, len(self.origins) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_order(self) -> torch.Tensor:
        """The whole epoch's draws, the same in every process."""
        generator = torch.Generator().manual_seed(_seed_for(self.seed, self.epoch, 0))
        return epoch_draws(self.origins, self.weights, generator)

    def __iter__(self) -> Iterator[list[int]]:
        order = self.epoch_order()
        if len(order) < self.batch_size:  # one process, fewer samples than a batch: one smaller batch
            yield order.tolist()
            return
        for step in range(self.steps):
            start = step * self.batch_size + self.rank * self.per_process
            yield order[start:start + self.per_process].tolist()

    def __len__(self) -> int:
        return self.steps


def _worker_init(_worker_id: int) -> None:
    cv2.setNumThreads(1)  # one decode per worker process; OpenCV's own threads would only oversubscribe the cores


def make_loader(
    dataset: FrameDataset, workers: int, pin_memory: bool, *, batch_sampler: EpochBatchSampler | None = None,
    batch_size: int = 1,
) -> torch.utils.data.DataLoader:
    """A DataLoader over ``dataset``: the batches of ``batch_sampler`` (training) or, without one, batches of
    ``batch_size`` in order (validation)."""
    kwargs: dict[str, Any] = {}
    if workers > 0:
        # forkserver, not fork: forking a process that already runs CUDA or DDS threads can deadlock the workers
        kwargs.update(persistent_workers=True, prefetch_factor=4, worker_init_fn=_worker_init,
                      multiprocessing_context="forkserver")
    if batch_sampler is not None:
        kwargs["batch_sampler"] = batch_sampler
    else:
        kwargs["batch_size"] = batch_size
    return torch.utils.data.DataLoader(dataset, num_workers=workers, pin_memory=pin_memory, **kwargs)


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
    model: torch.nn.Module, loader: torch.utils.data.DataLoader | None, device: torch.device,
    amp_dtype: torch.dtype | None, channels_last: bool, contract: ModelContract, *,
    origins: Sequence[int] | None = None, names: Sequence[str] = ("",), weights: Sequence[float] | None = None,
    distributed: bool = False,
) -> dict[str, Any]:
    """{"val_loss": MSE over (x, y), "val_mae_<output>": mean |error| per output} on un-augmented frames.

    ``origins``: the dataset of each of the loader's samples, in its order (``names`` name the datasets); with more
    than one dataset the metrics of each are under "val_datasets", and with ``weights`` the top-level metrics are
    the weighted mean of the datasets' (those with validation samples), so that they measure what the weights ask
    for. ``distributed``: each process evaluated its share of the samples and the sums are added up over the
    processes, so every process gets the metrics of all of them; ``loader`` None is an empty share.
    """
    model.eval()
    datasets, outputs = len(names), len(contract.outputs)
    sq = torch.zeros(datasets, outputs, dtype=torch.float64, device=device)
    ab = torch.zeros(datasets, outputs, dtype=torch.float64, device=device)
    count = torch.zeros(datasets, dtype=torch.float64, device=device)
    origin = torch.as_tensor(np.zeros(0, np.int64) if origins is None else np.asarray(origins, np.int64))
    seen = 0
    for images, targets in loader if loader is not None else ():
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        inputs, targets = prepare_batch(images, targets, None, None, channels_last, contract)
        with _autocast(device, amp_dtype):
            pred = model(inputs)
        err = (pred.float() - targets).double()
        n = targets.shape[0]
        which = origin[seen:seen + n].to(device) if origins is not None else torch.zeros(n, dtype=torch.int64,
                                                                                         device=device)
        sq.index_add_(0, which, err * err)
        ab.index_add_(0, which, err.abs())
        count.index_add_(0, which, torch.ones(n, dtype=torch.float64, device=device))
        seen += n
    if distributed:
        for total in (sq, ab, count):
            dist.all_reduce(total)
    counts = count.tolist()
    if sum(counts) == 0:
        return {}
    per_dataset = []
    for d in range(datasets):
        if counts[d]:
            mse, mae = (sq[d] / counts[d]).tolist(), (ab[d] / counts[d]).tolist()
            per_dataset.append((d, int(counts[d]), sum(mse) / outputs, mae))
    shares = np.array([counts[d] if weights is None else float(weights[d]) for d, *_ in per_dataset])
    shares /= shares.sum()
    metrics: dict[str, Any] = {"val_loss": float(shares @ [loss for _, _, loss, _ in per_dataset])}
    for i, name in enumerate(contract.outputs):
        metrics[f"val_mae_{name}"] = float(shares @ [mae[i] for *_, mae in per_dataset])
    if datasets > 1:
        metrics["val_datasets"] = {
            names[d]: {"samples": n, "val_loss": loss,
                       **{f"val_mae_{name}": mae[i] for i, name in enumerate(contract.outputs)}}
            for d, n, loss, mae in per_dataset
        }
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


def resume_progress(state: dict | None, optimizer, scheduler, scaler) -> tuple[int, int, list, dict, int | None]:
    """A ``last.pt`` state put back into the optimizer, scheduler and gradient scaler (built first: the scheduler's
    construction resets the learning rate), and where the run was: (start epoch, global step, history, best
    metrics, best epoch); a fresh start without ``state``."""
    if state is None:
        return 0, 0, [], {}, None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    return (int(state["epoch"]), int(state["global_step"]), list(state.get("history") or []),
            dict(state.get("best_metrics") or {}), state.get("best_epoch"))


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
    data_dirs: list[str] = field(default_factory=list)
    main_process: bool = True  # False in processes 1.. of a multi-process run: they wrote nothing


# ---------------------------------------------------------------------------------------------------------------------
# The training run


def _freeze_batchnorm(model: torch.nn.Module) -> None:
    """BatchNorm layers normalise with their running statistics and keep them (their scale and shift still learn)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


@contextlib.contextmanager
def _process_group(processes: Processes, device: torch.device) -> Iterator[None]:
    """The torch.distributed process group of a multi-process run (NCCL on CUDA, gloo on the CPU), for the
    duration of the run; nothing for one process or when the caller already made one."""
    if processes.world == 1 or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def _init_model(path: str | os.PathLike, contract: ModelContract | None) -> tuple[torch.nn.Module, ModelContract,
                                                                                 dict[str, Any]]:
    """The network to fine-tune from ``path`` (a checkpoint of ours or a bare ResNet18 state dict), its contract and
    what the run records about it."""
    from .engines.sidecar import source_hash

    path = Path(path)
    model, data = load_checkpoint(path)
    init_contract = contract_from_record(data, path)
    if contract is not None and contract != init_contract:
        raise JetracerError(f"the model contract asked for differs from the one of --init {path} "
                            f"({init_contract.summary()}); a fine-tuned model keeps its contract")
    record = {"path": str(path.absolute()), "sha256": source_hash(path), "kind": data.get("kind", "state_dict"),
              "epoch": data.get("epoch"), "metrics": data.get("metrics")}
    return model.train(), init_contract, record


def train(
    data_dirs: Sequence[str | os.PathLike | DataSource] | None,
    out_dir: str | os.PathLike,
    *,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    device: str = "auto",
    max_steps: int | None = None,
    progress: bool | None = None,
    contract: ModelContract | None = None,
    init: str | os.PathLike | None = None,
) -> TrainResult:
    """Trains (or, with ``resume``, continues) a run in ``out_dir``; returns where the results are.

    ``data_dirs``: dataset folders, each a path, a ``DIR:WEIGHT`` string or a ``DataSource``. ``overrides`` are
    config/train.yaml keys (epochs, batch_size, lr, weight_decay, val_fraction, seed, workers, weights, batchnorm,
    augment); None values are ignored. On ``resume`` the settings stored in RUN/last.pt are kept, except ``epochs``
    and ``workers``; ``data_dirs`` defaults to the run's own (with its weights). ``max_steps`` stops after that many
    optimizer steps in total (counting those before a resume): the epoch then ends early, is validated and saved,
    and is marked ``partial`` in metrics.jsonl. ``progress``: tqdm bar (None: only on a terminal). ``contract``: the
    model contract of a new run (input size, normalization, outputs; default: config/model.yaml's, or the one of
    ``init``); a resumed run keeps its own. ``init``: a model to fine-tune (a checkpoint or a JetRacer notebook
    ``.pth``); not with ``resume``.

    Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) this is one of the run's processes; see the module docstring.
    """
    from tqdm import tqdm

    processes = Processes.from_environ()
    say = log.info if processes.main else log.debug
    warn = log.warning if processes.main else log.debug
    run_dir = prepare_run_dir(out_dir)
    paths = {name: run_dir / name for name in (BEST_NAME, LAST_NAME, METRICS_NAME, PLOT_NAME)}
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise JetracerError(f"--max-steps must be an integer >= 1, got {max_steps!r}")
    if resume and init is not None:
        raise JetracerError("--init starts a new run from a model and --resume continues RUN from its last.pt; "
                            "give one of them")

    state: dict[str, Any] | None = None
    init_record: dict[str, Any] | None = None
    net: torch.nn.Module | None = None
    if resume:
        state = _load_resume_state(paths[LAST_NAME])
        saved = dict(state["train_config"])
        ignored = {
            k: v for k, v in (overrides or {}).items()
            if v is not None and k not in RESUMABLE_OVERRIDES and v != saved.get(k)
        }
        if ignored:
            warn("--resume keeps the run's own settings; ignoring %s",
                 ", ".join(f"{k}={v}" for k, v in ignored.items()))
        base = {**load_config("train"), **saved}  # keys added to config/train.yaml since the run started: defaults
        settings = resolve_settings({k: v for k, v in (overrides or {}).items() if k in RESUMABLE_OVERRIDES}, base=base)
        if not data_dirs:
            saved_dirs = list(state.get("data_dirs") or [])
            saved_weights = state.get("data_weights") or [None] * len(saved_dirs)
            data_dirs = [DataSource(d, w) for d, w in zip(saved_dirs, saved_weights, strict=True)]
        saved_contract = contract_from_record(state, paths[LAST_NAME])
        if contract is not None and contract != saved_contract:
            warn("--resume keeps the run's own model contract (%s)", saved_contract.summary())
        contract = saved_contract
        init_record = state.get("init")
    else:
        settings = resolve_settings(overrides)
        if init is not None:
            net, contract, init_record = _init_model(init, contract)
            say("fine-tuning from %s (%s%s); the optimizer and its schedule start fresh", init, init_record["kind"],
                f", epoch {init_record['epoch']}" if init_record["epoch"] is not None else "")
        contract = contract or ModelContract.default()
        if paths[LAST_NAME].exists():
            warn("%s already holds a run; starting over (pass --resume to continue it)", run_dir)
    sources = parse_data_sources(data_dirs or [])
    names = source_names(sources)
    data_weights = [s.weight for s in sources] if sources and sources[0].weight is not None else None
    dev = resolve_device(device, processes)

    samples, origins = load_datasets(sources)
    split = split_samples(samples, settings["val_fraction"], settings["seed"], origins)
    say("validation split by %s: %d train, %d val samples%s", SPLIT_MODES[split.mode], len(split.train),
        len(split.val), f" (held out whole: {split.val_groups})" if split.val_groups else "")
    if state is not None and state.get("split", {}).get("val") not in (None, len(split.val)):
        warn("the data changed since this run started: val now has %d samples, was %d",
             len(split.val), state["split"]["val"])

    # reproducibility: model init from the global RNGs, everything per-epoch from its own generators
    random.seed(settings["seed"])
    np.random.seed(settings["seed"] % 2**32)
    torch.manual_seed(settings["seed"])

    weights = settings["weights"]
    if net is not None:
        weights_init = "init"
    elif state is not None:
        weights_init = state.get("weights_init", "none")
    else:
        if weights == "imagenet" and not imagenet_weights_path().is_file():
            warn("ImageNet weights are not in the local torch hub cache (%s); training from scratch (never "
                 "downloaded)", imagenet_weights_path())
            weights = "none"
        weights_init = weights
    if net is None:
        net = build_model(weights="none" if state is not None else weights, num_outputs=len(contract.outputs))
    if state is not None:
        net.load_state_dict(state["state_dict"])

    cuda = dev.type == "cuda"
    amp_dtype: torch.dtype | None = None
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels once
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    net = net.to(dev, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    train_set = FrameDataset([samples[i] for i in split.train], contract)
    val_share = split.val[processes.rank::processes.world]  # validation is split over the processes and summed
    val_set = FrameDataset([samples[i] for i in val_share], contract)
    val_origins = origins[val_share]
    sampler = EpochBatchSampler(origins[split.train], data_weights, settings["batch_size"], settings["seed"],
                                processes.rank, processes.world)
    batch_size, workers = settings["batch_size"], settings["workers"]
    cores = max(1, (os.cpu_count() or 1) // processes.world)
    if workers > cores:
        say("%d workers requested, %d CPU cores per process: using %d", workers, cores, cores)
        workers = cores
    selected_by = "val_loss" if split.val else "train_loss"
    steps_per_epoch = len(sampler)
    total_steps = settings["epochs"] * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)

    optimizer = make_optimizer(net, settings["lr"], settings["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, settings["warmup_fraction"], settings["min_lr_ratio"])
    )
    start_epoch, global_step, history, best_metrics, best_epoch = resume_progress(state, optimizer, scheduler, scaler)
    if state is not None:
        _restore_rng_states(state.get("rng") or {})
        say("resuming %s at epoch %d, step %d", run_dir, start_epoch, global_step)
    best_value = best_metrics.get(selected_by, math.inf)
    say(
        "training on %s%s%s: %d epochs x %d steps of %d (lr %g, %s, BatchNorm %s)", dev,
        f" with {amp_dtype} autocast" if amp_dtype else " in FP32",
        f" in each of {processes.world} processes ({batch_size // processes.world} images each per step)"
        if processes.world > 1 else "", settings["epochs"], steps_per_epoch, batch_size, settings["lr"],
        f"at most {max_steps} steps" if max_steps else "no step limit", settings["batchnorm"],
    )
    say("model contract: %s", contract.summary())

    common_meta = {
        "contract": contract,
        "train_config": settings,
        "data_dirs": [s.path for s in sources],
        "data_weights": data_weights,
        "split": split.summary(),
        "weights_init": weights_init,
        "init": init_record,
    }
    aug = settings["augment"]
    train_loader = val_loader = None
    with _process_group(processes, dev):
        distributed = processes.world > 1
        model = (torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if cuda else None)
                 if distributed else net)
        train_loader = make_loader(train_set, workers, cuda, batch_sampler=sampler)
        if len(val_set):
            val_loader = make_loader(val_set, workers, cuda, batch_size=2 * batch_size // processes.world)
        try:
            for epoch in range(start_epoch, settings["epochs"]):
                if max_steps is not None and global_step >= max_steps:
                    break
                sampler.set_epoch(epoch)
                stream = 1 if processes.rank == 0 else 1000 + processes.rank  # process 0 augments as one process does
                aug_generator = torch.Generator(device=dev).manual_seed(_seed_for(settings["seed"], epoch, stream))
                model.train()
                if settings["batchnorm"] == "frozen":
                    _freeze_batchnorm(net)
                loss_sum = torch.zeros((), device=dev)
                steps = 0
                started = time.perf_counter()
                bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{settings['epochs']}", unit="batch",
                           disable=(None if progress is None else not progress) if processes.main else True,
                           leave=False, dynamic_ncols=True)
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
                if distributed:  # every process's batches are the same size: the mean of means is the batch mean
                    dist.all_reduce(loss_sum)
                    loss_sum /= processes.world
                seconds = time.perf_counter() - started
                train_loss = loss_sum.item() / max(1, steps)
                if not math.isfinite(train_loss):
                    kept = f"; the last good state is in {paths[LAST_NAME]}" if paths[LAST_NAME].exists() else ""
                    raise JetracerError(f"training diverged in epoch {epoch + 1} (loss {train_loss}); lower --lr{kept}")
                val_metrics = {}
                if split.val:
                    val_metrics = evaluate(net, val_loader, dev, amp_dtype, cuda, contract, origins=val_origins,
                                           names=names, weights=data_weights, distributed=distributed)
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
                    "processes": processes.world,
                }
                value = row.get(selected_by, math.inf)
                row["best"] = value < best_value
                history.append(row)
                if row["best"]:
                    best_value, best_epoch = value, epoch + 1
                    best_metrics = {k: row[k] for k in ("train_loss", *val_metrics) if k in row}
                if processes.main:
                    _save_epoch(net, paths, row, history, best_epoch, best_metrics, selected_by, global_step,
                                optimizer, scheduler, scaler, common_meta)
                scalars = "".join(f", {k} {v:.5f}" for k, v in val_metrics.items() if isinstance(v, float))
                say("epoch %d/%d: train loss %.5f%s%s, %.1f s", epoch + 1, settings["epochs"], train_loss, scalars,
                    " (best)" if row["best"] else "", seconds)
        finally:
            close_loader(train_loader)
            close_loader(val_loader)
    epochs_done = history[-1]["epoch"] if history else 0
    if state is not None and epochs_done == start_epoch:
        say("nothing to do: %s already reached %d epochs / step %d", run_dir, epochs_done, global_step)
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
        data_dirs=[s.path for s in sources],
        main_process=processes.main,
    )


def _save_epoch(net, paths, row, history, best_epoch, best_metrics, selected_by, global_step, optimizer, scheduler,
                scaler, common_meta) -> None:
    """Writes the epoch's files (process 0 only): best.pt when it improved, last.pt, metrics.jsonl, loss.png."""
    epoch = row["epoch"]
    if row["best"]:
        save_checkpoint(
            make_checkpoint(net, half=True, kind="best", epoch=epoch, global_step=global_step, metrics=best_metrics,
                            selected_by=selected_by, **common_meta),
            paths[BEST_NAME],
        )
    save_checkpoint(
        make_checkpoint(
            net, half=False, kind="last", epoch=epoch, global_step=global_step, metrics=row,
            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), scaler=scaler.state_dict(),
            rng=_rng_states(), history=history, best_epoch=best_epoch, best_metrics=best_metrics, **common_meta,
        ),
        paths[LAST_NAME],
    )
    write_metrics(history, paths[METRICS_NAME])
    write_loss_plot(history, paths[PLOT_NAME])


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


# ---------------------------------------------------------------------------------------------------------------------
# The ONNX model beside the checkpoint


def export_best(result: TrainResult, frames_dir: str | os.PathLike | None = None):
    """Writes ``RUN/best.onnx`` from ``RUN/best.pt``, verified against it on ``frames_dir``'s frames (default: the
    run's first dataset), unless the ONNX there already records this best.pt's SHA-256; returns the export's
    ``ConvertResult``, or None when it was up to date. ``jetracer-trt convert --model RUN/best.onnx`` takes it, and
    ``backend auto`` runs best.pt in its place on a GPU (it is the checkpoint the ONNX records)."""
    from .engines.artifacts import ONNX_CHECKPOINT_SHA256, recorded_hash
    from .engines.sidecar import source_hash

    if result.best_path is None:
        return None
    onnx_path = result.best_path.with_suffix(".onnx")
    if onnx_path.exists() and recorded_hash(onnx_path, ONNX_CHECKPOINT_SHA256)[0] == source_hash(result.best_path):
        log.info("%s is up to date with %s", onnx_path, result.best_path.name)
        return None
    try:
        from .export import export_onnx
    except ImportError as exc:
        raise JetracerError(f"cannot export {result.best_path} to ONNX: {exc} (pip install -e '.[test]'); the "
                            "checkpoint is kept; train with --no-export to skip this step") from None
    if frames_dir is None and result.data_dirs:
        frames_dir = result.data_dirs[0]
    try:
        return export_onnx(result.best_path, onnx_path, frames_dir=frames_dir, force=True)  # the run's own file
    except JetracerError as exc:
        raise JetracerError(f"{exc}; {result.best_path} is kept") from None


if __name__ == "__main__":
    from .cli.train import main

    raise SystemExit(main())
