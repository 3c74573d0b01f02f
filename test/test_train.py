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
    assert split.mode == "group" and len(split.val_groups) == 2 and len(split.val) == 10
    train_tracks = {samples[i].meta["track_seed"] for i in split.train}
    val_tracks = {samples[i].meta["track_seed"] for i in split.val}
    assert not train_tracks & val_tracks and val_tracks == set(split.val_groups)
    assert split_samples(samples, 0.2, seed=3) == split  # deterministic
    assert sorted(split.train + split.val) == list(range(len(samples)))


def test_split_mixed_and_by_sample():
    samples = _samples(tracks=4, per_track=3, loose=10)
    split = split_samples(samples, 0.25, seed=0)
    assert split.mode == "mixed" and len(split.val_groups) == 1
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
    from jetracer_trt.train import EpochBatchSampler, FrameDataset, close_loader, make_loader

    samples = read_dataset(dataset_dir)[0][:8]
    dataset = FrameDataset(samples, DEFAULT)
    sampler = EpochBatchSampler(np.zeros(len(dataset), np.int64), None, batch_size=4, seed=0)
    loader = make_loader(dataset, workers=2, pin_memory=False, batch_sampler=sampler)
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


# ---------------------------------------------------------------------------------------------------------------------
# Several datasets with weights, sessions held out, fine-tuning, the ONNX beside the checkpoint, --task, --nproc


SMALL = DEFAULT.replace(input_width=64, input_height=64)  # what ResNet18 trains fastest on, for runs that need no 224


def small_init(path: Path, seed: int = 0) -> Path:
    """A checkpoint of a random ResNet18 with a 64x64 contract, to fine-tune from."""
    from jetracer_trt.model import build_model, make_checkpoint, save_checkpoint

    torch.manual_seed(seed)
    return save_checkpoint(make_checkpoint(build_model(), half=False, contract=SMALL, kind="best", epoch=7), path)


def test_data_weights_are_parsed_for_every_folder_or_none(tmp_path):
    from jetracer_trt.train import parse_data_sources

    sources = parse_data_sources(["real:3", "sim:1.5"])
    assert [(Path(s.path).name, s.weight) for s in sources] == [("real", 3.0), ("sim", 1.5)]
    assert [s.weight for s in parse_data_sources(["a", tmp_path / "b:2"])] == [None, None]  # a Path is a path
    (tmp_path / "run:2").mkdir()
    assert parse_data_sources([str(tmp_path / "run:2")])[0].path == str(tmp_path / "run:2")  # an existing folder
    with pytest.raises(JetracerError, match="a weight .* or none; no weight for .*sim"):
        parse_data_sources(["real:3", "sim"])
    for bad in ("real:0", "real:-1", "real:nan", "real:inf"):
        with pytest.raises(JetracerError, match="must be a number > 0"):
            parse_data_sources([bad])


def test_epoch_draws_follow_the_weights():
    from jetracer_trt.train import epoch_draws

    origins = np.array([0] * 10 + [1] * 90)
    draws = epoch_draws(origins, [3, 1], torch.Generator().manual_seed(0)).numpy()
    assert len(draws) == 100
    assert np.sum(origins[draws] == 0) == 75 and np.sum(origins[draws] == 1) == 25  # 3:1, not 10:90
    small = np.bincount(draws[origins[draws] == 0], minlength=10)
    assert small.min() >= 7 and small.max() <= 8  # the small dataset repeated evenly, not drawn with replacement
    assert len(set(draws[origins[draws] == 1].tolist())) == 25  # the big one: a subset without repeats
    again = epoch_draws(origins, [3, 1], torch.Generator().manual_seed(0)).numpy()
    assert np.array_equal(draws, again)
    plain = epoch_draws(origins, None, torch.Generator().manual_seed(0)).numpy()
    assert sorted(plain.tolist()) == list(range(100))  # no weights: every sample once


def test_processes_take_exactly_the_batches_one_process_takes():
    from jetracer_trt.train import EpochBatchSampler

    origins = np.array([0] * 7 + [1] * 30)
    for weights in (None, [1, 1]):
        single = EpochBatchSampler(origins, weights, batch_size=8, seed=3)
        ranks = [EpochBatchSampler(origins, weights, batch_size=8, seed=3, rank=r, world=2) for r in (0, 1)]
        for epoch in (0, 4):
            for sampler in (single, *ranks):
                sampler.set_epoch(epoch)
            batches = list(single)
            assert len(batches) == 4 and all(len(b) == 8 for b in batches)  # 37 draws: 4 full batches
            for step, (first, second) in enumerate(zip(*ranks, strict=True)):
                assert len(first) == len(second) == 4 and first + second == batches[step]
    assert list(EpochBatchSampler(origins[:5], None, batch_size=8, seed=0)) != []  # one small batch, one process
    with pytest.raises(JetracerError, match="multiple of the 3 processes"):
        EpochBatchSampler(origins, None, batch_size=8, seed=0, rank=0, world=3)
    with pytest.raises(JetracerError, match="fewer than --batch-size 8"):
        EpochBatchSampler(origins[:5], None, batch_size=8, seed=0, rank=0, world=2)


