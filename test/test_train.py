"""Training: outputs of a tiny CPU run, resume, label-preserving augmentation, the track split, bad input.

Kept cheap for a 2-core CI machine: one 3-step run is shared by the tests that read its outputs, and the resume
test continues a copy of it by one step.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jetracer_trt.cli import train as train_cli  # noqa: E402
from jetracer_trt.contract import ModelContract  # noqa: E402
from jetracer_trt.dataset import DatasetWriter, Sample  # noqa: E402
from jetracer_trt.errors import JetracerError  # noqa: E402
from jetracer_trt.model import read_checkpoint  # noqa: E402
from jetracer_trt.train import augment_batch, split_samples, train  # noqa: E402

FAST = ["--batch-size", "4", "--weights", "none", "--workers", "0", "--device", "cpu"]
DEFAULT = ModelContract.default()


def run_cli(argv: list[str]) -> int:
    """The ``train`` verb as ``jetracer-trt train`` runs it, without needing the other verbs' modules."""
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    args = parser.parse_args(["train", *argv])
    return args.func(args)


def make_dataset(root: Path, count: int = 24, tracked: int = 16, tracks: int = 4, seed: int = 0) -> Path:
    """``count`` random 224x224 frames with labels; the first ``tracked`` carry a track_seed (``tracks`` tracks)."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(root) as writer:
        for i in range(count):
            frame = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
            meta = {"track_seed": 100 + i % tracks} if i < tracked else {}
            writer.append(frame, float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)), **meta)
    return root


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "d")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, dataset_dir) -> Path:
    run = tmp_path_factory.mktemp("runs") / "r1"
    assert run_cli(["--data", str(dataset_dir), "--out", str(run), "--epochs", "1", "--max-steps", "3", *FAST]) == 0
    return run


def test_run_writes_metrics_plot_and_checkpoints(trained_run, dataset_dir, capsys):
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["epoch"] == 1 and row["global_step"] == 3 and row["steps"] == 3 and row["best"] is True
    for key in ("train_loss", "val_loss", "val_mae_x", "val_mae_y", "lr"):
        assert np.isfinite(row[key]), key
    assert (trained_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    best = read_checkpoint(trained_run / "best.pt")
    floats = [v for v in best["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert best["kind"] == "best" and best["architecture"] == "resnet18" and best["epoch"] == 1
    assert best["model_contract"] == DEFAULT.as_dict()  # a new run trains with config/model.yaml's contract
    assert best["train_config"]["batch_size"] == 4 and best["data_dirs"] == [str(dataset_dir.absolute())]
    assert set(best["metrics"]) >= {"val_loss", "val_mae_x", "val_mae_y"}
    fp16_bytes = sum(v.numel() * 2 for v in floats)
    assert (trained_run / "best.pt").stat().st_size < 1.05 * fp16_bytes  # ~22 MB: small enough for git

    last = read_checkpoint(trained_run / "last.pt")
    assert last["kind"] == "last" and last["epoch"] == 1 and last["global_step"] == 3
    assert all(v.dtype == torch.float32 for v in last["state_dict"].values() if v.is_floating_point())
    assert {"optimizer", "scheduler", "scaler", "rng", "history"} <= set(last)
    assert not [p.name for p in trained_run.iterdir() if ".tmp" in p.name]


def test_resume_continues_the_run(trained_run, tmp_path):
    run = tmp_path / "r1"
    shutil.copytree(trained_run, run)
    (run / "notes.txt").write_text("mine")
    resume = ["--out", str(run), "--resume", "--workers", "0", "--device", "cpu"]
    assert run_cli([*resume, "--epochs", "2", "--max-steps", "4"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["global_step"] == 4 and rows[1]["steps"] == 1
    last = read_checkpoint(run / "last.pt")
    assert last["epoch"] == 2 and last["global_step"] == 4
    assert (run / "notes.txt").read_text() == "mine"  # nothing but the run's own files is touched

    # resuming a finished run does nothing and changes nothing
    before = (run / "metrics.jsonl").read_bytes()
    assert run_cli([*resume, "--epochs", "2"]) == 0
    assert (run / "metrics.jsonl").read_bytes() == before


def test_a_run_trains_at_its_contracts_input_size_and_normalization(tmp_path, dataset_dir):
    contract = DEFAULT.replace(input_width=96, input_height=64, mean=[0.5, 0.5, 0.5], std=[0.2, 0.3, 0.4])
    result = train([dataset_dir], tmp_path / "small", overrides={"weights": "none", "workers": 0, "batch_size": 4,
                                                                 "epochs": 1}, device="cpu", max_steps=1,
                   contract=contract)
    assert read_checkpoint(result.best_path)["model_contract"] == contract.as_dict()
    assert read_checkpoint(result.last_path)["model_contract"] == contract.as_dict()


def test_training_normalizes_exactly_as_the_runtime(dataset_dir):
    from jetracer_trt.dataset import load_image, read_dataset
    from jetracer_trt.preprocess import Preprocessor
    from jetracer_trt.train import FrameDataset, prepare_batch

    contract = DEFAULT.replace(input_width=160, input_height=120, mean=[0.4, 0.45, 0.5], std=[0.3, 0.25, 0.2])
    samples = read_dataset(dataset_dir)[0][:3]
    dataset = FrameDataset(samples, contract)  # the workers' decode and resize
    images = torch.stack([dataset[i][0] for i in range(3)])
    assert images.shape == (3, 120, 160, 3)
    inputs, _ = prepare_batch(images, torch.zeros(3, 2), None, None, False, contract)
    runtime = Preprocessor(contract).batch([load_image(s.image_path) for s in samples])
    np.testing.assert_array_equal(inputs.numpy(), runtime)  # the same pixels, the same arithmetic, bit for bit


def test_resume_needs_last_pt(tmp_path, dataset_dir):
    with pytest.raises(JetracerError, match="last.pt not found"):
        run_cli(["--data", str(dataset_dir), "--out", str(tmp_path / "new"), "--resume", *FAST])


def test_horizontal_flip_negates_x_only():
    images = torch.randint(0, 256, (5, 6, 8, 3), dtype=torch.uint8)
    targets = torch.tensor([[0.5, -0.2], [-1.0, 1.0], [0.0, 0.3], [0.25, 0.0], [-0.75, -0.5]])
    out, out_targets = augment_batch(images, targets, {"flip_prob": 1.0})
    assert torch.equal(out, images.flip(2))  # mirrored along the width of NHWC
    assert torch.equal(out_targets[:, 0], -targets[:, 0]) and torch.equal(out_targets[:, 1], targets[:, 1])
    assert torch.equal(targets[:, 0], torch.tensor([0.5, -1.0, 0.0, 0.25, -0.75]))  # input untouched

    same, same_targets = augment_batch(images, targets, {"flip_prob": 0.0})
    assert torch.equal(same, images) and torch.equal(same_targets, targets)


def test_random_flip_is_per_sample_and_consistent():
    images = torch.randint(0, 256, (64, 4, 6, 3), dtype=torch.uint8)
    targets = torch.rand(64, 2) * 2 - 1
    out, out_targets = augment_batch(images, targets, {"flip_prob": 0.5}, torch.Generator().manual_seed(1))
    flipped = [torch.equal(out[i], images[i].flip(1)) for i in range(64)]
    for i in range(64):
        if flipped[i]:
            assert out_targets[i, 0] == -targets[i, 0]
        else:
            assert torch.equal(out[i], images[i]) and out_targets[i, 0] == targets[i, 0]
    assert 10 < sum(flipped) < 54
    assert torch.equal(out_targets[:, 1], targets[:, 1])


def test_photometric_augmentation_keeps_labels():
    images = torch.randint(0, 256, (8, 16, 16, 3), dtype=torch.uint8)
    targets = torch.rand(8, 2) * 2 - 1
    aug = {"flip_prob": 0.0, "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "channel_gain": 0.1,
           "blur_prob": 1.0, "blur_sigma_max": 1.5, "noise_prob": 1.0, "noise_std_max": 8.0}
    out, out_targets = augment_batch(images, targets, aug, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out_targets, targets)
    assert not torch.equal(out, images)


def _samples(tracks: int, per_track: int, loose: int = 0) -> list[Sample]:
    samples = [
        Sample(Path(f"/t{t}_{i}.jpg"), 0.0, 0.0, {"track_seed": t}) for t in range(tracks) for i in range(per_track)
    ]
    return samples + [Sample(Path(f"/loose{i}.jpg"), 0.0, 0.0, {}) for i in range(loose)]


def test_split_puts_whole_tracks_in_val():
    samples = _samples(tracks=10, per_track=5)
    split = split_samples(samples, 0.2, seed=3)
    assert split.mode == "track" and len(split.val_tracks) == 2 and len(split.val) == 10
    train_tracks = {samples[i].meta["track_seed"] for i in split.train}
    val_tracks = {samples[i].meta["track_seed"] for i in split.val}
    assert not train_tracks & val_tracks and val_tracks == set(split.val_tracks)
    assert split_samples(samples, 0.2, seed=3) == split  # deterministic
    assert sorted(split.train + split.val) == list(range(len(samples)))


def test_split_mixed_and_by_sample():
    samples = _samples(tracks=4, per_track=3, loose=10)
    split = split_samples(samples, 0.25, seed=0)
    assert split.mode == "mixed" and len(split.val_tracks) == 1
    assert sorted(split.train + split.val) == list(range(len(samples)))
    loose_val = [i for i in split.val if "track_seed" not in samples[i].meta]
    assert len(loose_val) == 2 or len(loose_val) == 3  # round(0.25 * 10)

    untracked = _samples(tracks=0, per_track=0, loose=20)
    split = split_samples(untracked, 0.1, seed=0)
    assert split.mode == "sample" and len(split.val) == 2 and len(split.train) == 18
    assert split_samples(untracked, 0.1, seed=0) == split


def test_empty_dataset_is_a_clear_error(tmp_path):
    DatasetWriter(tmp_path / "empty").close()
    with pytest.raises(JetracerError, match="no usable samples"):
        train([tmp_path / "empty"], tmp_path / "run", overrides={"weights": "none", "workers": 0}, device="cpu")
    with pytest.raises(JetracerError, match="does not exist"):
        train([tmp_path / "missing"], tmp_path / "run", overrides={"weights": "none", "workers": 0}, device="cpu")


def test_unwritable_run_dir_is_a_clear_error(tmp_path, dataset_dir):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    with pytest.raises(JetracerError, match="cannot create the run folder"):
        run_cli(["--data", str(dataset_dir), "--out", str(blocker / "run"), *FAST])
    with pytest.raises(JetracerError, match="not a folder|cannot create"):
        run_cli(["--data", str(dataset_dir), "--out", str(blocker), *FAST])
    assert blocker.read_text() == "keep me"


def test_bad_settings_are_clear_errors(tmp_path, dataset_dir):
    with pytest.raises(JetracerError, match="batch size"):
        run_cli(["--data", str(dataset_dir), "--out", str(tmp_path / "r"), "--batch-size", "0", *FAST[2:]])
    with pytest.raises(JetracerError, match="needs --data"):
        run_cli(["--out", str(tmp_path / "r")])


def test_cli_modules_do_not_import_torch():
    code = (
        "import sys, jetracer_trt.cli.train, jetracer_trt.cli.export; "
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'torch imported at import time'"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)


def test_imagenet_weights_come_only_from_the_local_cache(tmp_path, monkeypatch):
    import torchvision

    from jetracer_trt.model import build_model, imagenet_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(JetracerError, match="ImageNet weights not found"):
        build_model(weights="imagenet")
    torch.manual_seed(5)
    cached = torchvision.models.resnet18(weights=None).state_dict()  # stands in for the real download
    imagenet_weights_path().parent.mkdir(parents=True)
    torch.save(cached, imagenet_weights_path())
    model = build_model(weights="imagenet")
    assert torch.equal(model.conv1.weight, cached["conv1.weight"])
    assert model.fc.out_features == 2


def test_loader_workers_decode_and_stop(dataset_dir):
    import multiprocessing

    from jetracer_trt.dataset import read_dataset
    from jetracer_trt.train import EpochShuffleSampler, FrameDataset, close_loader, make_loader

    samples = read_dataset(dataset_dir)[0][:8]
    dataset = FrameDataset(samples, DEFAULT)
    sampler = EpochShuffleSampler(len(dataset), seed=0)
    loader = make_loader(dataset, 4, workers=2, pin_memory=False, sampler=sampler)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
        batches = list(loader)
        assert [tuple(b[0].shape) for b in batches] == [(4, 224, 224, 3)] * 2 and batches[0][0].dtype == torch.uint8
        assert batches[0][1].dtype == torch.float32 and batches[0][1].shape == (4, 2)
    assert orders[0] == orders[2] != orders[1]  # the shuffle depends on (seed, epoch) only
    close_loader(loader)
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]
