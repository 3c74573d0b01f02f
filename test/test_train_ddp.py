"""Training in two processes (``jetracer-trt train --nproc 2``: torchrun, DistributedDataParallel, gloo on the CPU)
computes what one process computes with the same global batch, only process 0 writes and logs, and a run started in
one mode resumes in the other.

What must match, and why it can: both runs draw the same global batches (``EpochBatchSampler``: each process takes its
half of every batch), DDP averages the two halves' gradients into the gradient of the whole batch, and the losses are
means over equal halves. Two things would differ and are switched off here: BatchNorm statistics (each process
normalises with its own half; SyncBatchNorm does not run on CPUs), hence ``--batchnorm frozen`` on a model with
trained statistics, and augmentation (process 1 draws its own stream), hence ``--augment off``. What is left is the
order of floating-point sums (gloo's all-reduce, one thread per process against two in one), which AdamW amplifies a
little every step: measured 1e-7 relative or less on the losses after 5 and 10 steps at these 32x32 frames (up to 1e-5
after 10 steps at 64x64), so the tolerance is 1e-4. With ``--batchnorm batch`` the same two runs differ by 12% in
training loss (BatchNorm over 4 images against 8), which is why the comparison needs frozen statistics.

About 30-40 s on two shared cores: 4 runs of 5 steps, two of them in this process, the others mostly torchrun and
the two processes starting up.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jetracer_trt.cli.main import main  # noqa: E402
from jetracer_trt.contract import ModelContract  # noqa: E402
from jetracer_trt.dataset import DatasetWriter  # noqa: E402
from jetracer_trt.model import load_checkpoint, make_checkpoint, read_checkpoint, save_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4  # relative, on train and validation loss
STEPS_PER_EPOCH = 5  # 40 training samples (5 of 6 tracks) / global batch 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, list[str]]:
    """A 48-sample dataset of 6 tracks and the shipped network at a 32x32 contract (trained BatchNorm statistics)."""
    root = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    with DatasetWriter(root / "data") as writer:
        for i in range(48):
            frame = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            writer.append(frame, float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)), track_seed=i % 6)
    model, _ = load_checkpoint(ROOT / "models" / "road_following.pt")
    contract = ModelContract.default().replace(input_width=32, input_height=32)  # fast; ResNet18 takes it
    save_checkpoint(make_checkpoint(model, half=False, contract=contract, kind="best"), root / "init.pt")
    common = ["--data", str(root / "data"), "--init", str(root / "init.pt"), "--batch-size", "8", "--device", "cpu",
              "--workers", "0", "--no-export", "--batchnorm", "frozen", "--augment", "off", "--lr", "1e-3"]
    return root, common


def train_here(*argv: str) -> None:
    """``jetracer-trt train ARGS`` in one process: this one (torch is already imported here)."""
    assert main(["train", *argv]) == 0


def train_cli(*argv: str) -> subprocess.CompletedProcess:
    """``jetracer-trt train ARGS`` as a new process (which ``--nproc`` replaces with torchrun)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("LOCAL_RANK", None)
    done = subprocess.run([sys.executable, "-m", "jetracer_trt.cli.main", "train", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_training(one: dict, two: dict) -> None:
    for key in ("train_loss", "val_loss", "val_mae_x", "val_mae_y"):
        assert two[key] == pytest.approx(one[key], rel=TOLERANCE), key
    assert (one["global_step"], one["steps"]) == (two["global_step"], two["steps"])


def test_two_processes_train_as_one_and_resume_in_either_mode(setup):
    root, common = setup
    one, two = root / "one", root / "two"
    train_here(*common, "--out", str(one), "--epochs", "1")
    ddp = train_cli(*common, "--out", str(two), "--epochs", "1", "--nproc", "2")

    [single_row], [ddp_row] = rows(one), rows(two)
    assert single_row["processes"] == 1 and ddp_row["processes"] == 2
    assert ddp_row["global_step"] == STEPS_PER_EPOCH
    assert_same_training(single_row, ddp_row)
    weights = read_checkpoint(one / "last.pt")["state_dict"], read_checkpoint(two / "last.pt")["state_dict"]
    worst = max(float((weights[0][k].float() - weights[1][k].float()).abs().max()) for k in weights[0])
    assert worst < 1e-3  # an AdamW step moves a weight by up to lr = 1e-3: the runs are far less than a step apart

    # process 0 alone logs, prints and writes: one summary, one set of files
    assert ddp.stdout.count("best checkpoint:") == 1 and ddp.stderr.count("training on cpu") == 1
    assert "in each of 2 processes" in ddp.stderr
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())

    # the single-process run continues in two processes and the two-process run in one: still the same training
    train_cli("--out", str(one), "--resume", "--epochs", "2", "--nproc", "2", "--device", "cpu", "--workers", "0",
              "--no-export")
    train_here("--out", str(two), "--resume", "--epochs", "2", "--device", "cpu", "--workers", "0", "--no-export")
    first, second = rows(one), rows(two)
    assert [r["processes"] for r in first] == [1, 2] and [r["processes"] for r in second] == [2, 1]
    assert first[1]["global_step"] == 2 * STEPS_PER_EPOCH
    assert_same_training(first[1], second[1])
    assert first[1]["train_loss"] != pytest.approx(first[0]["train_loss"], rel=1e-3)  # it did train on
