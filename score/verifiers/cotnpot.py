"""CoTnPoT for math: check a chain-of-thought answer against a program the model writes from it.

For a solution y to problem x, the generator is asked (greedy, one user turn in its chat template) for a Python
program that computes the answer of y and prints it (`PROGRAM_PROMPT`). The program runs in the code sandbox
(`rewards.code`: no network, time and memory limits) with empty stdin; the solution is kept when the program's
printed output equals the CoT's final answer (`rewards.math.extract_answer`, trimmed, compared line by line by the
sandbox's stdin/stdout test, trailing whitespace ignored; a CoT answer "125.0" is expected as "125", but a program
printing "125.0" for "125" disagrees). A solution without a final answer, or whose program fails, crashes or times
out, disagrees.

Used as a data filter (`data.cotnpot`) and as a selection method (`score eval --select cotnpot`: majority vote over
the samples whose program agrees, or over all samples when none does).
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.base import Environment, Problem
from score.engines.base import SamplingParams
from score.rollout import ChatRenderer, Generate

PROGRAM_PROMPT = (
    "Problem: {problem}\n\nSolution: {solution}\n\n"
    "Write a Python program that computes the final answer of the solution above and prints only that answer. "
    "Reply with the program in a ```python block."
)


def expected_output(answer: str) -> str:
    """The printed form a program's answer is compared with: the answer trimmed, '125.0' as '125'.

    >>> expected_output(" 125.0 "), expected_output("3/4"), expected_output("-7")
    ('125', '3/4', '-7')
    """
    text = answer.strip()
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else text


def program_messages(problem: Problem, solution: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": PROGRAM_PROMPT.format(problem=problem.prompt, solution=solution.strip())}]


def cotnpot_verdicts(solutions: Sequence[str], problems: Sequence[Problem], env: Environment, renderer: ChatRenderer,
                     generate: Generate, *, max_new_tokens: int = 128, timeout: float = 5.0, seed: int = 0,
                     workers: int | None = None) -> list[bool]:
    """True for each solution whose program prints its CoT answer (see the module docstring)."""
    from rewards.code import extract_program
    from rewards.code import score as run_programs
    from rewards.math import extract_answer

    answers = []
    for text in solutions:
        try:
            answers.append(extract_answer(text))
        except Exception:  # noqa: BLE001 - model output never stops a run
            answers.append(None)
    asked = [i for i, a in enumerate(answers) if a is not None and expected_output(a)]
    prompts = [renderer.first_turn(program_messages(problems[i], solutions[i])) for i in asked]
    params = SamplingParams(temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed)
    completions = generate(prompts, params) if prompts else []
    programs = [extract_program(renderer.decode(c.token_ids)) for c in completions]
    tests = [[{"input": "", "output": expected_output(answers[i]) + "\n"}] for i in asked]
    results = run_programs(programs, tests, timeout=timeout, workers=workers) if programs else []
    verdicts = [False] * len(solutions)
    for i, result in zip(asked, results):
        verdicts[i] = bool(result.passed)
    return verdicts
