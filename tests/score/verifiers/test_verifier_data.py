"""`score verifier data`: sampling, labels, de-duplication, Math-Shepherd step labels and the written dataset."""

import json

import pytest
from transformers import AutoTokenizer

from envs.arithmetic import ArithmeticEnv
from envs.base import Problem
from score.engines.base import Completion
from score.rollout import ChatRenderer
from score.verifiers.config import load_verifier_config
from score.verifiers.data import Solution, deduplicate, read_data, run_data, shepherd_labels
from score.verifiers.steps import StepConfig, offsets_step_ends, step_ends


class CharTokenizer:
    """One token per character (ids are code points): step positions are easy to read in a test."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(map(chr, ids))


def _renderer():
    renderer = ChatRenderer.__new__(ChatRenderer)
    renderer.tokenizer = CharTokenizer()
    return renderer


def _ids(text):
    return [ord(c) for c in text]


def test_shepherd_labels_a_step_good_when_any_completion_from_its_prefix_is_right(scripted):
    """Problem 11+1=12; steps are digits. The wrong solution "111" is cut after "1" and after "11". From "1" one of
    the two completions writes "2" ("12", right): step 1 is good. From "11" every completion writes "0" ("110"):
    step 2 is bad. The last step is the wrong solution itself: bad."""
    env = ArithmeticEnv(digits=1)
    problem = Problem("11+1", "11+1=", "12")
    prompt = _ids("P:")
    calls = {"n": 0}

    def script(ids):
        tail = "".join(map(chr, ids[len(prompt):]))
        calls["n"] += 1
        if tail == "1":
            return _ids("9") if calls["n"] % 2 else _ids("2")  # one of the two completions is right
        return _ids("0")

    generate = scripted(script)
    wrong = Solution(problem, "m", 0, prompt, Completion(_ids("111"), [0.0] * 3, True), "111", 0.0, "111")
    right = Solution(problem, "m", 1, prompt, Completion(_ids("12"), [0.0] * 2, True), "12", 1.0, "12")
    stats = shepherd_labels([wrong, right], _renderer(), generate, completions=2, params=None, score=env.rewards,
                            steps=StepConfig("chars", every=1))
    assert wrong.step_ends == [1, 2, 3] and wrong.step_labels == [1.0, 0.0, 0.0]
    assert right.step_ends == [1, 2] and right.step_labels == [1.0, 1.0]  # a right solution completes itself
    # only the wrong solution's two inner prefixes were sampled from, 2 completions each
    assert stats == {"prm_prefixes": 2.0, "prm_completions": 4.0}
    assert sorted("".join(map(chr, p[2:])) for p in generate.prompts) == ["1", "1", "11", "11"]


def test_steps_on_a_real_tokenizer_line_up_with_the_text(tiny_model_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    text = "12+3=15\n15+4=19\nso 19"
    ends = step_ends(text, StepConfig())
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    positions = offsets_step_ends(encoded["offset_mapping"], ends)
    for end, position in zip(ends, positions):  # the token at each step end is the step's last token
        start, stop = encoded["offset_mapping"][position]
        assert start < end <= stop or text[stop:end].strip() == ""
    assert positions[-1] == len(encoded["input_ids"]) - 1


def test_deduplicate_keeps_the_first_copy_per_problem():
    p, q = Problem("a", "1+1=", "2"), Problem("b", "1+2=", "3")
    done = Completion([], [], True)
    sols = [Solution(p, "m", 0, [], done, "2", 1, "2"), Solution(p, "m", 1, [], done, "2 ", 1, "2"),
            Solution(q, "m", 0, [], done, "2", 0, "2"), Solution(p, "m2", 0, [], done, "3", 0, "3")]
    assert [(s.problem.id, s.model, s.sample) for s in deduplicate(sols)] == [("a", "m", 0), ("b", "m", 0),
                                                                              ("a", "m2", 0)]


def test_score_verifier_data_end_to_end_with_the_tiny_model(ray_cluster, tiny_model_path, tmp_path):
    """Two generators, real engine, real rewards (VoteEnv: a random model is right about a third of the time),
    Math-Shepherd labels sampled from the model, JSONL and a Hugging Face dataset."""
    cfg = load_verifier_config(None, [
        f"output_dir={tmp_path / 'v'}", f"model.path={tiny_model_path}", "env.name=score_test_plugins:VoteEnv",
        "rollout.engine=hf", "rollout.n=4", "rollout.max_new_tokens=4", "rollout.temperature=1.5", "data.problems=6",
        f"data.models=[{tiny_model_path},{tiny_model_path}]", "data.prm_labels=true", "data.prm_completions=2",
        "data.steps.split=chars", "data.format=hf"])
    folder = run_data(cfg)
    records = read_data(folder)
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["samples"] == 48 and stats["kept"] == len(records) <= 48
    assert 0 < stats["correct_frac"] < 1 and stats["problems"] == 6
    from envs import make_env

    env = make_env("score_test_plugins:VoteEnv")
    problems = {p.id: p for p in env.load("train")}
    keys = set()
    for r in records:
        assert r["correct"] == int(env.reward(r["solution"], problems[r["problem_id"]]) >= 0.5)
        assert r["messages"] == env.first_turn_messages(problems[r["problem_id"]])
        ends, labels = r["step_ends"], r["step_labels"]
        assert len(ends) == len(labels) and ends == sorted(set(ends)) and all(0 < e <= len(r["solution"]) for e in ends)
        if r["correct"]:
            assert set(labels) <= {1.0}
        elif labels:
            assert labels[-1] == 0.0
        keys.add((r["problem_id"], " ".join(r["solution"].split())))
    assert len(keys) == len(records)  # de-duplicated
    assert [m["model"] for m in stats["models"]] == [str(tiny_model_path)] * 2
    assert all(m["prm_prefixes"] > 0 for m in stats["models"])
    import datasets

    assert len(datasets.load_from_disk(str(folder / "hf"))) == len(records)


def test_config_errors_name_the_key(tiny_model_path):
    base = [f"model.path={tiny_model_path}"]
    with pytest.raises(ValueError, match="verifier.kind"):
        load_verifier_config(None, [*base, "verifier.kind=dpo"])
    with pytest.raises(ValueError, match="data.steps.pattern"):
        load_verifier_config(None, [*base, "data.steps.split=regex"])
    with pytest.raises(ValueError, match="data.models"):
        load_verifier_config(None, [*base, "data.models=[/nowhere]"])
    with pytest.raises(ValueError, match="cotnpot"):
        load_verifier_config(None, [*base, "data.cotnpot.filter=true"])
