"""The math family (MATH, MATH-500, GSM8K, any problem/answer dataset) and the offline arithmetic environment."""

import re
from pathlib import Path

import pytest

from envs import make_env
from envs.base import MATH_CORRECTION_INSTRUCTION, MATH_SYSTEM_PROMPT
from score.tiny import build_tokenizer, default_corpus

DATA = Path(__file__).parent.parent / "data"


def minerva(answer: str) -> str:
    """A solution ending the way SCoRe's math prompt asks."""
    return f"Let me work it out step by step.\nFinal Answer: The final answer is ${answer}$. I hope it is correct."


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(default_corpus())


# name, kwargs, (index of a problem, its answer), a wrong answer
CASES = {
    "math": ({"path": str(DATA / "math.jsonl")}, (0, "\\frac{3}{4}"), "\\frac{1}{2}"),
    "math500": ({"path": str(DATA / "math500.jsonl")}, (1, "5\\sqrt{2}"), "10"),
    "gsm8k": ({"path": str(DATA / "gsm8k.jsonl")}, (1, "1200"), "1000"),
    "math_dataset": ({"path": str(DATA / "qa.json"), "fields": {"problem": "q", "reference": "a"}}, (0, "4"), "5"),
    "arithmetic": ({"num_train": 20, "num_test": 10}, None, None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_prompts_render_with_a_chat_template_and_rewards_are_binary(name, tokenizer):
    kwargs, known, wrong = CASES[name]
    env = make_env(name, **kwargs)
    problems = env.load("test")
    index, answer = known if known else (0, problems[0].reference)
    problem = problems[index]
    assert problem.reference == answer

    turn1 = tokenizer.apply_chat_template(env.first_turn_messages(problem), tokenize=False, add_generation_prompt=True)
    assert problem.prompt in turn1 and turn1.endswith("<|im_start|>assistant\n")
    if env.system_prompt:
        assert turn1.startswith(f"<|im_start|>system\n{env.system_prompt}<|im_end|>")

    attempt1 = minerva(wrong if wrong else "-1")
    turn2 = tokenizer.apply_chat_template(env.messages(problem, [attempt1]), tokenize=False, add_generation_prompt=True)
    assert turn2.startswith(turn1)  # turn 2 extends turn 1: [x] [y1] [p]
    assert f"{attempt1}<|im_end|>\n<|im_start|>user\n{env.correction_instruction}<|im_end|>" in turn2

    assert env.reward(minerva(answer), problem) == 1.0
    assert env.reward(minerva(wrong if wrong else str(int(answer) + 1)), problem) == 0.0
    assert env.reward("", problem) == 0.0
    assert env.rewards([minerva(answer), "no answer at all"], [problem, problem]) == [1.0, 0.0]


def test_math_uses_scores_prompts_and_the_boxed_answer_of_each_solution():
    env = make_env("math", path=str(DATA / "math.jsonl"))
    assert env.system_prompt == MATH_SYSTEM_PROMPT and env.correction_instruction == MATH_CORRECTION_INSTRUCTION
    assert [p.reference for p in env.load("train")] == ["\\frac{3}{4}", "5", "6"]
    assert env.load("train")[0].meta["type"] == "Prealgebra"  # the whole row travels with the problem for logging
    assert env.reward_details(minerva("6"), env.load("train")[2]) == {"extracted_answer": "6", "reference": "6"}


def test_strict_format_rewards_only_the_instructed_answer_forms():
    plain = "Adding the two parts gives 4."
    loose = make_env("math_dataset", path=str(DATA / "qa.json"), fields={"problem": "q", "reference": "a"})
    strict = make_env("math_dataset", path=str(DATA / "qa.json"), fields={"problem": "q", "reference": "a"},
                      strict_format=True)
    problem = loose.load("test")[0]
    assert problem.reference == "4"
    assert loose.reward(plain, problem) == 1.0 and loose.rewards([plain], [problem]) == [1.0]
    assert strict.reward(plain, problem) == 0.0 and strict.rewards([plain], [problem]) == [0.0]
    assert strict.reward(minerva("4"), problem) == 1.0 and strict.rewards(["so \\boxed{4}"], [problem]) == [1.0]
    with pytest.raises(ValueError, match="strict_format"):
        make_env("math_dataset", strict_format="yes")


def test_math_defaults_to_math_train_and_math500_test_on_the_hub():
    env = make_env("math")
    assert env.path == {"train": "DigitalLearningGmbH/MATH-lighteval", "test": "HuggingFaceH4/MATH-500",
                        "math_test": "DigitalLearningGmbH/MATH-lighteval"}
    assert env.splits["train12k"] == "train" and env.splits["math_test"] == "test"
    assert make_env("math500").splits == {"test": "test"}
    assert (make_env("gsm8k").path, make_env("gsm8k").config) == ("openai/gsm8k", "main")


def test_gsm8k_reads_the_answer_after_the_hash_marks():
    problems = make_env("gsm8k", path=str(DATA / "gsm8k.jsonl")).load("train")
    assert [p.reference for p in problems] == ["12", "1200"]


def test_gsm8k_row_without_hash_marks_fails_with_its_index(tmp_path):
    (tmp_path / "g.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q", "answer": "2"}\n')
    with pytest.raises(ValueError, match=r"row 1, field 'answer'.*####"):
        make_env("gsm8k", path=str(tmp_path / "g.jsonl")).load("test")


def test_generic_dataset_takes_an_id_column_a_template_and_an_answer_format(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"uid": "a1", "task": "Compute 6*7.", "sol": "6*7 = \\\\boxed{42}"}\n')
    env = make_env(
        "math_dataset",
        path=str(tmp_path / "d.jsonl"),
        fields={"problem": "task", "reference": "sol", "id": "uid"},
        answer_format="boxed",
        prompt_template="Problem:\n{problem}",
        system_prompt="Be brief.",
    )
    (problem,) = env.load("train")
    assert (problem.id, problem.prompt, problem.reference) == ("a1", "Problem:\nCompute 6*7.", "42")
    assert env.first_turn_messages(problem)[0] == {"role": "system", "content": "Be brief."}
    with pytest.raises(ValueError, match="answer_format"):
        make_env("math_dataset", answer_format="latex")


def test_arithmetic_keeps_its_behaviour():
    env = make_env("arithmetic", num_train=30, num_test=10, seed=3)
    train, test = env.load("train"), env.load("test")
    assert len(train) == 30 and len(test) == 10
    assert not {p.id for p in train} & {p.id for p in test}
    problem = test[0]
    a, op, b = problem.id[0:2], problem.id[2], problem.id[3:]
    assert problem.prompt == f"{problem.id}=" and problem.reference == str(eval(f"{int(a)}{op}{int(b)}"))


def test_math_train12k_is_train_plus_the_test_problems_outside_math500(tmp_path):
    """The paper's MATH training set (Lightman et al.'s 12k split): 7.5k train + the 4.5k test problems not in
    MATH-500. Here in miniature, from local files standing in for the hub datasets."""
    import json

    def write(name, problems):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"problem": p, "solution": f"so \\boxed{{{i}}}"}) + "\n"
                                for i, p in enumerate(problems)))
        return str(path)

    paths = {"train": write("train", ["t1", "t2", "t3"]), "test": write("math500", ["held out A", "held out B"]),
             "math_test": write("math_test", ["held  out A", "x1", "held out B\n", "x2"])}
    env = make_env("math", path=paths)
    problems = [p.prompt for p in env.load("train12k")]
    assert problems == ["t1", "t2", "t3", "x1", "x2"]  # MATH-500 problems left out, whitespace ignored
    assert [p.reference for p in env.load("train12k")] == ["0", "1", "2", "1", "3"]


