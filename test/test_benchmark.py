"""``jetracer-trt benchmark``: statistics, configuration resolution, skipped rows, bars, the JSON shape and the table.

Real engines run the shipped model on a few simulator frames with a handful of iterations; the PyTorch baseline's
tests are skipped when the torch backend cannot be imported here.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from jetracer_trt import benchmark as bench
from jetracer_trt.cli import benchmark as bench_cli
from jetracer_trt.config import default_model_path
from jetracer_trt.errors import JetracerError

ROW_KEYS = {"backend", "precision", "batch", "path", "p50_ms", "p99_ms", "fps", "speedup_vs_torch_fp32"}


def _torch_engine_importable() -> bool:
    try:
        from jetracer_trt.engines.torch_engine import TorchEngine  # noqa: F401
    except ImportError:
        return False
    return bench.default_model("torch", "fp32").is_file()


needs_torch_engine = pytest.mark.skipif(not _torch_engine_importable(),
                                        reason="the torch backend (engines/torch_engine.py, torch) is not importable")


def run_cli(argv: list[str]) -> str:
    """The ``benchmark`` verb as ``jetracer-trt benchmark`` runs it; returns what it printed on stdout."""
    parser = argparse.ArgumentParser()
    bench_cli.register(parser.add_subparsers())
    args = parser.parse_args(["benchmark", *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    from jetracer_trt.sim import sample_frames

    return np.stack(sample_frames(4, seed=0))


@pytest.fixture(scope="module")
def cli_json(frames) -> dict:
    """One small real run through the CLI: ONNX Runtime FP32 (plus the PyTorch baseline when it can run)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bench, "verification_frames", lambda frames_dir, count, task: frames)
        text = run_cli(["--backend", "onnxruntime", "--precision", "fp32", "--batch", "1,2", "--iters", "2",
                        "--warmup", "1", "--device", "cpu", "--json"])
    return json.loads(text)  # exactly one JSON object, nothing else on stdout


# -- statistics ------------------------------------------------------------------------------------------------------


def test_latency_stats_with_known_numbers():
    seconds = np.arange(1, 101) / 1000.0  # 1 ms .. 100 ms, shuffled: order must not matter
    stats = bench.latency_stats(np.random.default_rng(0).permutation(seconds), batch=4)
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p99_ms == pytest.approx(99.01)  # linear interpolation between the 99th and 100th call
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.fps == pytest.approx(4 / 0.0505)  # batch / mean call time
    one = bench.latency_stats([0.02], batch=1)
    assert (one.p50_ms, one.p99_ms, one.fps) == (pytest.approx(20.0), pytest.approx(20.0), pytest.approx(50.0))
    for bad in ([], [0.01, 0.0], [float("nan")]):
        with pytest.raises(JetracerError):
            bench.latency_stats(bad, batch=1)


def test_speedups_are_relative_to_torch_fp32_at_the_same_batch_and_path():
    def row(backend, precision, batch, path, fps):
        return bench.Row(backend, precision, batch, path, bench.LatencyStats(1.0, 1.0, batch * 1e3 / fps, fps))

    rows = [row("torch", "fp32", 1, "model", 10.0), row("torch", "fp32", 1, "full", 8.0),
            row("onnxruntime", "fp32", 1, "model", 25.0), row("onnxruntime", "fp32", 1, "full", 12.0),
            row("onnxruntime", "fp32", 8, "model", 40.0)]
    bench.add_speedups(rows)
    assert [r.speedup_vs_torch_fp32 for r in rows] == [1.0, 1.0, 2.5, 1.5, None]  # no baseline at batch 8


class FakeEngine:
    """Records its calls in a shared log; raises on call number ``fail_at`` (counting from 1)."""

    def __init__(self, name: str, log: list, fail_at: int | None = None) -> None:
        self.name, self.log, self.fail_at, self.calls = name, log, fail_at, 0

    def _call(self, what: str) -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError(f"{self.name} broke")
        self.log.append((self.name, what))

    def infer_batch(self, frames) -> None:
        self._call("full")

    def run_model(self, n: int) -> None:
        self._call("model")