def test_split_holds_out_whole_sessions_of_each_dataset():
    sim = _samples(tracks=10, per_track=4)
    real = [Sample(Path(f"/r{s}_{i}.jpg"), 0.0, 0.0, {"session": f"s{s}", "source": "click"})
            for s in range(5) for i in range(6)]
    origins = [0] * len(sim) + [1] * len(real)
    samples = sim + real
    split = split_samples(samples, 0.2, seed=1, origins=origins)
    assert split.mode == "group"
    sessions_val = {samples[i].meta["session"] for i in split.val if "session" in samples[i].meta}
    sessions_train = {samples[i].meta["session"] for i in split.train if "session" in samples[i].meta}
    assert len(sessions_val) == 1 and not sessions_val & sessions_train  # 20% of the real data's 5 sessions
    assert sum(isinstance(g, int) for g in split.val_groups) == 2  # and 20% of the 10 tracks
    assert {f"session:{s}" for s in sessions_val} <= set(split.val_groups)
    assert split_samples(samples, 0.2, seed=1, origins=origins) == split

    one_session = real[:6]  # a single session cannot be held out whole: split by sample, within it
    split = split_samples(sim + one_session, 0.2, seed=1, origins=[0] * len(sim) + [1] * 6)
    assert split.mode == "mixed" and any(i >= len(sim) for i in split.val) and any(i >= len(sim) for i in split.train)


def test_weighted_run_validates_each_dataset(tmp_path, dataset_dir):
    other = make_dataset(tmp_path / "other", count=12, tracked=12, tracks=3, seed=1)
    init = small_init(tmp_path / "init.pt")
    result = train([f"{dataset_dir}:3", f"{other}:1"], tmp_path / "run", init=init, device="cpu", max_steps=1,
                   overrides={"workers": 0, "batch_size": 4, "epochs": 1})
    row = json.loads(result.metrics_path.read_text().splitlines()[0])
    per = row["val_datasets"]
    assert set(per) == {dataset_dir.name, "other"} and all(v["samples"] > 0 for v in per.values())
    expected = (3 * per[dataset_dir.name]["val_loss"] + per["other"]["val_loss"]) / 4  # the weights' mean
    assert row["val_loss"] == pytest.approx(expected, rel=1e-9)
    best = read_checkpoint(result.best_path)
    assert best["data_weights"] == [3.0, 1.0] and best["data_dirs"] == [str(dataset_dir.absolute()), str(other)]


def test_init_fine_tunes_from_a_checkpoint_and_keeps_its_contract(tmp_path, dataset_dir):
    from jetracer_trt.engines.sidecar import source_hash

    init = small_init(tmp_path / "init.pt")
    start = read_checkpoint(init)["state_dict"]
    assert run_cli(["--data", str(dataset_dir), "--out", str(tmp_path / "ft"), "--init", str(init), "--lr", "1e-12",
                    "--batchnorm", "frozen", "--max-steps", "1", "--epochs", "1", "--no-export", *FAST]) == 0
    last = read_checkpoint(tmp_path / "ft" / "last.pt")
    assert last["model_contract"] == SMALL.as_dict() and last["weights_init"] == "init"
    assert last["init"]["sha256"] == source_hash(init) and last["init"]["epoch"] == 7
    for key, value in start.items():  # lr 1e-12: the weights are the init's, BatchNorm statistics untouched
        assert torch.allclose(last["state_dict"][key].float(), value.float(), atol=1e-6), key
    assert not (tmp_path / "ft" / "best.onnx").exists()  # --no-export

    with pytest.raises(JetracerError, match="give one of them"):
        run_cli(["--out", str(tmp_path / "ft"), "--resume", "--init", str(init), *FAST])
    with pytest.raises(JetracerError, match="not found"):
        run_cli(["--data", str(dataset_dir), "--out", str(tmp_path / "x"), "--init", str(tmp_path / "no.pt"), *FAST])


def test_batchnorm_batch_mode_updates_the_statistics(tmp_path, dataset_dir):
    init = small_init(tmp_path / "init.pt")
    train([dataset_dir], tmp_path / "bn", init=init, device="cpu", max_steps=1,
          overrides={"workers": 0, "batch_size": 4, "epochs": 1, "batchnorm": "batch"})
    moved = read_checkpoint(tmp_path / "bn" / "last.pt")["state_dict"]["bn1.running_mean"]
    assert not torch.allclose(moved, read_checkpoint(init)["state_dict"]["bn1.running_mean"])


