"""CI smoke of the step-speed benchmark (benchmarks/bench_step.py --quick): a tiny model, the hf engine, 2 steps, no
TRL. Checks that the run happened in its own process and that the table and the JSON carry every phase; not the
times themselves (CI machines differ)."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_step  # noqa: E402

pytestmark = pytest.mark.slow


def test_quick_benchmark_reports_every_phase(tmp_path):
    report = bench_step.run(bench_step.parse_args(["--quick", "--out", str(tmp_path)]))
    assert [r["run"] for r in report["runs"]] == ["ours hf:sync"]
    (result,) = report["runs"]
    assert set(result["phases"]) == {"rollout", "reward", "update", "sync", "sync_check"}
    assert set(result["learner"]) == {"policy_forward", "ref_forward", "backward", "optimizer", "other", "pad_frac",
                                      "tokens", "threads"}
    assert result["step_s"] > 0 and result["wall_s"] > result["step_s"]
    # 2 prompts x 2 samples x 2 attempts, each cut off at 8 tokens by the random tiny model (or ended earlier)
    assert 0 < result["generated_tokens"] <= 64
    assert len(result["steps"]) == 2 and len(result["load_before"]) == 3
    assert result["learner"]["threads"] >= 1 and 0.0 <= result["learner"]["pad_frac"] < 1.0
    saved = json.loads((tmp_path / "bench_step.json").read_text())
    assert saved["runs"][0]["run"] == "ours hf:sync" and saved["samples_per_step"] == 4
    table = (tmp_path / "bench_step.md").read_text()
    assert "| ours hf:sync |" in table and "s / 1k tok" in table and "policy forward" in table

