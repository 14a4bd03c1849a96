"""Side-by-side benchmark of math answer checkers on the labelled corpus tests/data/math_equiv.jsonl.

Checkers:
- `rewards.math.is_equiv` (ours), called in this process; and `rewards.math.score` on full solutions (the answer
  wrapped in the SCoRe "Final Answer: ..." sentence) in a pool of worker processes.
- math-verify (`math_verify.parse` + `math_verify.verify`, default settings), if installed.
- The Hendrycks MATH `is_equiv` string normaliser (Hendrycks et al. 2021, modeling/math_equivalence.py), written out
  below as the well-known reference baseline.

Ordinary rows are timed in this process, one pass each (checks/s). Adversarial rows run one at a time in a killable
worker process (`rewards.math_pool.CheckPool`) with a hard limit, so a baseline that hangs cannot stall the
benchmark; ours also runs them in-process through `is_equiv`, which must return within its own `timeout`.

Then the independent corpora (tests/data/math_independent.jsonl, the tuning split, and math_holdout.jsonl, the
never-tuned split; built by benchmarks/make_math_corpora.py), each checker on every row: rows with a full solution
text go through each checker's own extraction (ours: `score`; math-verify: `parse` of the text).

Run: python benchmarks/bench_math.py [--workers 2] [--timeout 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rewards.math import IS_EQUIV_STATS, is_equiv, score
from rewards.math_pool import TIMEOUT, CheckPool

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "math_equiv.jsonl"


def load_corpus(path: Path = CORPUS) -> list[dict]:
    """Rows of the corpus; a field given as [[piece, times], ...] is expanded (keeps huge adversarial rows small)."""
    rows = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for key in ("prediction", "reference"):
            if isinstance(row[key], list):
                row[key] = "".join(piece * times for piece, times in row[key])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Baseline: the Hendrycks MATH string normaliser (reference implementation, reproduced for comparison only).
# ---------------------------------------------------------------------------------------------------------------


def _hendrycks_fix_fracs(string: str) -> str:
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if substr and substr[0] == "{":
            new_str += substr
        else:
            if len(substr) < 2:
                return string
            a, b = substr[0], substr[1]
            if b != "{":
                new_str += "{" + a + "}{" + b + "}" + substr[2:]
            else:
                new_str += "{" + a + "}" + b + substr[2:]
    return new_str


def _hendrycks_fix_a_slash_b(string: str) -> str:
    if len(string.split("/")) != 2:
        return string
    a, b = string.split("/")
    try:
        a, b = int(a), int(b)
        assert string == f"{a}/{b}"
        return "\\frac{" + str(a) + "}{" + str(b) + "}"
    except (ValueError, AssertionError):
        return string


def _hendrycks_remove_right_units(string: str) -> str:
    if "\\text{ " in string:
        return string.split("\\text{ ")[0]
    return string


def _hendrycks_fix_sqrt(string: str) -> str:
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        if split and split[0] != "{":
            new_string += "\\sqrt{" + split[0] + "}" + split[1:]
        else:
            new_string += "\\sqrt" + split
    return new_string


def hendrycks_strip_string(string: str) -> str:
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = _hendrycks_remove_right_units(string)
    string = string.replace("\\%", "").replace("%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if not string:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:
        string = string.split("=")[1]
    string = _hendrycks_fix_sqrt(string)
    string = string.replace(" ", "")
    string = _hendrycks_fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _hendrycks_fix_a_slash_b(string)


def hendrycks_is_equiv(prediction: str, reference: str) -> bool:
    try:
        return hendrycks_strip_string(prediction) == hendrycks_strip_string(reference)
    except Exception:
        return prediction == reference


# ---------------------------------------------------------------------------------------------------------------
# Baseline: math-verify.
# ---------------------------------------------------------------------------------------------------------------


def math_verify_is_equiv(prediction: str, reference: str) -> bool:
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs every timeout with the whole input

    try:
        return bool(verify(parse(f"${reference}$"), parse(f"${prediction}$")))
    except Exception:
        return False


def ours_is_equiv(prediction: str, reference: str) -> bool:
    return is_equiv(prediction, reference, timeout=5.0)


def solution_text(answer: str) -> str:
    return f"Let me solve it.\nFinal Answer: The final answer is ${answer}$. I hope it is correct."


def _ordinary(checker, rows) -> tuple[float, float]:
    start = time.perf_counter()
    agree = sum(checker(row["prediction"], row["reference"]) == row["equal"] for row in rows)
    elapsed = time.perf_counter() - start
    return agree / len(rows), len(rows) / elapsed


def _adversarial(checker, rows, limit: float) -> tuple[float, float, int]:
    """(agreement, slowest seconds, checks killed at `limit`) with each row in a killable worker."""
    pool = CheckPool(workers=1, preload=("rewards.math_preload",))
    agree, slowest, hangs = 0, 0.0, 0
    try:
        for row in rows:
            results, stats = pool.run([(checker, (row["prediction"], row["reference"]))], timeout=limit)
            slowest = max(slowest, stats.seconds)
            hangs += results[0] == TIMEOUT
            agree += (results[0] is True) == row["equal"]
    finally:
        pool.close()
    return agree / len(rows), slowest, hangs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0, help="our per-check limit (seconds)")
    parser.add_argument("--baseline-limit", type=float, default=10.0, help="kill a baseline check after this long")
    args = parser.parse_args()

    rows = load_corpus()
    ordinary = [row for row in rows if not row.get("adversarial")]
    adversarial = [row for row in rows if row.get("adversarial")]
    print(f"corpus: {len(rows)} rows ({sum(r['equal'] for r in rows)} equal), "
          f"{len(ordinary)} ordinary, {len(adversarial)} adversarial")

    # Warm up (imports, parser tables, worker pools) on expressions that are not in the corpus.
    warm = [(r"\frac{\sqrt{7}}{3}", r"\frac{7}{3\sqrt{7}}"), ("z^2+z", "z(z+1)")]
    for p, r in warm:
        is_equiv(p, r), math_verify_is_equiv(p, r)
    score([solution_text(p) for p, _ in warm] * args.workers, [r for _, r in warm] * args.workers,
          workers=args.workers, timeout=args.timeout)

    table = []
    for name, checker in [("Hendrycks MATH `is_equiv` (string normaliser)", hendrycks_is_equiv),
                          ("math-verify 0.9 `verify(parse(..))`", math_verify_is_equiv)]:
        agreement, rate = _ordinary(checker, ordinary)
        adv_agreement, slowest, hangs = _adversarial(checker, adversarial, args.baseline_limit)
        table.append((name, agreement, rate, adv_agreement, slowest, hangs))

    # Ours, in this process: is_equiv enforces its own limit, so the adversarial rows run here too.
    agreement, rate = _ordinary(ours_is_equiv, ordinary)
    IS_EQUIV_STATS.__init__()
    adv_agree, slowest = 0, 0.0
    for row in adversarial:
        start = time.perf_counter()
        adv_agree += is_equiv(row["prediction"], row["reference"], timeout=args.timeout) == row["equal"]
        slowest = max(slowest, time.perf_counter() - start)
    table.append(("**ours** `rewards.math.is_equiv` (in-process fast path + 1 helper process)", agreement, rate,
                  adv_agree / len(adversarial), slowest, IS_EQUIV_STATS.timeouts))

    start = time.perf_counter()
    scores, stats = score([solution_text(r["prediction"]) for r in ordinary], [r["reference"] for r in ordinary],
                          workers=args.workers, timeout=args.timeout, return_stats=True)
    rate = len(ordinary) / (time.perf_counter() - start)
    agreement = sum((s == 1.0) == r["equal"] for s, r in zip(scores, ordinary)) / len(ordinary)
    adv_scores, adv_stats = score([solution_text(r["prediction"]) for r in adversarial],
                                  [r["reference"] for r in adversarial], workers=args.workers, timeout=args.timeout,
                                  return_stats=True, fallback_number=False)
    adv_agreement = sum((s == 1.0) == r["equal"] for s, r in zip(adv_scores, adversarial)) / len(adversarial)
    table.append((f"**ours** `rewards.math.score` ({args.workers} worker processes, full solutions)", agreement, rate,
                  adv_agreement, adv_stats.slowest, adv_stats.timeouts))

    print()
    print(f"| checker | agreement, all {len(rows)} rows | agreement, {len(ordinary)} ordinary | checks/s, ordinary "
          f"| agreement, {len(adversarial)} adversarial | slowest adversarial check (s) | checks killed at the limit |")
    print("|---|---|---|---|---|---|---|")
    for name, agreement, rate, adv_agreement, slowest, killed in table:
        both = (agreement * len(ordinary) + adv_agreement * len(adversarial)) / len(rows)
        print(f"| {name} | {both:.1%} | {agreement:.1%} | {rate:,.0f} | {adv_agreement:.1%} | {slowest:.2f} | {killed} |")
    print()
    print(f"Limits: ours {args.timeout:g} s per check (killed and scored 0 past it); baselines run in a killable "
          f"worker and are stopped after {args.baseline_limit:g} s. `score` on the ordinary rows: {stats.in_workers} "
          f"checks needed algebra, {stats.timeouts} timeouts, {stats.crashes} crashes; on the adversarial rows: "
          f"{adv_stats.timeouts} killed at the limit, {adv_stats.crashes} crashes.")


def independent(args) -> None:
    """Agreement with the labels of the independent corpora, side by side, and checks/s."""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)

    def math_verify_row(row) -> bool:
        try:
            pred = parse(row["text"]) if "text" in row else parse(f"${row['prediction']}$")
            return bool(verify(parse(f"${row['reference']}$"), pred))
        except Exception:
            return False

    def hendrycks_row(row) -> bool:
        from rewards.math import extract_answer

        answer = extract_answer(row["text"]) if "text" in row else row["prediction"]
        return answer is not None and hendrycks_is_equiv(answer, row["reference"])

    print()
    print("| corpus | rows | checker | agreement | false positives | checks/s |")
    print("|---|---:|---|---:|---:|---:|")
    for name in ("math_independent.jsonl", "math_holdout.jsonl"):
        rows = [json.loads(line) for line in (CORPUS.parent / name).read_text().splitlines()[1:]]
        label = "never-tuned" if "holdout" in name else "tuning"
        texts = [row.get("text") or solution_text(row["prediction"]) for row in rows]
        start = time.perf_counter()
        ours = [s == 1.0 for s in score(texts, [r["reference"] for r in rows], workers=args.workers, timeout=args.timeout)]
        ours_rate = len(rows) / (time.perf_counter() - start)
        results = [("**ours** `rewards.math.score`", ours, ours_rate)]
        for checker_name, checker in (("math-verify 0.9", math_verify_row), ("Hendrycks `is_equiv`", hendrycks_row)):
            start = time.perf_counter()
            got = [checker(row) for row in rows]
            results.append((checker_name, got, len(rows) / (time.perf_counter() - start)))
        for checker_name, got, rate in results:
            agree = sum(g == row["equal"] for g, row in zip(got, rows)) / len(rows)
            false_pos = sum(g and not row["equal"] for g, row in zip(got, rows))
            print(f"| {name} ({label}) | {len(rows)} | {checker_name} | {agree:.1%} | {false_pos} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
    independent(argparse.Namespace(workers=2, timeout=5.0))
