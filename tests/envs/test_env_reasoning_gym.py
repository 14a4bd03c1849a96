"""The reasoning-gym adapter: procedural tasks generated offline, graded by each task's own scorer."""

import pytest

from envs import make_env
from score.tiny import build_tokenizer, default_corpus

TASKS = ["chain_sum", "spell_backward", "leg_counting"]


@pytest.fixture(scope="module")
def env():
    return make_env("reasoning_gym", tasks=",".join(TASKS), size=20, test_size=5, seed=7)


def test_problems_of_every_task_are_generated_and_test_is_held_out(env):
    train, test = env.load("train"), env.load("test")
    assert len(test) == 15 and 50 <= len(train) <= 60  # duplicates of test questions are dropped from train
    assert {p.meta["task"] for p in train} == {p.meta["task"] for p in test} == set(TASKS)
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    again = make_env("reasoning_gym", tasks=TASKS, size=20, test_size=5, seed=7).load("test")
    assert [p.prompt for p in again] == [p.prompt for p in test]  # same seed, same problems


def test_prompts_render_and_the_task_scorers_give_binary_rewards(env):
    tokenizer = build_tokenizer(default_corpus())
    for task in TASKS:
        problem = next(p for p in env.load("test") if p.meta["task"] == task)
        rendered = tokenizer.apply_chat_template(
            env.messages(problem, ["<answer>0</answer>"]), tokenize=False, add_generation_prompt=True
        )
        assert env.system_prompt in rendered and problem.prompt in rendered and env.correction_instruction in rendered
        answer = problem.reference["answer"]
        assert env.reward(f"Thinking it through.\n<answer>{answer}</answer>", problem) == 1.0, task
        assert env.reward("<answer>certainly not this</answer>", problem) == 0.0, task
        assert env.reward(answer, problem) == 0.0, task  # no <answer> tags, no credit
        assert env.reward_details(f"<answer>{answer}</answer>", problem)["extracted_answer"] == answer


def test_partial_credit_is_kept_only_when_asked(env):
    problem = next(p for p in env.load("test") if p.meta["task"] == "spell_backward")
    padded = f"<answer>{problem.reference['answer']} extra</answer>"
    assert 0.0 < env.score(padded, problem) < 1.0
    assert env.reward(padded, problem) == 0.0
    partial = make_env("reasoning_gym", tasks="spell_backward", size=3, test_size=5, seed=7, binary=False)
    same = partial.load("test")[0]
    assert same.prompt == problem.prompt  # each task's problems depend on the seed only
    assert partial.reward(padded, same) == env.score(padded, problem)


def test_task_options_and_errors():
    env = make_env("reasoning_gym", tasks="chain_sum", task_config={"chain_sum": {"min_terms": 2, "max_terms": 2}},
                   size=5, test_size=5)
    assert all(p.reference["metadata"]["num_terms"] == 2 for p in env.load("test"))
    with pytest.raises(ValueError, match=r"unknown reasoning-gym task\(s\) \['no_such_task'\]; available: .*chain_sum"):
        make_env("reasoning_gym", tasks="chain_sum,no_such_task")
    with pytest.raises(ValueError, match="task_config names task"):
        make_env("reasoning_gym", tasks="chain_sum", task_config={"leg_counting": {}})
