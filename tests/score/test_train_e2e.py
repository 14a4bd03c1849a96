"""Stage I then Stage II through real Ray with a tiny model: the whole trainer, end to end."""

import json

import pytest
import safetensors.torch
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from score.config import load_config
from score.train import train

REQUIRED_KEYS = {
    "step", "stage", "acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i", "reward_t1", "reward_t2", "kl_t1",
    "kl_t2", "loss", "response_len_t1", "response_len_t2", "time_rollout", "time_reward", "time_update",
    "time_sync", "logprob_mismatch", "sync_logprob_diff", "truncated_t1", "truncated_t2", "grad_norm", "grad_clipped",
}


def _overrides(tiny_model_path, out, stage, engine, extra=()):
    return [
        f"stage={stage}", f"output_dir={out}", f"model.path={tiny_model_path}",
        "env.name=score_test_plugins:AnyDigitEnv", f"rollout.engine={engine}", "rollout.n=4",
        "rollout.max_new_tokens=6", "train.steps=3", "train.prompts_per_step=4", "train.lr=0.01",
        "train.micro_batch_size=5", "log.tensorboard=true", *extra,
    ]


def _read_metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(path):
    return safetensors.torch.load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("engine", ["hf", "vllm"])
def test_stage1_then_stage2(ray_cluster, tiny_model_path, tmp_path, engine, vllm_eager):
    out1, out2 = tmp_path / "stage1", tmp_path / "stage2"
    eager = vllm_eager if engine == "vllm" else []
    # A random tiny model almost never ends its answer within 6 tokens: with truncated attempts earning 0 every
    # reward, advantage and gradient would be 0 and the policy could not move. Score them as they are.
    train(load_config(None, _overrides(tiny_model_path, out1, 1, engine, ["train.save_every=2", "eval.every=2",
                                                                         "eval.limit=5", "algo.truncated=score",
                                                                         *eager])))
    metrics = _read_metrics(out1)
    assert [m["step"] for m in metrics] == [1, 2, 3] and all(m["stage"] == 1 for m in metrics)
    assert all(REQUIRED_KEYS <= m.keys() for m in metrics)
    assert all(m["reward_t1"] == 0.0 for m in metrics)  # Stage I gives attempt 1 no task reward
    # held-out evaluation every eval.every steps, with the self-correction metrics
    assert [m.get("eval_n") for m in metrics] == [None, 5, None]
    assert {"eval_acc_t1", "eval_acc_t2", "eval_delta", "eval_delta_i2c", "eval_delta_c2i"} <= metrics[1].keys()
    assert (out1 / "config.yaml").is_file() and (out1 / "tensorboard").is_dir()
    assert {p.name for p in (out1 / "checkpoints").iterdir()} == {"step_2", "step_3"}

    # the policy moved, the reference did not, and the saved model loads with plain transformers
    base, final = _weights(tiny_model_path), _weights(out1 / "final")
    assert any(not torch.equal(base[k], final[k]) for k in base)
    summary = json.loads((out1 / "summary.json").read_text())
    assert summary["end"]["reference"] == summary["start"]["reference"]
    assert summary["end"]["policy"] != summary["start"]["policy"]
    # A plain Hugging Face folder, nothing of score's own: what transformers, vLLM (the Stage II engines below start
    # from it), OpenRLHF and verl load
    assert {p.name for p in (out1 / "final").iterdir()} <= {
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "chat_template.jinja", "special_tokens_map.json"}
    AutoModelForCausalLM.from_pretrained(out1 / "final")
    assert AutoTokenizer.from_pretrained(out1 / "final").chat_template

    # after every sync the engine computes the learner's log-probs, and rollouts were sampled from the synced
    # weights (the learner scores them with what it holds before the update)
    for m in metrics:
        assert m["sync_logprob_diff"] < 1e-3
        assert m["logprob_mismatch"] < 1e-3

    # Stage II starts from Stage I's result; the KL reference stays the base model
    train(load_config(None, _overrides(tiny_model_path, out2, 2, engine, [f"init_from={out1 / 'final'}", *eager])))
    summary2 = json.loads((out2 / "summary.json").read_text())
    assert summary2["start"]["policy"] == pytest.approx(summary["end"]["policy"], rel=1e-6)
    assert summary2["start"]["reference"] == pytest.approx(summary["start"]["reference"], rel=1e-6)
    metrics2 = _read_metrics(out2)
    assert all(REQUIRED_KEYS <= m.keys() and m["stage"] == 2 for m in metrics2)
    # the first Stage II step already differs from the base: attempt 1 is scored by the reference KL
    assert metrics2[0]["kl_t1"] != 0.0


