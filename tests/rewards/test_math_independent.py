"""rewards.math on answers it was not written against, wherever it is called, and on adversarial input.

The corpora (tests/data/math_independent.jsonl for tuning, tests/data/math_holdout.jsonl never tuned on) come from
MATH-500, GSM8K, reasoning-gym, real model outputs, math-verify's own test cases and the issue's categories; see
benchmarks/make_math_corpora.py for how each row was built and labelled.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewards.math import extract_answer, is_equiv, score

ROOT = Path(__file__).resolve().parents[2]
# The corpora are read by the benchmark's loader, so test and benchmark see the same rows and categories.
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_math import NO_FALSE_POSITIVES, load_independent, solution_text


def verdicts(rows: list[dict]) -> list[bool]:
    """Our verdict on every row: full texts through extraction, bare answers in the SCoRe answer sentence."""
    texts = [row.get("text") or solution_text(row["prediction"]) for row in rows]
    return [s == 1.0 for s in score(texts, [row["reference"] for row in rows], workers=2, timeout=5.0)]


@pytest.mark.parametrize(("name", "floor"), [("math_independent.jsonl", 0.99), ("math_holdout.jsonl", 0.97)])
def test_agreement_with_independent_labels(name, floor):
    rows = load_independent(name)
    got = verdicts(rows)
    agree = sum(g == row["equal"] for g, row in zip(got, rows)) / len(rows)
    assert agree >= floor, f"{name}: {agree:.3f}"
    false_positives = [row for g, row in zip(got, rows) if g and not row["equal"]
                       and row["category"].startswith(NO_FALSE_POSITIVES)]
    assert [(row["prediction"], row["reference"]) for row in false_positives] == []


PAIRS = [("z^2+z", "z(z+1)"), ("1.7320508075688772", "\\sqrt{3}"), ("3^{45}+1", "3^{45}"), ("(x+1)^2", "x^2+2x+1"),
         ("\\frac{\\sqrt2}{2}", "\\frac{1}{\\sqrt2}"), ("x > 3", "(3,\\infty)")]
SOLUTIONS, REFERENCES = ["\\boxed{x^2-1}"], ["(x-1)(x+1)"]
# No `if __name__ == "__main__":` guard: were the workers started through multiprocessing, this would re-run (and
# print again) in every worker, or fail when read from stdin.
SCRIPT = f"""
from rewards.math import is_equiv, score
print([is_equiv(p, r) for p, r in {PAIRS!r}], score({SOLUTIONS!r}, {REFERENCES!r}))
"""


def test_heredoc_and_unguarded_scripts_give_the_verdicts_of_a_guarded_caller(tmp_path):
    """Workers are their own module: a script read from stdin or without a __main__ guard gets the same verdicts."""
    unguarded = tmp_path / "unguarded.py"
    unguarded.write_text(SCRIPT)
    # Both at once: each starts its own workers (sympy and the parser, a few seconds).
    runs = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=ROOT) for command in ([sys.executable, str(unguarded)], [sys.executable, "-"])]
    outputs = [run.communicate(input=SCRIPT if run.args[-1] == "-" else "", timeout=120) for run in runs]
    # This test process is a guarded caller (pytest's own entry point).
    expected = f"{[is_equiv(p, r) for p, r in PAIRS]} {score(SOLUTIONS, REFERENCES)}"
    assert expected == "[True, False, False, True, True, True] [1.0]"
    for run, (stdout, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr[-2000:]
        assert stdout.splitlines() == [expected], stderr[-2000:]


ADVERSARIAL = [
    "10^{10^{10^{10}}}", "9^{9^{9^{9}}}", "((((100!)!)!)!)", "(10^{8})!", "\\sum_{k=1}^{10^8} k^{k}",
    "\\prod_{k=1}^{10^{9}} k", "2^{2^{2^{2^{2^{2}}}}}", "x" * 100_000, "(" * 50_000 + ")" * 50_000,
    "\\frac{" * 5000 + "1" + "}{2}" * 5000, "1" * 100_000, "\\sqrt{" * 400 + "2" + "}" * 400,
    "\\int_0^{10^{9}} e^{x^{x}} dx", "e^{e^{e^{e^{e^{10}}}}}", "\\binom{10^{12}}{10^{6}}",
]


def test_adversarial_answers_return_false_within_the_limit_and_never_raise():
    limit = 1.0
    is_equiv("z^2+z", "z(z+1)")  # the helper process starts once (not counted in any limit)
    for answer in ADVERSARIAL:
        for pred, ref in ((answer, "1"), ("1", answer)):
            start = time.monotonic()
            assert is_equiv(pred, ref, timeout=limit) is False
            assert time.monotonic() - start < limit + 1.0, answer[:40]
    texts = [f"\\boxed{{{answer}}}" for answer in ADVERSARIAL]
    scores, stats = score(texts, ["1"] * len(texts), workers=2, timeout=limit, return_stats=True)
    assert scores == [0.0] * len(texts) and stats.crashes == 0
    assert stats.slowest < limit + 1.0


@pytest.mark.parametrize(
    ("text", "default", "strict"),
    [
        ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}", "\\frac{3}{4}"),
        ("So we get \\boxed{12}.", "12", "12"),
        ("The answer is **42**.", "42", None),
        ("**Final answer:** 17", "17", None),
        ("Adding gives 30 + 12 = 42", "42", None),
        ("The area is $24$, since $6 \\cdot 4 = 24$.", "24", None),
        ("Roots: $\\boxed{1}$ and $\\boxed{-2}$.", "1, -2", "1, -2"),
        ("\\frac{10}{9}", "\\frac{10}{9}", None),  # a reply that is nothing but math is its answer
        ("Final answer: The largest $n$ is 34.", "34", None),  # a sentence stands for the value it names
        ("Final Answer: The final answer is Jane started 3 hours ago. I hope it is correct.", "3", "3"),
    ],
)
def test_strict_extraction_accepts_only_the_instructed_forms(text, default, strict):
    assert extract_answer(text) == default
    assert extract_answer(text, strict=True) == strict
    assert score([text], [default], strict=True) == [1.0 if strict else 0.0]


@pytest.mark.parametrize(
    ("prediction", "reference", "equal"),
    [
        ("(3,2)", "(p,q)=(3,2)", True), ("(2,3)", "(p,q)=(3,2)", False),  # name = value compares the value
        ("2x + y = 3", "y = 3 - 2x", True),  # ... but two equations compare as equations
        ("-x \\ge -1", "x \\le 1", True), ("-x \\ge 1", "x \\le 1", False),  # a negated variable
        ("x \\in [-2,7]", "-2 \\\\le x \\\\le 7", True),  # a doubled backslash before a relation
        ("14{, }916", "14916", True), ("32{, }349", "32350", False),  # grouping written with spaces
    ],
)
def test_equations_inequalities_and_grouping_in_the_forms_of_math_verify_cases(prediction, reference, equal):
    assert is_equiv(prediction, reference) is equal


@pytest.mark.parametrize(
    ("text", "reference", "equal"),
    [
        # Real SmolLM2-135M-Instruct replies to "3*4=", "6*16=", "8-14=" (instructed "The final answer is <number>"):
        # worked arithmetic ending in its value is read by its last side, as math-verify reads `3*4 = 12`.
        ("The final answer is 3*4 = 12.", "12", True),
        ("The final answer is 6*16 = 92.", "96", False),
        ("The final answer is 8-14 = 1.", "-6", False),
        ("$\\boxed{3 \\times 4 = 12}$", "12", True),
        ("\\boxed{\\frac{1}{2} \\cdot 6 = 3}", "3", True),
        ("\\boxed{x + y = 12}", "12", False),  # an equation with unknowns is not a value
    ],
)
def test_worked_arithmetic_ending_in_its_value_is_scored_by_that_value(text, reference, equal):
    assert score([text], [reference]) == [1.0 if equal else 0.0]