def test_arithmetic_max_operand_draws_every_operand_from_zero_to_it():
    env = make_env("arithmetic", ops="+-*", max_operand=3, num_train=40, num_test=8)
    problems = env.load("train") + env.load("test")
    # 4 x 4 operand pairs x 3 ops = 48 distinct problems: all of them, none twice.
    assert len({p.id for p in problems}) == 48
    for p in problems:
        a, op, b = re.fullmatch(r"(\d+)([-+*])(\d+)", p.id).groups()
        assert int(a) <= 3 and int(b) <= 3 and p.reference == str(eval(p.id))
    with pytest.raises(ValueError, match="only 48 distinct"):
        make_env("arithmetic", ops="+-*", max_operand=3, num_train=41, num_test=8).load("train")
    with pytest.raises(ValueError, match="max_operand"):
        make_env("arithmetic", max_operand=0)


def test_arithmetic_prompt_template_names_the_operation_in_words():
    env = make_env("arithmetic", ops="*", max_operand=9, num_train=5, num_test=1, prompt_template="What is {a} {op_word} {b}?")
    problem = env.load("test")[0]
    a, b = problem.id.split("*")
    assert problem.prompt == f"What is {a} times {b}?" and problem.reference == str(int(a) * int(b))
    with pytest.raises(ValueError, match="prompt_template"):
        make_env("arithmetic", prompt_template="{question}")
