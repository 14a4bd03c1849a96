"""PNG plots from a training run's metrics.jsonl and from evaluation summaries (headless)."""

import json

import numpy as np
import pytest
from matplotlib.image import imread

from score.evaluate import summarize
from score.plots import plot_attempt_accuracy, plot_dir, plot_scaling, plot_training, plot_transitions
from score.report import write_eval


def _is_png(path):
    image = imread(path)
    return image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def _training_rows(steps=6):
    rows = []
    for step in range(1, steps + 1):
        row = {"step": step, "stage": 2, "acc_t1": 0.1 * step, "acc_t2": 0.12 * step, "delta": 0.02 * step,
               "kl_t1": 0.01 * step, "kl_t2": 0.02 * step}
        if step % 3 == 0:
            row.update({"eval/acc_t1": 0.1 * step, "eval/acc_t2": 0.11 * step, "eval/delta": 0.01 * step})
        rows.append(row)
    return rows


def test_training_curves_from_metrics_jsonl(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _training_rows()))
    written = plot_dir(run)
    assert written == [run / "plots" / "training.png"] and _is_png(written[0])
    with pytest.raises(ValueError, match="empty"):
        plot_training([], tmp_path / "x.png")


def test_eval_plots(tmp_path):
    rng = np.random.default_rng(0)
    summary = summarize((rng.random((40, 1, 3)) < 0.5).astype(float), resamples=100)
    base = summarize((rng.random((40, 1, 3)) < 0.3).astype(float), resamples=100)
    evals = [("trained", summary), ("base", base)]
    assert _is_png(plot_attempt_accuracy(evals, tmp_path / "acc.png"))
    assert _is_png(plot_transitions(evals, tmp_path / "transitions.png"))
    scaling = {"n": 40, "temperature": 1.0,
               "parallel": {"budget": [1, 2, 4], "acc": [0.3, 0.35, 0.4], "ci": [[0.2, 0.4]] * 3},
               "sequential": {"budget": [2, 4], "acc": [0.36, 0.45], "ci": [[0.25, 0.5]] * 2}}
    assert _is_png(plot_scaling(scaling, tmp_path / "scaling.png"))


def test_plot_dir_on_an_eval_folder_and_on_nothing(tmp_path):
    summary = summarize(np.array([[[1.0, 1.0]], [[0.0, 1.0]]]), resamples=50)
    write_eval(tmp_path / "eval", summary, [])
    names = sorted(p.name for p in plot_dir(tmp_path / "eval"))
    assert names == ["accuracy_per_attempt.png", "transitions.png"]
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plot_dir(tmp_path / "empty_dir")
