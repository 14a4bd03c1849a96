"""`score.evaluate` on a tiny model with the transformers engine, and `score eval` end to end through the CLI."""

import json

import numpy as np
import pytest
from matplotlib.image import imread
from transformers import AutoTokenizer

from envs import make_env
from envs.arithmetic import ArithmeticEnv
from score.cli import main
from score.engines import SamplingParams
from score.engines.hf import HFEngine
from score.evaluate import answer_key, evaluate, inference_scaling, majority_vote, sample_records, summarize
from score.metrics import self_correction_metrics
from score.report import read_eval, read_samples, rewards_from_samples, write_eval
from score.rollout import ChatRenderer, assign_rewards, two_attempt_rollout

SAMPLED = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=6, seed=3)


class LetterEnv(ArithmeticEnv):
    """Arithmetic prompts; reward 1 when the attempt contains an 'e'. A random tiny model hits it about half the
    time, so every metric has something to count. Majority voting counts whole texts (the `answer_key` hook)."""

    def reward(self, attempt, problem):
        return float("e" in attempt)

    def answer_key(self, attempt, problem):
        return attempt


@pytest.fixture(scope="module")
def engine(tiny_model_path):
    engine = HFEngine(str(tiny_model_path))
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def renderer(tiny_model_path):
    return ChatRenderer(AutoTokenizer.from_pretrained(tiny_model_path))


def test_two_attempts_are_the_training_rollout(engine, renderer):
    env = LetterEnv(digits=1, num_train=10, num_test=6)
    problems = env.load("test")
    result = evaluate(env, problems, renderer, engine.generate, attempts=2, samples=2, params=SAMPLED)
    trajectories = two_attempt_rollout(problems, env, renderer, engine.generate, n=2, params=SAMPLED)
    assign_rewards(trajectories, env.rewards)
    assert len(result.samples) == len(trajectories) == 12
    for sample, t in zip(result.samples, trajectories):
        assert sample.problem is t.problem
        assert [c.token_ids for c in sample.completions] == [t.y1.token_ids, t.y2.token_ids]
        assert sample.rewards == [t.r1, t.r2]
    rewards = result.rewards()
    assert rewards.shape == (6, 2, 2)
    metrics = result.log_metrics()
    expected = self_correction_metrics([t.r1 for t in trajectories], [t.r2 for t in trajectories])
    assert {k: metrics[f"eval_{k}"] for k in expected if k != "n"} == pytest.approx(
        {k: v for k, v in expected.items() if k != "n"})
    assert metrics["eval_n"] == 6
    assert 0 < metrics["eval_acc_t1"] < 1  # the test would prove little on all-0 or all-1 rewards


def test_k_attempts_extend_the_conversation_with_exact_ids(engine, renderer):
    env = LetterEnv(digits=1, num_train=10, num_test=3)
    problems = env.load("test")
    result = evaluate(env, problems, renderer, engine.generate, attempts=3, params=SAMPLED, chunk_size=2)
    for sample in result.samples:
        expected = renderer.first_turn(env.first_turn_messages(sample.problem))
        for k, completion in enumerate(sample.completions):
            expected = expected + completion.token_ids
            if k < 2:  # the last attempt is followed by nothing
                expected = expected + renderer.between_turns(env.correction_instruction, completion.token_ids)
        assert sample.context_ids == expected
        assert sample.instructions == [env.correction_instruction] * 2
        assert sample.texts == [renderer.decode(c.token_ids) for c in sample.completions]
    assert result.rewards().shape == (3, 1, 3)
    assert set(result.summary(resamples=100)) >= {"acc_t1", "acc_t2", "acc_t3", "delta_t1_t3", "ci", "transitions"}


