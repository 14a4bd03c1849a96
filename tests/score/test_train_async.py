"""train.async through real Ray with a tiny model: rollouts one update behind, corrected by truncated importance
sampling, the same prompts as the synchronous run, and an exact resume."""

import json
import math
import shutil

import pytest

from score.config import load_config
from score.train import train

ASYNC = ["train.async=true", "algo.tis_cap=2"]


def _overrides(model, out, extra=()):
    return [
        "stage=1", f"output_dir={out}", f"model.path={model}", "env.name=score_test_plugins:AnyDigitEnv",
        "rollout.engine=hf", "rollout.n=4", "rollout.max_new_tokens=6", "train.steps=4", "train.prompts_per_step=4",
        "train.lr=0.01", "train.micro_batch_size=5", "log.tensorboard=false",
        # A random tiny model rarely ends an answer within 6 tokens: scored as they are, attempts earn rewards and
        # the policy moves (with `zero`, every advantage would be 0 and the rollouts could not go stale)
        "algo.truncated=score", *extra,
    ]


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_async_rollouts_are_one_step_stale_and_importance_weighted(ray_cluster, tiny_model_path, tmp_path):
    sync_run, async_run = tmp_path / "sync", tmp_path / "async"
    train(load_config(None, _overrides(tiny_model_path, sync_run, ["algo.tis_cap=2", "train.steps=2"])))
    train(load_config(None, _overrides(tiny_model_path, async_run, ASYNC)))
    on, off = _metrics(sync_run), _metrics(async_run)
    assert [m["staleness"] for m in on] == [0, 0]
    assert [m["staleness"] for m in off] == [0, 1, 1, 1]  # the first rollout has nothing to overlap with
    # step 1 is the synchronous step exactly (same prompts, seeds and weights); later ones sample from older weights
    for key in ("acc_t1", "acc_t2", "loss", "kl_t1", "response_len_t1"):
        assert off[0][key] == pytest.approx(on[0][key], rel=1e-6, abs=1e-9), key
    # the learner sees the staleness (hf engine, fp32: on-policy log-probs agree to ~1e-6) and the IS correction runs
    assert all(m["logprob_mismatch"] < 1e-4 for m in on) and off[0]["logprob_mismatch"] < 1e-4
    assert all(m["logprob_mismatch"] > 1e-3 for m in off[1:])
    assert all(math.isfinite(m["is_clip_frac"]) and 0 <= m["is_clip_frac"] <= 1 for m in off)
    # after every push the engines hold the learner's weights, whatever they sampled with
    assert all(m["sync_logprob_diff"] < 1e-4 for m in off)
    assert all(m["time_step"] > 0 for m in off + on)


def test_async_resume_continues_exactly(ray_cluster, tiny_model_path, tmp_path):
    """A run killed after its step-2 checkpoint resumes with the rollout it had prefetched for step 3 (saved in the
    checkpoint), so steps 3 and 4 repeat the uninterrupted run's."""
    out = tmp_path / "run"
    train(load_config(None, _overrides(tiny_model_path, out, [*ASYNC, "train.save_every=2"])))
    full = _metrics(out)
    assert (out / "checkpoints" / "step_2" / "pending_rollout.pkl").is_file()
    shutil.rmtree(out / "checkpoints" / "step_4")  # as if the run had died during step 3
    train(load_config(None, _overrides(tiny_model_path, out, [*ASYNC, "train.save_every=2", "resume=true"])))
    resumed = _metrics(out)
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    assert [m["staleness"] for m in resumed] == [0, 1, 1, 1]
    for key in ("acc_t1", "acc_t2", "loss", "kl_t1", "kl_t2", "logprob_mismatch", "is_clip_frac"):
        assert [m[key] for m in resumed] == pytest.approx([m[key] for m in full], rel=1e-4, abs=1e-6), key