def test_engines_take_turns_and_a_failing_engine_leaves_the_rotation():
    log: list = []
    engines = {("a", "fp32"): FakeEngine("a", log), ("b", "fp32"): FakeEngine("b", log, fail_at=40)}
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    times, failed = bench.measure_engines(engines, frames, batch=2, iters=25, warmup=2, block=10)
    assert set(times) == {("a", "fp32")} and str(failed[("b", "fp32")]) == "b broke"
    assert all(t.shape == (25,) and np.all(t >= 0) for t in times[("a", "fp32")].values())
    turns = [name for i, (name, _) in enumerate(log) if i == 0 or log[i - 1][0] != name]
    assert turns[:5] == ["a", "b", "a", "b", "a"]  # warm-up turns, then timed blocks, alternating
    a_calls = [what for name, what in log if name == "a"]
    # each turn: one untimed staging call, then the full path, then the model path
    assert a_calls[:5] == ["full", "full", "full", "model", "model"]
    assert len(a_calls) == (1 + 2 * 2) + 3 * 1 + 2 * 25  # warm-up turn, 3 timed turns' staging calls, timed calls


# -- configurations --------------------------------------------------------------------------------------------------


def test_resolve_configs_conventions_and_bad_input(tmp_path):
    auto = bench.resolve_configs(None, None, "cpu")
    keys = [c.key for c in auto]
    assert keys[:3] == [("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    assert ("tensorrt", "fp16") in keys and not any(c.required for c in auto)
    models = {c.key: c.model for c in auto}
    onnx_path = default_model_path()
    assert models[("onnxruntime", "fp32")] == onnx_path
    assert models[("onnxruntime", "int8")] == onnx_path.with_name("road_following.int8.onnx")
    assert models[("torch", "fp32")] == onnx_path.with_name("road_following.pt")
    assert models[("tensorrt", "fp16")] == onnx_path.with_name("road_following.fp16.engine")
    assert models[("torch2trt", "int8")] == onnx_path.with_name("road_following.int8.trt.pth")

    ort = bench.resolve_configs(["onnxruntime"], None, "cpu")
    assert [c.key for c in ort] == [("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    (one,) = bench.resolve_configs(["onnxruntime"], ["int8"], "cpu", tmp_path / "m.onnx")
    assert one.required and one.model == tmp_path / "m.onnx"
    assert [c.key for c in bench.with_baseline([one])] == [("torch", "fp32"), ("onnxruntime", "int8")]

    with pytest.raises(JetracerError, match="unknown backend 'tensorflow'"):
        bench.resolve_configs(["tensorflow"], None, "cpu")
    with pytest.raises(JetracerError, match="unknown precision 'fp8'"):
        bench.resolve_configs(["onnxruntime"], ["fp8"], "cpu")
    with pytest.raises(JetracerError, match="--model applies to one configuration"):
        bench.resolve_configs(["onnxruntime"], None, "cpu", tmp_path / "m.onnx")
    missing = bench.BenchConfig("tensorrt", "fp16", tmp_path / "road_following.fp16.engine")
    reason = bench.unavailable_reason(missing, "cuda", 8)
    assert "convert --backend tensorrt --precision fp16 --max-batch 8 --out" in reason
    assert "--via torch2trt" in bench.make_command("torch2trt", "int8", tmp_path / "m.trt.pth")
    with pytest.raises(JetracerError, match="--batch"):
        bench_cli.parse_batches("1,x")
    with pytest.raises(JetracerError, match="--batch"):
        bench_cli.parse_batches("0")
    assert bench_cli.parse_batches("8, 1,8") == [1, 8]


def test_a_configuration_asked_for_alone_that_cannot_run_is_an_error(tmp_path):
    missing = tmp_path / "road_following.int8.onnx"
    with pytest.raises(JetracerError, match="jetracer-trt convert --backend onnxruntime --precision int8"):
        run_cli(["--backend", "onnxruntime", "--precision", "int8", "--model", str(missing), "--iters", "1"])
    with pytest.raises(JetracerError, match="needs a CUDA GPU"):
        run_cli(["--backend", "tensorrt", "--precision", "fp16", "--device", "cpu", "--iters", "1"])


# -- real runs -------------------------------------------------------------------------------------------------------


class CountingProgress:
    def __init__(self) -> None:
        self.calls = 0
        self.descriptions: list[str] = []

    def update(self, n: float = 1) -> None:
        self.calls += n

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.descriptions.append(desc or "")


def _fixed_batch_model(path: Path) -> Path:
    """image [1,3,224,224] -> the first two channel means: a valid model that cannot run batches of 2."""
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["target"])]
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("starts", 0), ("ends", 2), ("axes", 1))]
    graph = helper.make_graph(nodes, "fixed",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 224, 224])],
                              [helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_missing_files_and_refused_engines_are_skipped_rows_with_reasons(tmp_path, frames):
    configs = [bench.BenchConfig("onnxruntime", "int8", tmp_path / "road_following.int8.onnx"),
               bench.BenchConfig("onnxruntime", "fp32", _fixed_batch_model(tmp_path / "fixed.onnx")),
               bench.BenchConfig("tensorrt", "fp16", tmp_path / "road_following.fp16.engine")]
    progress = CountingProgress()
    result = bench.run_benchmark(configs, batches=(1, 2), iters=2, warmup=1, device="cpu", frames=frames,
                                 progress=progress)
    skipped = {(s.backend, s.precision, s.batch): s.reason for s in result.skipped}
    assert "not found" in skipped[("onnxruntime", "int8", None)]
    assert "jetracer-trt convert --backend onnxruntime --precision int8" in skipped[("onnxruntime", "int8", None)]
    assert "needs a CUDA GPU" in skipped[("tensorrt", "fp16", None)]
    assert "fixed batch of 1" in skipped[("onnxruntime", "fp32", 2)]  # the engine refused batch 2 only
    assert {(r.batch, r.path) for r in result.rows} == {(1, "model"), (1, "full")}
    assert all(r.speedup_vs_torch_fp32 is None for r in result.rows)  # no baseline in this run
    assert progress.calls == bench.planned_calls(len(configs), (1, 2), 2, 1)  # the bar ends full
    report = result.config("onnxruntime", "fp32")
    assert report.accuracy is not None and report.accuracy["frames"] == len(frames)
    assert not report.accuracy["ok"]  # channel means are not the road target: accuracy is really judged
    assert [b["passed"] for b in result.bars] == [None, None]  # rows the CPU bars need are missing


def test_json_is_one_object_with_rows_for_each_batch_and_path(cli_json):
    assert set(cli_json) >= {"rows", "device", "machine", "bars", "skipped"}
    rows = cli_json["rows"]
    assert rows and all(set(r) == ROW_KEYS for r in rows)
    ort = [r for r in rows if (r["backend"], r["precision"]) == ("onnxruntime", "fp32")]
    assert {(r["batch"], r["path"]) for r in ort} == {(1, "model"), (1, "full"), (2, "model"), (2, "full")}
    for r in ort:
        assert 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["fps"] > 0
    assert cli_json["device"] == "cpu" and cli_json["machine"]["cores"] >= 1
    assert cli_json["settings"]["iters"] == 2 and cli_json["settings"]["batches"] == [1, 2]
    (config,) = [c for c in cli_json["configs"] if c["backend"] == "onnxruntime"]
    assert config["mean_abs_dx"] == 0.0  # the FP32 model is its own reference
    names = [b["name"] for b in cli_json["bars"]]
    assert names == ["cpu_onnxruntime_fp32_vs_torch_fp32", "cpu_onnxruntime_int8_vs_onnxruntime_fp32"]


def test_a_baseline_that_cannot_run_is_a_skipped_row_and_no_speedups(tmp_path, frames):
    configs = [bench.BenchConfig("torch", "fp32", tmp_path / "missing.pt"),
               bench.BenchConfig("onnxruntime", "fp32", default_model_path())]
    result = bench.run_benchmark(configs, batches=(1,), iters=2, warmup=1, device="cpu", frames=frames)
    assert any(s.backend == "torch" and "not found" in s.reason for s in result.skipped)
    assert result.rows and all(r.speedup_vs_torch_fp32 is None for r in result.rows)


@needs_torch_engine
def test_the_baseline_row_has_speedup_one_and_the_others_a_ratio(cli_json):
    rows = cli_json["rows"]
    base = {(r["batch"], r["path"]): r for r in rows if (r["backend"], r["precision"]) == ("torch", "fp32")}
    assert set(base) == {(1, "model"), (1, "full"), (2, "model"), (2, "full")}
    assert all(r["speedup_vs_torch_fp32"] == 1.0 for r in base.values())
    for r in rows:
        if r["backend"] == "onnxruntime":
            expected = r["fps"] / base[(r["batch"], r["path"])]["fps"]
            assert r["speedup_vs_torch_fp32"] == pytest.approx(expected, rel=1e-2)
    bar = cli_json["bars"][0]
    assert bar["value"] is not None and bar["passed"] == (bar["value"] >= 1.6)
    torch_config = next(c for c in cli_json["configs"] if c["backend"] == "torch")
    assert torch_config["accuracy"]["ok"]  # PyTorch FP32 agrees with the ONNX model within 1e-4


# -- bars and the table (synthetic results: fast and exact) ---------------------------------------------------------


def _result(device: str, fps: dict, p99: float = 1.1, dx: float = 0.01) -> bench.BenchmarkResult:
    """A result with rows at batch 1 of the given FPS per (backend, precision, path); p50 = 1000 / fps ms."""
    result = bench.BenchmarkResult(device, {"cpu": "test cpu", "cores": 2, "gpu": None, "onnxruntime": "1"},
                                   {"batches": [1], "iters": 10, "warmup": 1, "frames": 4,
                                    "frames_source": "simulator"})
    for (backend, precision, path), value in fps.items():
        p50 = 1000.0 / value
        result.rows.append(bench.Row(backend, precision, 1, path, bench.LatencyStats(p50, p50 * p99, p50, value)))
    for backend, precision in dict.fromkeys((b, p) for b, p, _ in fps):
        accuracy = {"mean_abs": {"x": dx if precision == "int8" else 0.0, "y": 0.0}, "ok": True}
        result.configs.append(bench.ConfigReport(backend, precision, "m", device, accuracy))
    bench.add_speedups(result.rows)
    result.bars = bench.evaluate_bars(result)
    return result


def test_cpu_bars_judge_the_ratios_and_int8_accuracy():
    fps = {("torch", "fp32", "model"): 10.0, ("torch", "fp32", "full"): 10.0,
           ("onnxruntime", "fp32", "model"): 22.0, ("onnxruntime", "fp32", "full"): 20.0,
           ("onnxruntime", "int8", "model"): 60.0, ("onnxruntime", "int8", "full"): 45.0}
    ort, int8 = _result("cpu", fps).bars
    assert ort["value"] == pytest.approx(2.0) and ort["model_path_value"] == pytest.approx(2.2) and ort["passed"]
    assert int8["value"] == pytest.approx(2.25) and int8["passed"] is False  # 2.25x < 2.5x
    fps[("onnxruntime", "int8", "full")] = 55.0
    assert _result("cpu", fps).bars[1]["passed"] is True
    assert _result("cpu", fps, dx=0.05).bars[1]["passed"] is False  # fast but wrong
    assert _result("cpu", fps, dx=0.05).bars[1]["mean_abs_dx"] == 0.05


def test_cuda_bars_take_the_best_backend_at_batch_one():
    fps = {("torch", "fp32", "model"): 100.0, ("torch", "fp32", "full"): 90.0,
           ("torch", "fp16", "model"): 300.0, ("torch", "fp16", "full"): 250.0,
           ("tensorrt", "fp16", "model"): 520.0, ("tensorrt", "fp16", "full"): 450.0}
    best, steady, overhead = _result("cuda", fps, p99=1.2).bars
    assert best["best"] == "tensorrt fp16" and best["value"] == pytest.approx(5.0) and best["passed"]
    assert steady["value"] == pytest.approx(1.2) and steady["passed"]
    assert overhead["value"] == pytest.approx(520 / 450, abs=1e-3) and overhead["passed"]
    slow = _result("cuda", {**fps, ("tensorrt", "fp16", "full"): 200.0}, p99=1.5).bars
    assert slow[0]["best"] == "torch fp16" and slow[0]["passed"] is False  # 250 / 90 < 3
    assert slow[1]["passed"] is False and slow[2]["value"] == pytest.approx(300 / 250, abs=1e-3)
    baseline_only = _result("cuda", {("torch", "fp32", "model"): 100.0, ("torch", "fp32", "full"): 90.0}).bars
    assert [b["passed"] for b in baseline_only] == [None, None, None]  # nothing to judge is not a pass


def test_the_table_has_both_paths_the_published_jetson_figures_and_the_bars():
    result = _result("cpu", {("torch", "fp32", "model"): 10.0, ("torch", "fp32", "full"): 9.0,
                             ("onnxruntime", "fp32", "model"): 30.0, ("onnxruntime", "fp32", "full"): 25.0})
    result.skipped.append(bench.Skipped("onnxruntime", "int8", "model file x not found"))
    text = bench_cli.format_report(result)
    assert "model only" in text and "full path" in text
    assert "torch fp32 (eager)" in text and "3.00x" in text and "2.78x" in text
    assert "Nano tensorrt fp16" in text and "90.8" in text and "11.50" in text and "1030.0" in text
    assert "onnxruntime int8: model file x not found" in text
    assert "PASS" in text and "n/a" in text


# -- the pose model ----------------------------------------------------------------------------------------------------


class FakePoseEngine(FakeEngine):
    def infer_batch_tensors(self, frames) -> dict:
        self._call("full")
        return {"cmap": len(frames)}


def test_a_pose_run_times_frames_to_people_and_the_parse_step_apart():
    log: list = []
    parsed = []

    def parse(maps, frames):
        parsed.append(maps["cmap"])
        time.sleep(0.002)

    engines = {("a", "fp32"): FakePoseEngine("a", log)}
    times, failed = bench.measure_engines(engines, np.zeros((4, 8, 8, 3), np.uint8), batch=2, iters=3, warmup=1,
                                          parse=parse)
    assert not failed and set(times[("a", "fp32")]) == {"model", "full", "people", "parse"}
    calls = [what for _, what in log]
    # each turn: the untimed staging call, full, model, then frames -> people (a full call, then the parse)
    assert calls[:4] == ["full", "full", "model", "full"] and parsed == [2, 2, 2, 2]
    series = times[("a", "fp32")]
    assert np.all(series["parse"] >= 0.002) and np.all(series["people"] >= series["parse"])
    assert bench.planned_calls(1, [1, 8], 10, 2, task="pose") == 2 * 3 * 12


@pytest.fixture(scope="module")
def random_pose(tmp_path_factory):
    folder = tmp_path_factory.mktemp("random_pose")
    assert bench.random_pose_models(folder, int8=False) == []
    return bench.random_pose_model_path(folder)


def test_the_pose_model_is_benchmarked_from_random_weights_beside_trt_pose_s_published_figures(random_pose):
    from jetracer_trt.pose.data import render_scene

    frames = np.stack([render_scene(seed).image for seed in range(4)])
    configs = bench.with_baseline(bench.resolve_configs(["onnxruntime"], ["fp32"], "cpu", source=random_pose),
                                  random_pose)
    assert [c.model.name for c in configs] == ["pose_random.pt", "pose_random.onnx"]
    result = bench.run_benchmark(configs, batches=(1, 2), iters=2, warmup=1, device="cpu", frames=frames,
                                 reference_model=random_pose, task="pose")
    assert {(r.backend, r.batch, r.path) for r in result.rows} == {
        (b, n, p) for b in ("torch", "onnxruntime") for n in (1, 2) for p in ("model", "full", "people")}
    data = json.loads(json.dumps(result.as_dict()))
    assert data["task"] == "pose" and data["published"]["fps"] == {"Jetson Nano": 22.0, "Jetson Xavier": 251.0}
    assert "not measured" in data["published"]["source"] and "reference" not in data
    per_call = {(e["backend"], e["batch"]) for e in data["parse"]["per_call"]}
    assert per_call == {("torch", 1), ("torch", 2), ("onnxruntime", 1), ("onnxruntime", 2)}
    assert 0 < data["parse"]["five_people"]["p50_ms"] <= data["parse"]["five_people"]["p99_ms"]
    for config in data["configs"]:  # the same random network on every backend, judged per map
        assert config["accuracy"]["ok"] and set(config["accuracy"]["mean_abs"]) == {"cmap", "paf"}
    assert [b["name"] for b in data["bars"]] == ["pose_parse_5_people_p50_ms"]
    text = bench_cli.format_report(result)
    assert "frames -> people" in text and "cmap and paf on the host" in text
    assert "Jetson Nano (published)" in text and "22.0" in text and "251.0" in text and "PUBLISHED" in text
    assert "parse_objects on hand-drawn maps of five people" in text


def test_the_cli_takes_the_task_from_the_model_and_refuses_random_weights_for_road(random_pose, monkeypatch):
    from jetracer_trt.pose.data import render_scene

    frames = np.stack([render_scene(seed).image for seed in range(2)])
    monkeypatch.setattr(bench, "verification_frames", lambda frames_dir, count, task: frames)
    for given in ("--model", "--source"):  # the file of one configuration, or the one every configuration's is beside
        data = json.loads(run_cli(["--backend", "onnxruntime", "--precision", "fp32", given, str(random_pose),
                                   "--batch", "1", "--iters", "1", "--warmup", "0", "--device", "cpu", "--json"]))
        assert data["task"] == "pose" and {r["path"] for r in data["rows"]} == {"model", "full", "people"}
        assert [c["model"] for c in data["configs"]][-1] == str(random_pose)
    assert [c["model"] for c in data["configs"]][0] == str(random_pose.with_suffix(".pt"))  # the baseline, beside it
    with pytest.raises(JetracerError, match="--random-weights measures the pose network"):
        run_cli(["--random-weights", "--device", "cpu"])