def test_init_from_a_jetracer_notebook_state_dict(tmp_path, dataset_dir, caplog):
    import torchvision

    notebook = torchvision.models.resnet18(weights=None)
    notebook.fc = torch.nn.Linear(512, 2)  # as the JetRacer road-following notebook builds and saves it
    torch.save(notebook.state_dict(), tmp_path / "best_steering_model_xy.pth")
    with caplog.at_level("WARNING"):
        result = train([dataset_dir], tmp_path / "nb", init=tmp_path / "best_steering_model_xy.pth", device="cpu",
                       max_steps=1, overrides={"workers": 0, "batch_size": 4, "epochs": 1, "augment": {"flip_prob": 0}})
    best = read_checkpoint(result.best_path)
    assert best["model_contract"] == DEFAULT.as_dict() and best["init"]["kind"] == "state_dict"
    assert "carries no model contract" in caplog.text  # the file does not say how it was trained: a warning


def test_the_run_writes_a_verified_onnx_beside_best_pt(trained_run):
    from jetracer_trt.engines.artifacts import ONNX_CHECKPOINT_SHA256, recorded_hash
    from jetracer_trt.engines.select import _Model, checkpoint_problem, choose_backend
    from jetracer_trt.engines.sidecar import source_hash
    from jetracer_trt.train import TrainResult, export_best

    onnx_path = trained_run / "best.onnx"
    assert recorded_hash(onnx_path, ONNX_CHECKPOINT_SHA256)[0] == source_hash(trained_run / "best.pt")
    assert checkpoint_problem(trained_run / "best.pt", _Model(onnx_path)) is None  # backend auto may run best.pt
    assert choose_backend(onnx_path).backend in ("onnxruntime", "torch", "tensorrt")
    stamp = onnx_path.stat().st_mtime_ns
    result = TrainResult(trained_run, trained_run / "last.pt", trained_run / "best.pt", trained_run / "metrics.jsonl",
                         trained_run / "loss.png", 1, 3, 1, {}, "val_loss")
    assert export_best(result) is None and onnx_path.stat().st_mtime_ns == stamp  # up to date: left alone


def test_augment_off_turns_every_strength_off(tmp_path, dataset_dir):
    assert run_cli(["--data", str(dataset_dir), "--out", str(tmp_path / "r"), "--augment", "off", "--max-steps", "1",
                    "--epochs", "1", "--init", str(small_init(tmp_path / "i.pt")), "--no-export", *FAST]) == 0
    augment = read_checkpoint(tmp_path / "r" / "best.pt")["train_config"]["augment"]
    assert augment and not any(augment.values())


def test_task_option_dispatches_to_the_tasks_trainer(monkeypatch, tmp_path):
    import types

    calls = []
    fake = types.ModuleType("fake_pose_train")
    fake.run_cli = lambda args: calls.append((args.task, args.data, args.out, args.minutes)) or 0
    monkeypatch.setitem(sys.modules, "fake_pose_train", fake)
    monkeypatch.setitem(train_cli.TASK_MODULES, "pose", "fake_pose_train")
    assert run_cli(["--task", "pose", "--data", "coco", "--out", str(tmp_path / "p"), "--minutes", "3.4"]) == 0
    assert calls == [("pose", ["coco"], str(tmp_path / "p"), 3.4)]
    monkeypatch.setitem(train_cli.TASK_MODULES, "pose", "jetracer_trt.no_such_trainer")
    with pytest.raises(JetracerError, match="--task pose: this install has no trainer"):
        run_cli(["--task", "pose", "--out", str(tmp_path / "p")])


def test_nproc_starts_torchrun_with_the_same_options(monkeypatch, tmp_path):
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--data", "real:3", "sim:1", "--out", "runs/r", "--nproc", "2", "--init",
                              "models/road_following.pt", "--batch-size", "64", "--resume", "--device", "cpu"])
    command = train_cli.torchrun_command(args)
    assert command[:7] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m"]
    assert command[7] == "jetracer_trt.train" and "--nproc" not in command
    options = command[8:]
    assert options[options.index("--data") + 1:options.index("--data") + 3] == ["real:3", "sim:1"]
    for flag, value in (("--out", "runs/r"), ("--init", "models/road_following.pt"), ("--batch-size", "64"),
                        ("--device", "cpu"), ("--task", "road_following")):
        assert options[options.index(flag) + 1] == value
    assert "--resume" in options and "--no-export" not in options

    class Replaced(Exception):
        pass

    def execv(path, argv):  # os.execv does not return: this process becomes torchrun
        execs.append(argv)
        raise Replaced

    execs = []
    monkeypatch.setattr(os, "execv", execv)
    with pytest.raises(Replaced):
        run_cli(["--data", "d", "--out", str(tmp_path / "r"), "--nproc", "2"])
    assert execs[0][:3] == [sys.executable, "-m", "torch.distributed.run"]
    with pytest.raises(JetracerError, match="multiple of --nproc 2"):
        run_cli(["--data", "d", "--out", str(tmp_path / "r"), "--nproc", "2", "--batch-size", "5"])
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(JetracerError, match="already runs under it"):
        run_cli(["--data", "d", "--out", str(tmp_path / "r"), "--nproc", "2"])
