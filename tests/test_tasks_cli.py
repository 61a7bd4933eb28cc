"""`workbench train|eval --task ...`: predictions and metrics written, a trained run evaluated
back from its folder, and a real layout read with --data."""
import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from workbench.cli import app
from workbench.data.formats import read_dataset
from workbench.data.shapes.clips import make_clips
from workbench.data.video import write_video

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_eval_zero_shot_writes_predictions_and_metrics(tmp_path):
    _ok(["eval", "--task", "captioning", "--profile", "smoke", "--out", str(tmp_path)])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["mode"] == "zero-shot" and metrics["source"] == "shapesworld"
    assert metrics["metrics"]["cider"] > 0
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert len(predictions) == metrics["metrics"]["videos"]


def test_train_then_eval_the_saved_run_gives_the_same_metrics(tmp_path):
    _ok(["train", "--task", "qa", "--strategy", "post-conv1d", "--profile", "smoke", "--out", str(tmp_path)])
    run = tmp_path / "post-conv1d-qa-smoke"
    assert (run / "head.safetensors").is_file() and (run / "checkpoint" / "trainable.safetensors").is_file()
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["mode"] == "trained" and trained["train"]["strategy"]["steps"] == 20
    _ok(["eval", "--task", "qa", "--strategy", "post-conv1d", "--profile", "smoke", "--run", str(run),
         "--out", str(tmp_path / "again")])
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["metrics"]["accuracy"] == trained["metrics"]["accuracy"]


def test_eval_reads_a_real_layout_and_reports_skipped_videos(tmp_path):
    shutil.copy(FIXTURES / "nextqa_val.csv", tmp_path / "val.csv")
    records = read_dataset("nextqa", tmp_path / "val.csv", tmp_path / "videos")
    write_video(records[0].path, make_clips(0, 1, 4, "train")[0].frames(64), fps=8)   # the other is missing
    result = _ok(["eval", "--task", "qa", "--profile", "smoke", "--data", str(tmp_path), "--format", "nextqa",
                  "--out", str(tmp_path / "out")])
    assert "skipped 1 video" in result.output and "4882821564" in result.output
    written = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert list(written) == ["4010069381_6"]


def test_bench_writes_its_table_and_the_twin_pairs_kind_by_kind(tmp_path):
    import csv

    from workbench.bench import COLUMNS

    _ok(["bench", "--profile", "smoke", "--strategy", "mean-pool", "--out", str(tmp_path)])
    with open(tmp_path / "bench.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert list(row) == list(COLUMNS) and row["strategy"] == "mean-pool" and float(row["twin_acc"]) == 50.0
    (stored,) = json.loads((tmp_path / "bench.json").read_text())["rows"]
    # an order-blind model: exactly chance on every kind of twin pair, not only on average
    assert stored["twin_by_kind"]["grow/shrink"] == 50.0 and set(stored["twin_by_kind"].values()) == {50.0}
    assert "| mean-pool |" in (tmp_path / "bench.md").read_text() and (tmp_path / "bench.html").is_file()


def test_bench_scales_the_profile_data_and_budget_from_the_command_line(tmp_path):
    _ok(["bench", "--profile", "smoke", "--strategy", "post-conv1d", "--clips-per-kind", "2", "--steps", "3",
         "--out", str(tmp_path)])
    payload = json.loads((tmp_path / "bench.json").read_text())
    (row,) = payload["rows"]
    assert row["steps"] == 3 and payload["meta"]["clips_per_kind"] == 2 and payload["meta"]["train_steps"] == 3
    assert "2 training clips per event kind, 3 / 4 / 20 / 20 steps" in (tmp_path / "bench.md").read_text()


def test_bench_skips_a_failing_strategy_reports_why_and_measures_the_rest(tmp_path, monkeypatch):
    import workbench.bench as bench

    real = bench.bench_strategy

    def flaky(name, *args, **kwargs):
        if name == "post-conv1d":
            raise RuntimeError("CUDA error: out of memory")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(bench, "bench_strategy", flaky)
    result = _ok(["bench", "--profile", "smoke", "--strategy", "post-conv1d", "--strategy", "mean-pool",
                  "--out", str(tmp_path)])
    table = (tmp_path / "bench.md").read_text()
    assert "| mean-pool |" in table and "| post-conv1d |" not in table
    assert "`post-conv1d`: failed: RuntimeError: CUDA error: out of memory" in table
    assert "post-conv1d`: failed" in result.output
    meta = json.loads((tmp_path / "bench.json").read_text())["meta"]
    assert list(meta["skipped"]) == ["post-conv1d"]


def test_bench_budget_starts_no_strategy_the_time_left_would_not_fit(monkeypatch):
    import workbench.bench as bench

    clock = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(bench, "prepare", lambda *a, **k: clock.__setitem__(0, clock[0] + 5) or {})
    took = {"a": 10, "b": 30, "c": 10, "d": 10}

    def fake(name, *args, **kwargs):
        clock[0] += took[name]
        return {"strategy": name}

    monkeypatch.setattr(bench, "bench_strategy", fake)
    rows, skipped = bench.run_bench("smoke", None, list(took), backbone=object(), progress=False, budget_s=80)
    # a: 5 + 0 <= 80; b: 15 + 10 <= 80; c: 45 + 30 <= 80; d: 55 + 30 > 80
    assert [r["strategy"] for r in rows] == ["a", "b", "c"]
    assert list(skipped) == ["d"] and "55 s used of the 80 s budget" in skipped["d"]
