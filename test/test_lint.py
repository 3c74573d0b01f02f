"""The linter as a test (as ROS 2 packages run theirs): pyflakes, pycodestyle and bugbear rules from ``ruff.toml``."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    assert Path(ruff).exists(), "ruff is not installed; it comes with the test extra: pip install -e '.[test]'"
    result = subprocess.run([ruff, "check", "--no-cache", "jetracer_trt", "test", "launch"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