def test_custom_score_callable(engine, renderer):
    env = LetterEnv(digits=1, num_train=10, num_test=4)
    seen = []

    def score(texts, problems):
        seen.append(len(texts))
        return [1.0] * len(texts)

    result = evaluate(env, env.load("test"), renderer, engine.generate, params=SAMPLED, score=score)
    assert seen == [4, 4]  # one batch per attempt
    assert result.log_metrics(prefix="")["acc_t2"] == 1.0


def test_answer_keys_and_majority_vote():
    env = make_env("arithmetic")
    problem = env.load("test")[0]
    assert answer_key(env, "so it is 1,000", problem) == answer_key(env, "The answer is 1000.0", problem) == "1000"
    assert answer_key(env, "Final Answer: The final answer is $\\frac{1}{2}$.", problem) == answer_key(
        env, "it is 0.5", problem)
    assert answer_key(env, "no number here", problem) is None
    code = make_env("humaneval")
    assert answer_key(code, "def f():\n    return 1\n", None) == "def f(): return 1"
    # three samples answer 7 (one of them scored wrong would be impossible for math, but the first vote wins)
    assert majority_vote(["7", "3", "7", None, None, None], [1.0, 0.0, 1.0, 0.0, 0.0, 0.0]) == 1.0
    assert majority_vote(["3", "7"], [0.0, 1.0]) == 0.0  # a tie goes to the first answer seen
    assert majority_vote([None, None], [0.0, 0.0]) == 0.0


def test_inference_scaling(engine, renderer):
    env = LetterEnv(digits=1, num_train=10, num_test=5)
    problems = env.load("test")
    out = inference_scaling(env, problems, renderer, engine.generate, budget=4, params=SAMPLED, resamples=200)
    assert out["parallel"]["budget"] == [1, 2, 4] and out["sequential"]["budget"] == [2, 4]
    for curve in (out["parallel"], out["sequential"]):
        assert all(low <= acc <= high for acc, (low, high) in zip(curve["acc"], curve["ci"]))
    # near-zero temperature: every sample is the greedy one, so every vote is the greedy attempt's reward
    cold = inference_scaling(env, problems, renderer, engine.generate, budget=4, resamples=10,
                             params=SamplingParams(temperature=1e-4, max_new_tokens=6))
    greedy = evaluate(env, problems, renderer, engine.generate, params=SamplingParams(0.0, max_new_tokens=6))
    acc_t1, acc_t2 = greedy.rewards()[:, 0, :].mean(axis=0)
    assert cold["parallel"]["acc"] == pytest.approx([acc_t1] * 3)
    assert cold["sequential"]["acc"] == pytest.approx([acc_t2] * 2)
    with pytest.raises(ValueError, match="power of two"):
        inference_scaling(env, problems, renderer, engine.generate, budget=6, params=SAMPLED)
    with pytest.raises(ValueError, match="temperature"):
        inference_scaling(env, problems, renderer, engine.generate, budget=4, params=SamplingParams(0.0))


def test_written_files_agree_with_the_samples(engine, renderer, tmp_path):
    env = LetterEnv(digits=1, num_train=10, num_test=8)
    result = evaluate(env, env.load("test"), renderer, engine.generate, samples=2, params=SAMPLED)
    write_eval(tmp_path, result.summary(), sample_records(result, env))
    ids, rewards = rewards_from_samples(read_samples(tmp_path))
    assert ids == [p.id for p in env.load("test")]
    assert np.array_equal(rewards, result.rewards())
    summary = read_eval(tmp_path)
    flat = self_correction_metrics(rewards[:, :, 0].ravel(), rewards[:, :, 1].ravel())
    for key in ("acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i"):
        assert summary[key] == pytest.approx(flat[key])
        low, high = summary["ci"][key]
        assert low <= summary[key] <= high
    assert summary == json.loads(json.dumps({**summarize(rewards), "feedback": "intrinsic"}))


def _recompute(out):
    """eval.json's numbers from samples.jsonl alone, as a reader of the files would do it."""
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    r1 = [r["attempts"][0]["reward"] for r in records]
    r2 = [r["attempts"][1]["reward"] for r in records]
    return records, self_correction_metrics(r1, r2)


