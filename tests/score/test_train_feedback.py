"""Training with an environment that gives feedback between attempts: real Ray, a real tiny model, the real learner.

The environment (`FeedbackDigitEnv`, a plug-in installed for the session) quotes attempt 1 back to the model.
"""

import json

from transformers import AutoTokenizer

from envs import make_env
from envs.base import clip_feedback
from score.actors import RolloutGroup, start_learner
from score.config import load_config
from score.engines import SamplingParams
from score.reward_pool import RewardPool
from score.rollout import ChatRenderer, assign_rewards, feedback_hook, two_attempt_rollout
from score.train import make_batch, train

ENV = "score_test_plugins:FeedbackDigitEnv"


def _overrides(model, out, extra=()):
    return [f"output_dir={out}", f"model.path={model}", f"env.name={ENV}", "rollout.engine=hf", "rollout.n=2",
            "rollout.max_new_tokens=6", "train.prompts_per_step=3", "train.lr=0.01", "log.tensorboard=false", *extra]


def test_feedback_reaches_the_engine_and_is_never_trained(ray_cluster, tiny_model_path, tmp_path):
    """Token by token: attempt 2 was generated after the feedback's ids, the learner sees the same ids, and only the
    two attempts' tokens are trained."""
    cfg = load_config(None, _overrides(tiny_model_path, tmp_path, ["stage=2"]))
    env = make_env(ENV)
    renderer = ChatRenderer(AutoTokenizer.from_pretrained(tiny_model_path))
    engines = RolloutGroup("hf", str(tiny_model_path), {}, num_engines=1, num_cpus=1, num_gpus=0, timeout_s=600)
    scorer = RewardPool(ENV, {}, num_workers=1)
    learner = start_learner(cfg, model_path=str(tiny_model_path), init_from=None, seed=0)
    try:
        params = SamplingParams(temperature=1.0, max_new_tokens=6, seed=5)
        trajectories = two_attempt_rollout(env.load("train")[:3], env, renderer, engines.generate, n=2,
                                           params=params, feedback=feedback_hook(env, scorer.feedbacks))
        assign_rewards(trajectories, scorer.score)
        batch, _ = make_batch(trajectories, cfg)
        for t, ids, turns in zip(trajectories, batch.input_ids, batch.turn_ids):
            told = clip_feedback(env.feedback(t.problem, t.y1_text))  # what the reward worker computed
            assert t.instruction == told and told.startswith("You wrote ")
            between = renderer.between_turns(told, t.y1.token_ids)
            assert ids == t.prompt_ids + t.y1.token_ids + between + t.y2.token_ids
            assert turns == ([0] * len(t.prompt_ids) + [1] * len(t.y1.token_ids) + [0] * len(between)
                             + [2] * len(t.y2.token_ids))
            start = len(t.prompt_ids) + len(t.y1.token_ids)
            assert told in renderer.tokenizer.decode(ids[start : start + len(between)])
        stats = learner.train_step(batch, kl_mode="reward", micro_batch_size=4)
        assert stats["trained_tokens"] == sum(len(t.y1.token_ids) + len(t.y2.token_ids) for t in trajectories)
        # the learner's log-probs of attempt 2, after the feedback ids, are the engine's: it sampled after them too
        assert stats["logprob_mismatch"] < 1e-3
    finally:
        engines.shutdown()
        scorer.shutdown()
        learner.shutdown()


def test_score_train_with_feedback_names_it(ray_cluster, tiny_model_path, tmp_path):
    out = tmp_path / "run"
    train(load_config(None, _overrides(tiny_model_path, out, ["stage=2", "train.steps=2", "eval.every=2",
                                                              "eval.limit=3"])))
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["feedback"] for m in metrics] == ["extrinsic:echo"] * 2
    assert metrics[1]["eval_n"] == 3 and "eval_delta" in metrics[1]  # held-out evaluation with the same feedback
    summary = json.loads((out / "summary.json").read_text())
    assert summary["feedback"] == "extrinsic:echo" and summary["engine"] == "hf"
