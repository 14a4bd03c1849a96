"""`score demo --quick`: every phase of the demo runs for real (SFT, evaluations, Stage I and II through Ray), every
artefact is written, and the report's numbers are the ones its samples files give."""

import argparse
import json
import re

import numpy as np
import pytest

from envs.arithmetic import ArithmeticEnv
from score.demo import add_demo_arguments, run_demo
from score.metrics import self_correction_metrics
from score.pretrain import PretrainSettings, cached_base_model, sft_problems

pytestmark = pytest.mark.slow


def _samples(folder):
    records = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    ids = [r["problem_id"] for r in records]
    r1 = [r["attempts"][0]["reward"] for r in records]
    r2 = [r["attempts"][1]["reward"] for r in records]
    return ids, r1, r2


def _row(report: str, label: str) -> list[float]:
    """The point estimates (percent) of one row of the report's before/after table."""
    line = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
    cells = [c.strip() for c in line.strip("|").split("|")][3:]  # label, feedback, n
    return [float(re.match(r"[+-]?[\d.]+", c).group()) for c in cells]


@pytest.fixture(scope="module")
def demo(ray_cluster, tmp_path_factory):
    out, cache = tmp_path_factory.mktemp("demo"), tmp_path_factory.mktemp("cache")
    parser = argparse.ArgumentParser()
    add_demo_arguments(parser)
    args = parser.parse_args(["--quick", "--out", str(out), "--cache-dir", str(cache), "--engine", "hf"])
    assert run_demo(args) == 0
    return out, cache


def test_every_artefact_is_written(demo):
    out, cache = demo
    for path in ["report.md", "demo.json", "compare.json", "plots/training.png", "plots/accuracy_per_attempt.png",
                 "plots/transitions.png", "eval_base/eval.json", "eval_base/samples.jsonl", "eval_score/eval.json",
                 "eval_score/samples.jsonl", "stage1/metrics.jsonl", "stage2/metrics.jsonl",
                 "stage2/final/config.json"]:
        assert (out / path).is_file(), path
        assert (out / path).stat().st_size > 0, path
    assert (out / "plots/training.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(cache.glob("demo-base-*/config.json"))) == 1
    result = json.loads((out / "demo.json").read_text())
    assert set(result["timings"]) >= {"base_model", "eval_base", "stage1", "stage2", "eval_score", "total"}
    # Stage II started from Stage I's result and both ran their steps
    assert len((out / "stage1/metrics.jsonl").read_text().splitlines()) == result["stage1"]["steps"]
    assert len((out / "stage2/metrics.jsonl").read_text().splitlines()) == result["stage2"]["steps"]


def test_report_numbers_agree_with_the_samples(demo):
    out, _ = demo
    report = (out / "report.md").read_text()
    comparison = json.loads((out / "compare.json").read_text())["metrics"]
    ids_base, *base = _samples(out / "eval_base")
    ids_score, *score = _samples(out / "eval_score")
    assert ids_base == ids_score and len(ids_base) == 24
    names = ["acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i"]
    before, after = self_correction_metrics(*base), self_correction_metrics(*score)
    for label, metrics, folder in (("base", before, "eval_base"), ("SCoRe (Stage II)", after, "eval_score")):
        saved = json.loads((out / folder / "eval.json").read_text())
        assert [saved[k] for k in names] == pytest.approx([metrics[k] for k in names])
        assert _row(report, label) == pytest.approx([round(100 * metrics[k], 1) for k in names], abs=0.051)
    for k in names:
        assert comparison[k]["diff"] == pytest.approx(after[k] - before[k])
        assert comparison[k]["low"] <= comparison[k]["diff"] <= comparison[k]["high"]


def test_held_out_problems_are_disjoint_from_sft_and_rl(demo):
    out, _ = demo
    ids, _, _ = _samples(out / "eval_score")
    settings = PretrainSettings()
    env = ArithmeticEnv(**settings.env_kwargs())
    assert ids == [p.id for p in env.load("test")[: len(ids)]]
    sft = {f"{a}{op}{b}" for a, b, op in sft_problems(settings)}
    rl = {p.id for p in env.load("train")}
    assert not sft & set(ids) and not rl & set(ids) and not sft & rl


def test_base_model_is_cached(tmp_path):
    settings = PretrainSettings(steps=2, batch_size=4, hidden_size=16, intermediate_size=32, num_heads=2)
    first, cached = cached_base_model(settings, root=tmp_path)
    again, cached_again = cached_base_model(settings, root=tmp_path)
    assert (first, cached, cached_again) == (again, False, True)
    assert json.loads((first / "pretrain_settings.json").read_text())["steps"] == 2
    assert not list(tmp_path.glob(".demo-base-*"))  # no temporary folder left behind


def test_simulated_student_shows_the_failure_modes():
    """The SFT data makes attempt 2 break more right answers than it fixes (like real base LLMs)."""
    import random

    settings, rng = PretrainSettings(), random.Random(0)
    from score.pretrain import attempts

    pairs = [(a, b, *attempts(a, b, "+", rng, settings)) for a, b, _ in sft_problems(settings)]
    r1 = np.array([int(y1) == a + b for a, b, y1, _ in pairs])
    r2 = np.array([int(y2) == a + b for a, b, _, y2 in pairs])
    m = self_correction_metrics(r1.tolist(), r2.tolist())
    assert 0.4 < m["acc_t1"] < 0.9 and m["delta_c2i"] > m["delta_i2c"] > 0
