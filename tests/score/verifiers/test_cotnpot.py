"""CoTnPoT: the program a generator writes from its own solution runs in the real code sandbox; the solution is kept
only when the program prints the solution's answer. The program writer is scripted so the verdicts are known."""

from envs.arithmetic import ArithmeticEnv
from envs.base import Problem
from score.verifiers.cotnpot import cotnpot_verdicts, expected_output, program_messages


class Renderer:
    """Prompts as text code points; decoding returns the text (enough for a scripted generator)."""

    def first_turn(self, messages):
        return [ord(c) for c in messages[-1]["content"]]

    def decode(self, ids):
        return "".join(map(chr, ids))


def test_verdicts_follow_what_the_program_prints(scripted):
    env = ArithmeticEnv(digits=2)
    problem = Problem("57+68", "57+68=", "125")
    programs = {
        "125": "Here you go:\n```python\nprint(57 + 68)\n```",       # agrees with a right CoT
        "115": "```python\nprint(57 + 68)\n```",                     # the program is right, the CoT is not
        "7 then 125.0": "```python\nprint(125)\n```",                 # '125.0' is expected as '125'
        "99": "```python\nwhile True:\n    pass\n```",                # times out
        "98": "```python\nprint(1/0)\n```",                           # crashes
    }

    def script(prompt_ids):
        text = "".join(map(chr, prompt_ids))
        solution = text.split("Solution: ")[1].split("\n\n")[0]
        return [ord(c) for c in programs[solution]]

    generate = scripted(script)
    solutions = ["125", "115", "7 then 125.0", "99", "98", "no answer here"]
    verdicts = cotnpot_verdicts(solutions, [problem] * 6, env, Renderer(), generate, timeout=2.0)
    assert verdicts == [True, False, True, False, False, False]
    assert len(generate.prompts) == 5  # a solution without a final answer is not asked for a program
    assert "57+68=" in program_messages(problem, "125")[0]["content"]
    assert expected_output("125.0") == "125" and expected_output("1/2") == "1/2"
