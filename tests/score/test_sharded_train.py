"""`score train` with a 2-rank FSDP2 learner through real Ray, real gloo and real engines: resume with the same and
with a different number of ranks repeats the uninterrupted run, and the engines hold the learner's weights after
every bucket-streamed sync."""

import json
import shutil

import pytest
import safetensors.torch

from score.config import load_config
from score.train import train


def _overrides(model, out, engine="hf", extra=()):
    return [
        "stage=1", f"output_dir={out}", f"model.path={model}", "env.name=score_test_plugins:AnyDigitEnv",
        f"rollout.engine={engine}", "rollout.n=4", "rollout.max_new_tokens=6", "train.steps=3",
        "train.prompts_per_step=3", "train.lr=0.01", "train.micro_batch_size=4", "log.tensorboard=false",
        "learner.num_ranks=2", "learner.sync_bucket_mb=0.1", *extra,
    ]


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(out):
    return safetensors.torch.load_file(str(out / "final" / "model.safetensors"))


def test_resume_with_two_ranks_and_with_one_repeats_the_uninterrupted_run(ray_cluster, tiny_model_path, tmp_path):
    full, cut, cut_to_one = tmp_path / "full", tmp_path / "cut", tmp_path / "cut_to_one"
    train(load_config(None, _overrides(tiny_model_path, full)))
    train(load_config(None, _overrides(tiny_model_path, cut, extra=["train.steps=2", "train.save_every=2"])))
    step2 = cut / "checkpoints" / "step_2"
    assert (step2 / "dcp" / ".metadata").is_file() and (step2 / "model.safetensors").is_file()
    assert {p.name for p in step2.glob("rng_rank*.pt")} == {"rng_rank0.pt", "rng_rank1.pt"}
    shutil.copytree(cut, cut_to_one)
    train(load_config(None, _overrides(tiny_model_path, cut, extra=["resume=true"])))
    train(load_config(None, _overrides(tiny_model_path, cut_to_one, extra=["resume=true", "learner.num_ranks=1"])))

    a = _metrics(full)
    assert json.loads((full / "summary.json").read_text())["learner_ranks"][1]["rank"] == 1
    assert all(m["sync_logprob_diff"] < 1e-4 for m in a)  # the engine holds the streamed weights after each sync
    expected = _weights(full)
    for out, tolerance in ((cut, 0.0), (cut_to_one, 1e-5)):
        b = _metrics(out)
        assert [m["step"] for m in b] == [1, 2, 3]
        for key in ("acc_t1", "acc_t2", "loss", "kl_t1", "kl_t2", "grad_norm", "response_len_t1"):
            assert [m[key] for m in a] == pytest.approx([m[key] for m in b], rel=1e-4, abs=1e-6), (out.name, key)
        got = _weights(out)
        assert got.keys() == expected.keys()
        worst = max(float((got[k] - expected[k]).abs().max()) for k in expected)
        assert worst <= tolerance, (out.name, worst)


def test_two_ranks_stream_their_weights_into_vllm(ray_cluster, tiny_model_path, tmp_path, vllm_eager):
    """Several buckets per sync, each a partial in-place reload in vLLM; vLLM's log-probs equal the learner's."""
    out = tmp_path / "vllm"
    train(load_config(None, _overrides(tiny_model_path, out, "vllm", ["train.steps=2", *vllm_eager])))
    metrics = _metrics(out)
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["sync_logprob_diff"] < 1e-4 and m["logprob_mismatch"] < 1e-3 for m in metrics)
