"""CI smoke of the real-model experiment (benchmarks/real_model.py --quick): SmolLM2-135M-Instruct, the recipe of
launch/smollm_stage{1,2}.yaml, 2 steps per stage on 8 problems. Checks that every phase ran and wrote its files and
metric keys, and that the report's numbers are those of the samples; not the accuracy (nothing learns in 2 steps)."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import real_model  # noqa: E402

pytestmark = pytest.mark.slow
KEYS = {"acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i", "n"}


@pytest.fixture(scope="module")
def run(ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("real_model")
    result = real_model.run(real_model.parse_args(["--quick", "--out", str(out)]))
    return out, result


def test_every_phase_writes_its_files(run):
    out, _ = run
    for path in ["report.md", "real_model.json", "compare_stage1_vs_base.json", "compare_stage2_vs_base.json",
                 "plots/training.png", "plots/accuracy_per_attempt.png", "plots/transitions.png",
                 "eval_base/eval.json", "eval_stage1/eval.json", "eval_stage2/eval.json", "eval_stage2/samples.jsonl",
                 "stage1/metrics.jsonl", "stage2/metrics.jsonl", "stage2/final/config.json"]:
        assert (out / path).is_file() and (out / path).stat().st_size > 0, path
    assert (out / "plots/training.png").read_bytes()[:4] == b"\x89PNG"


def test_metric_keys_and_step_counts(run):
    out, result = run
    for name in ("base", "stage1", "stage2"):
        summary = json.loads((out / f"eval_{name}/eval.json").read_text())
        assert KEYS <= set(summary) and summary["n"] == 8
        assert set(summary["ci"]) >= KEYS - {"n"}
    for stage in ("stage1", "stage2"):
        rows = [json.loads(line) for line in (out / stage / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2]
        assert {"acc_t1", "acc_t2", "delta", "kl_t1", "kl_t2", "reward_t1", "reward_t2"} <= set(rows[0])
        assert rows[0]["n_samples"] == 8  # 4 prompts x 2 samples
    assert set(result["timings"]) >= {"eval_base", "stage1", "eval_stage1", "stage2", "eval_stage2", "total"}
    assert set(result["target"]) == {"delta_positive", "acc_t2_above_base", "c2i_shrinks"}


def test_stage2_started_from_stage1_and_kept_the_base_as_reference(run):
    out, _ = run
    cfg2 = (out / "stage2" / "config.yaml").read_text()
    assert f"init_from: {out / 'stage1' / 'final'}" in cfg2
    from score.models import smollm2_path
    assert f"path: {smollm2_path()}" in cfg2


def test_report_numbers_are_the_samples_numbers(run):
    out, result = run
    records = [json.loads(line) for line in (out / "eval_stage2/samples.jsonl").read_text().splitlines()]
    r1 = [r["attempts"][0]["reward"] for r in records]
    r2 = [r["attempts"][1]["reward"] for r in records]
    final = result["evals"]["stage2"]
    assert final["acc_t1"] == pytest.approx(sum(r1) / 8) and final["acc_t2"] == pytest.approx(sum(r2) / 8)
    # the Self-Refine-style baseline is the base model's own attempt 2
    assert result["self_refine_baseline"]["acc_t2"] == result["evals"]["base"]["acc_t2"]
    lines = (out / "report.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| model |"))
    row = next(line for line in lines if line.startswith("| SCoRe Stage II (final) |"))
    cells = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))
    assert cells["n"] == "8"
    assert cells["Acc@t1"].split()[0] == f"{100 * final['acc_t1']:.1f}"
    assert cells["Acc@t2"].split()[0] == f"{100 * final['acc_t2']:.1f}"
