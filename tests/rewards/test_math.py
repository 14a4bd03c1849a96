"""rewards.math: extraction, the labelled equivalence corpus, batch scoring, and the hard time limit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rewards.math import IS_EQUIV_STATS, extract_answer, is_equiv, score
from rewards.math_pool import TIMEOUT, CheckPool

# The corpus format (repeated pieces expanded) is read by the benchmark's loader, so test and benchmark see one corpus.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_math import load_corpus  # noqa: E402
# sympy cannot finish this integral: a real check that runs until it is killed.
HANGS = (r"\int x^{x} \sin(x^x) dx", r"\int x^{x} \cos(x^x) dx")
CATEGORIES = {"integer", "decimal", "fraction", "mixed", "scientific", "percent", "radical", "pi", "algebra",
              "complex", "equation", "interval", "tuple", "set", "matrix", "degree", "units_text", "choice",
              "infinity", "rounding", "inequality", "adversarial"}


ROWS = load_corpus()


def test_corpus_covers_every_category_with_as_many_unequal_as_equal_rows():
    assert len(ROWS) >= 300
    equal = sum(row["equal"] for row in ROWS)
    assert len(ROWS) - equal >= equal
    assert {row["category"] for row in ROWS} == CATEGORIES
    for category in CATEGORIES - {"adversarial"}:
        labels = {row["equal"] for row in ROWS if row["category"] == category}
        assert labels == {True, False}, f"{category} needs both equal and unequal rows"


@pytest.fixture(scope="module")
def helper_started() -> None:
    """The first algebra check starts the helper process (not counted in the limit, see `is_equiv`)."""
    assert is_equiv("z^2+z", "z(z+1)")


@pytest.mark.parametrize("row", ROWS, ids=[f"{i}-{row['category']}" for i, row in enumerate(ROWS)])
def test_is_equiv_agrees_with_every_corpus_row(row, helper_started):
    limit = 2.0
    start = time.monotonic()
    assert is_equiv(row["prediction"], row["reference"], timeout=limit) is row["equal"]
    # The limit holds for every row (0.5 s of slack for killing the worker on a loaded machine).
    assert time.monotonic() - start < limit + 0.5


def test_score_agrees_with_the_corpus_on_full_solutions():
    rows = [row for row in ROWS if not row.get("adversarial")]
    texts = [f"We compute.\nFinal Answer: The final answer is ${row['prediction']}$. I hope it is correct."
             for row in rows]
    scores, stats = score(texts, [row["reference"] for row in rows], workers=2, timeout=5.0, return_stats=True)
    assert scores == [float(row["equal"]) for row in rows]
    assert (stats.n, stats.timeouts, stats.crashes) == (len(rows), 0, 0)
    assert 0 < stats.in_workers < len(rows)  # algebra went to the workers, plain numbers did not


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (r"so $x = \boxed{\frac{1}{2}}$", r"\frac{1}{2}"),
        (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
        (r"first \fbox{3} then \boxed{\sqrt{\frac{a}{b}}}", r"\sqrt{\frac{a}{b}}"),
        ("Final Answer: The final answer is $(1, 3]$. I hope it is correct.", "(1, 3]"),
        ("Final Answer: The final answer is $42$. I hope it is correct.\nSomething after.", "42"),
        (r"\boxed{7}. Final Answer: The final answer is $8$. I hope it is correct.", "8"),  # Minerva wins
        ("Janet has 3 + 4 = 7 eggs.\n#### 1,000", "1,000"),
        ("Hence the answer is $\\frac{3}{5}$.", r"\frac{3}{5}"),
        ("Adding, 12 + 30 = 42", "42"),
        ("no answer here", None),
        ("", None),
        (r"\boxed{unclosed", None),
        ("\\boxed{" * 50_000, None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_extract_answer_fallback_number_is_configurable():
    assert extract_answer("it is 42") == "42"
    assert extract_answer("it is 42", fallback_number=False) is None


def test_extract_answer_handles_a_megabyte_quickly():
    start = time.monotonic()
    assert extract_answer("x" * 1_000_000 + " so 5") == "5"
    assert extract_answer("{" * 1_000_000) is None
    assert time.monotonic() - start < 2.0


def test_decimals_are_exact_and_only_a_value_no_decimal_writes_rounds_to_a_decimal_reference():
    # A near miss must not score: under RL a policy would learn to answer 0.54 for 0.5.
    assert not is_equiv("0.54", "0.5") and not is_equiv("0.45", "0.5") and not is_equiv("3.1416", "3.14")
    assert not is_equiv(r"\frac{27}{50}", "0.5")  # 27/50 is the decimal 0.54
    assert is_equiv("0.50", "0.5") and is_equiv("0.5", r"\frac{1}{2}")  # the same number
    # A decimal reference may be the rounding of an exact value that has no finite decimal form.
    assert is_equiv(r"\frac{1}{3}", "0.33") and is_equiv(r"\pi", "3.14") and is_equiv(r"\sqrt{2}", "1.414")
    assert not is_equiv(r"\pi", "3.15") and not is_equiv(r"\frac{1}{3}", "0.34")
    # An approximation never equals the exact value; integers are exact.
    assert not is_equiv("0.33", r"\frac{1}{3}") and not is_equiv("1.7320508075688772", r"\sqrt{3}")
    assert not is_equiv("3^{45}+1", "3^{45}") and not is_equiv("2549", r"2.5 \times 10^{3}")
    assert is_equiv("0.3", "0.33", rel_tol=0.2)  # a looser tolerance on request


@pytest.mark.parametrize("junk", [None, 5, "", "   ", "\x00\ufffd", "1" * 1_000_000, "(" * 5000])
def test_is_equiv_returns_false_on_junk(junk):
    assert is_equiv(junk, "1") is False
    assert is_equiv("1", junk) is False


def test_a_hung_check_is_killed_scores_zero_and_is_counted():
    texts = [f"The answer is $\\boxed{{{HANGS[0]}}}$", "\\boxed{\\frac{\\sqrt{2}}{2}}"]
    start = time.monotonic()
    scores, stats = score(texts, [HANGS[1], r"\frac{1}{\sqrt{2}}"], workers=2, timeout=1.0, return_stats=True)
    assert time.monotonic() - start < 3.0
    assert scores == [0.0, 1.0]
    assert (stats.timeouts, stats.crashes) == (1, 0)
    assert stats.slowest < 1.5
    # The pool replaced the killed worker and keeps working.
    assert score([r"\boxed{x^2-1}"], ["(x-1)(x+1)"], workers=2, timeout=5.0) == [1.0]


def test_the_killed_worker_process_is_really_gone():
    pool = CheckPool(workers=1, preload=("rewards.math_preload",))
    try:
        pid = pool.workers[0].pid
        from rewards.math import _check

        results, stats = pool.run([(_check, (*HANGS, 0.0))], timeout=1.0)
        assert results == [TIMEOUT] and stats.timeouts == 1
        deadline = time.monotonic() + 5  # the zygote reaps the killed worker asynchronously
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        pool.close()


def test_is_equiv_time_limit_holds_in_threads():
    """No SIGALRM: the limit works off the main thread, and several threads may check at once."""
    results: dict[int, tuple[bool, float]] = {}

    def check(slot: int, pair: tuple[str, str]) -> None:
        start = time.monotonic()
        results[slot] = (is_equiv(*pair, timeout=1.0), time.monotonic() - start)

    before = IS_EQUIV_STATS.timeouts
    threads = [threading.Thread(target=check, args=(0, HANGS)),
               threading.Thread(target=check, args=(1, ("(x+1)^2", "x^2+2x+1")))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results[0][0] is False and results[0][1] < 2.5
    assert results[1][0] is True
    assert IS_EQUIV_STATS.timeouts == before + 1


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="references"):
        score(["\\boxed{1}"], [])
    with pytest.raises(ValueError, match="timeout"):
        is_equiv("1", "1", timeout=0)


def test_importing_the_module_does_not_import_sympy():
    code = "import sys, rewards.math; print('sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_parse_expr_is_never_evaluated():
    """Model output must never reach eval(): a Python expression is just an unequal answer."""
    marker = Path("/tmp/score_math_eval_marker")
    marker.unlink(missing_ok=True)
    payload = f"__import__('pathlib').Path('{marker}').touch()"
    assert not is_equiv(payload, "0")
    assert score([f"\\boxed{{{payload}}}"], ["0"]) == [0.0]
    assert not marker.exists()