def test_score_eval_compare_and_plot_cli(tiny_model_path, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--model", str(tiny_model_path), "--env", "arithmetic", "--engine", "hf",
                 "--env-kwargs", '{"digits": 1, "num_train": 20, "num_test": 12}', "--limit", "10",
                 "--max-new-tokens", "6", "--scaling", "2", "--scaling-temperature", "1.0",
                 "--baseline", str(tiny_model_path), "--resamples", "200", "--out", str(out)])
    assert code == 0
    for name in ("eval.json", "samples.jsonl", "report.md", "scaling.json", "compare.json", "baseline/eval.json",
                 "plots/accuracy_per_attempt.png", "plots/transitions.png", "plots/scaling.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "eval.json").read_text())
    records, expected = _recompute(out)
    assert summary["n"] == expected["n"] == len(records) == 10
    assert {k: summary[k] for k in expected} == pytest.approx(expected)
    assert summary["config"]["temperature"] == 0.0 and summary["config"]["engine"] == "hf"  # greedy unless asked
    first = records[0]["attempts"][0]
    assert {"text", "reward", "extracted_answer", "finished", "num_tokens"} <= set(first)
    report = (out / "report.md").read_text()
    assert "| model | feedback | n | Acc@t1 | Acc@t2 | Δ(t1,t2) | Δi→c | Δc→i |" in report
    assert "Feedback between attempts: intrinsic" in report
    assert "(baseline)" in report and "Inference-time scaling" in report
    assert imread(out / "plots" / "transitions.png").ndim == 3

    # the same model, greedy: the paired difference is exactly zero
    assert main(["compare", str(out), str(out / "baseline"), "--out", str(tmp_path / "cmp")]) == 0
    comparison = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert all(d["diff"] == 0 and not d["significant"] for d in comparison["metrics"].values())
    assert "Acc@t2" in capsys.readouterr().out

    assert main(["plot", str(out), "--out", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "accuracy_per_attempt.png").is_file()


def test_cli_errors_name_the_flag(tiny_model_path, tmp_path, capsys):
    assert main(["eval", "--model", str(tiny_model_path), "--env", "arithmetic", "--scaling", "3",
                 "--out", str(tmp_path)]) == 2
    assert "--scaling" in capsys.readouterr().err
    assert main(["eval", "--model", str(tiny_model_path), "--env", "arithmetic", "--env-kwargs", "{digits",
                 "--out", str(tmp_path)]) == 2
    assert "--env-kwargs" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    assert "score eval --out" in capsys.readouterr().err


@pytest.mark.slow
def test_score_eval_on_vllm_matches_transformers(tiny_model_path, tmp_path, engine, renderer):
    """The default engine where installed: greedy vLLM (fp32) writes the same attempts as transformers."""
    out = tmp_path / "vllm"
    assert main(["eval", "--model", str(tiny_model_path), "--env", "arithmetic", "--engine", "vllm",
                 "--env-kwargs", '{"digits": 1, "num_train": 20, "num_test": 12}', "--limit", "10",
                 "--max-new-tokens", "6", "--resamples", "200", "--no-plots", "--out", str(out),
                 "--engine-kwargs", '{"enforce_eager": true, "kv_cache_memory_bytes": 67108864}']) == 0
    summary = json.loads((out / "eval.json").read_text())
    records, expected = _recompute(out)
    assert summary["config"]["engine"] == "vllm" and {k: summary[k] for k in expected} == pytest.approx(expected)
    env = make_env("arithmetic", digits=1, num_train=20, num_test=12)
    reference = evaluate(env, env.load("test")[:10], renderer, engine.generate,
                         params=SamplingParams(0.0, max_new_tokens=6))
    texts = [a["text"] for r in records for a in r["attempts"]]
    same = sum(a == b for a, b in zip(texts, [t for s in reference.samples for t in s.texts]))
    assert same >= 0.9 * len(texts)  # fp32 on both; a rare near-tie may flip one greedy token


def test_eval_reports_strict_and_lenient_accuracy():
    from envs.base import Problem
    from score.evaluate import EvalResult, EvalSample, answer_form_accuracy

    problem = Problem(id="0", prompt="What is 6 * 7?", reference="42")
    instructed = "Final Answer: The final answer is $42$. I hope it is correct."
    samples = [EvalSample(problem, 0, [], texts=[instructed, "It is 42"], rewards=[1.0, 1.0]),
               EvalSample(problem, 1, [], texts=["It is 41", instructed], rewards=[0.0, 1.0])]
    forms = answer_form_accuracy("math", {}, EvalResult(samples, attempts=2, samples_per_problem=2))
    assert forms == {"strict": {"acc_t1": 0.5, "acc_t2": 0.5}, "lenient": {"acc_t1": 0.5, "acc_t2": 1.0}}
    assert answer_form_accuracy("arithmetic", {}, EvalResult(samples, 2, 2)) is None


class CountingFeedbackEnv(LetterEnv):
    """Feedback that names the attempt's length and counts how often it is asked for."""

    feedback_mode = "length"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.asked = 0

    def feedback(self, problem, attempt):
        self.asked += 1
        return f"Your answer had {len(attempt)} characters."


def test_k_attempts_with_feedback(engine, renderer, tmp_path):
    """Three attempts: each next prompt carries the feedback on the attempt before it; the files say which feedback."""
    env = CountingFeedbackEnv(digits=1, num_train=10, num_test=3)
    result = evaluate(env, env.load("test"), renderer, engine.generate, attempts=3, params=SAMPLED, chunk_size=2)
    assert env.asked == 3 * 2  # after attempts 1 and 2, never after the last
    for sample in result.samples:
        told = [f"Your answer had {len(text)} characters." for text in sample.texts[:2]]
        assert sample.instructions == told
        expected = renderer.first_turn(env.first_turn_messages(sample.problem))
        for k, completion in enumerate(sample.completions):
            expected = expected + completion.token_ids
            if k < 2:
                expected = expected + renderer.between_turns(told[k], completion.token_ids)
        assert sample.context_ids == expected
    summary = result.summary(resamples=50)
    assert summary["feedback"] == "extrinsic:length" and "delta_t1_t3" in summary
    records = sample_records(result, env)
    assert [[a.get("feedback_before") for a in r["attempts"]] for r in records] == [
        [None, *s.instructions] for s in result.samples]


def test_scaling_asks_feedback_only_for_attempts_that_continue(engine, renderer):
    env = CountingFeedbackEnv(digits=1, num_train=10, num_test=3)
    scaling = inference_scaling(env, env.load("test"), renderer, engine.generate, budget=4, params=SAMPLED,
                                resamples=50)
    assert env.asked == 3 * 2  # budget 4: two of the four first attempts per problem get a second one
    assert scaling["feedback"] == "extrinsic:length"


def test_score_eval_with_test_feedback_on_humaneval(tiny_model_path, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(tiny_model_path), "--env", "humaneval", "--env-kwargs",
                 '{"feedback": "tests"}', "--limit", "2", "--attempts", "3", "--max-new-tokens", "8",
                 "--engine", "hf", "--no-plots", "--resamples", "50", "--out", str(out)]) == 0
    summary = json.loads((out / "eval.json").read_text())
    assert summary["feedback"] == summary["config"]["feedback"] == "extrinsic:tests" and summary["attempts"] == 3
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for record in records:
        for attempt in record["attempts"][1:]:  # a random tiny model fails every test: it is shown why
            assert attempt["feedback_before"].startswith("The code above failed a test:")
    assert "Feedback between attempts: extrinsic: shown the first failing test's message" in (
        out / "report.md").read_text()