def test_resume_repeats_the_same_steps(ray_cluster, tiny_model_path, tmp_path):
    """A run stopped after its step-2 checkpoint and resumed gives the same metrics as one uninterrupted run."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(load_config(None, _overrides(tiny_model_path, full, 1, "hf", ["train.steps=3"])))
    train(load_config(None, _overrides(tiny_model_path, cut, 1, "hf", ["train.steps=2", "train.save_every=2"])))
    train(load_config(None, _overrides(tiny_model_path, cut, 1, "hf", ["train.steps=3", "resume=true"])))
    a, b = _read_metrics(full), _read_metrics(cut)
    assert [m["step"] for m in b] == [1, 2, 3]
    for key in ("acc_t1", "acc_t2", "loss", "kl_t1", "kl_t2", "response_len_t1"):
        assert [m[key] for m in a] == pytest.approx([m[key] for m in b], rel=1e-4, abs=1e-6), key


def test_killed_rollout_worker_is_restarted_and_resynced(ray_cluster, tiny_model_path, tmp_path):
    """SIGKILL the rollout worker's process after the first step: the run finishes, with the weights re-synced."""
    import os
    import signal
    import threading
    import time

    import ray

    out = tmp_path / "killed"
    cfg = load_config(None, _overrides(tiny_model_path, out, 1, "hf", ["train.steps=4"]))
    errors = []
    runner = threading.Thread(target=lambda: _run_catching(cfg, errors))
    runner.start()
    deadline = time.monotonic() + 300
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip():
        assert time.monotonic() < deadline and runner.is_alive(), f"training never logged a step: {errors}"
        time.sleep(0.05)  # polling for the first step, not timing the test
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("score-rollout-")]
    assert len(names) == 1
    worker = ray.get_actor(names[0])
    os.kill(ray.get(worker.where.remote())["pid"], signal.SIGKILL)
    runner.join(timeout=600)
    assert not runner.is_alive() and not errors, errors
    metrics = _read_metrics(out)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert metrics[-1]["rollout_restarts"] >= 1
    # after the restart the engine generates with the learner's weights again, not the base model's
    assert all(m["sync_logprob_diff"] < 1e-3 and m["logprob_mismatch"] < 1e-3 for m in metrics)


def _run_catching(cfg, errors):
    try:
        train(cfg)
    except Exception as err:  # reported by the test thread
        errors.append(err)


def test_trains_with_an_environment_installed_as_a_plugin(ray_cluster, tiny_model_path, tmp_path):
    """The environment comes from a pip-installed package through the `score.envs` entry point, by name."""
    out = tmp_path / "plugin"
    train(load_config(None, _overrides(tiny_model_path, out, 2, "hf", ["env.name=any_digit", "train.steps=2"])))
    metrics = _read_metrics(out)
    assert [m["step"] for m in metrics] == [1, 2]
    assert any(m["acc_t1"] > 0 or m["acc_t2"] > 0 for m in metrics)  # the plug-in's reward was really called


def test_tied_embeddings_model_trains_syncs_and_resumes(ray_cluster, tmp_path, vllm_eager):
    """A model whose output layer is its embedding (SmolLM2, Qwen2.5) used to stop at the first weight sync:
    safetensors refuses the shared tensor. Now it syncs exactly into vLLM and its checkpoint resumes."""
    from score.tiny import build_tiny_model, default_corpus

    tied = build_tiny_model(tmp_path / "tied", default_corpus(), seed=3, tie_word_embeddings=True)
    out = tmp_path / "run"
    train(load_config(None, _overrides(tied, out, 1, "vllm", ["train.steps=2", "train.save_every=1", *vllm_eager])))
    metrics = _read_metrics(out)
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["sync_logprob_diff"] < 1e-3 and m["logprob_mismatch"] < 1e-3 for m in metrics)
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    train(load_config(None, _overrides(tied, out, 1, "hf", ["train.steps=3", "resume=true"])))  # loads step_2
    assert [m["step"] for m in _read_metrics(out)] == [1, 2, 3]
