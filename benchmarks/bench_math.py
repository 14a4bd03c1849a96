"""Side-by-side benchmark of math answer checkers on the labelled corpora, in one run.

Checkers:
- ours: `rewards.math.is_equiv`, called in this process, and `rewards.math.score` on full solutions (extraction,
  the in-process fast path, and a pool of worker processes for the checks that need algebra).
- math-verify (`math_verify.parse` + `math_verify.verify`, default settings).
- The Hendrycks MATH `is_equiv` string normaliser (Hendrycks et al. 2021, modeling/math_equivalence.py), written out
  below as the well-known reference baseline (it has no extraction of its own: on full solutions it gets ours).

Corpora:
1. tests/data/math_equiv.jsonl, the project's first corpus (ordinary and adversarial rows). Ordinary rows are timed
   in this process, one pass each; adversarial rows run one at a time in a killable worker process
   (`rewards.math_pool.CheckPool`) so that a baseline that hangs cannot stall the benchmark; ours runs them through
   `is_equiv`, which must return within its own `timeout`. For `score` it also prints the CPU seconds per check of
   this process and of its worker processes, a figure that does not depend on how busy the machine is.
2. tests/data/math_independent.jsonl (tuning split) and tests/data/math_holdout.jsonl (never-tuned split), built
   by benchmarks/make_math_corpora.py from sources the checker was not written against. Every checker sees every
   row; rows with a full solution text go through each checker's own extraction. Each checker runs on
   `--workers` processes (ours: `score`; the baselines: a killable pool), so checks/s compare like with like.
   "No-FP" counts the false positives in the categories where none is allowed (integer, approximation, units).

Run: python benchmarks/bench_math.py [--workers 2] [--timeout 5] [--baseline-limit 20] [--tuning-only]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rewards.math import IS_EQUIV_STATS, extract_answer, is_equiv, score
from rewards.math_pool import TIMEOUT, CheckPool

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
CORPUS = DATA / "math_equiv.jsonl"
INDEPENDENT = {"math_independent.jsonl": "tuning split", "math_holdout.jsonl": "never-tuned split"}
# Categories of the independent corpora where a false positive is a reward a policy could farm.
NO_FALSE_POSITIVES = ("issue:integer", "issue:approximation", "issue:units")


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


def load_independent(name: str) -> list[dict]:
    """Rows of an independent corpus (its first line describes it)."""
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()[1:]]


def solution_text(answer: str) -> str:
    return f"Let me solve it.\nFinal Answer: The final answer is ${answer}$. I hope it is correct."


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
    try:
        return math_verify_row({"prediction": prediction, "reference": reference})
    except Exception:  # noqa: BLE001 - in this process a baseline's error is a wrong answer, not a stop
        return False


def math_verify_row(row: dict) -> bool:
    """math-verify on a row: its own extraction on a full solution text, the bare answer in `$..$` otherwise."""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs every timeout with the whole input
    pred = parse(row["text"]) if "text" in row else parse(f"${row['prediction']}$")
    return bool(verify(parse(f"${row['reference']}$"), pred))


def hendrycks_row(row: dict) -> bool:
    answer = extract_answer(row["text"]) if "text" in row else row["prediction"]
    return answer is not None and hendrycks_is_equiv(answer, row["reference"])


def ours_is_equiv(prediction: str, reference: str) -> bool:
    return is_equiv(prediction, reference, timeout=5.0)


# ---------------------------------------------------------------------------------------------------------------
# Measuring.
# ---------------------------------------------------------------------------------------------------------------


def _ordinary(checker, rows) -> tuple[float, float]:
    start = time.perf_counter()
    agree = sum(checker(row["prediction"], row["reference"]) == row["equal"] for row in rows)
    elapsed = time.perf_counter() - start
    return agree / len(rows), len(rows) / elapsed


def _baseline_pool(workers: int) -> CheckPool:
    # The workers import the baselines from this file as the module `bench_math` (never as `__main__`).
    return CheckPool(workers, preload=("rewards.math_preload", "math_verify", "bench_math"))


def _adversarial(checker, rows, limit: float) -> tuple[float, float, int, int]:
    """(agreement, slowest seconds, checks killed at `limit`, exceptions) with each row in a killable worker."""
    pool = _baseline_pool(1)
    agree, slowest, hangs, errors = 0, 0.0, 0, 0
    try:
        for row in rows:
            results, stats = pool.run([(checker, (row["prediction"], row["reference"]))], timeout=limit)
            slowest = max(slowest, stats.seconds)
            hangs += results[0] == TIMEOUT
            errors += not isinstance(results[0], bool) and results[0] != TIMEOUT
            agree += (results[0] is True) == row["equal"]
    finally:
        pool.close()
    return agree / len(rows), slowest, hangs, errors


def _children_cpu_seconds() -> float:
    """User + system CPU seconds used so far by the live descendants of this process (the checkers' worker
    processes), from Linux's /proc; 0 elsewhere."""
    parents, used = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid], used[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    ours, total, grew = {os.getpid()}, 0, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in ours and pid not in ours:
                ours.add(pid)
                total += used[pid]
                grew = True
    return total / os.sysconf("SC_CLK_TCK")


def _load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def equiv_corpus(args) -> None:
    """Corpus 1: the project's first corpus, ordinary and adversarial rows."""
    rows = load_corpus()
    ordinary = [row for row in rows if not row.get("adversarial")]
    adversarial = [row for row in rows if row.get("adversarial")]
    print(f"## {CORPUS.name}: {len(rows)} rows ({sum(r['equal'] for r in rows)} equal), "
          f"{len(ordinary)} ordinary, {len(adversarial)} adversarial ({_load()})")

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
        table.append((name, agreement, rate, *_adversarial(checker, adversarial, args.baseline_limit)))

    # Ours, in this process: is_equiv enforces its own limit, so the adversarial rows run here too.
    agreement, rate = _ordinary(ours_is_equiv, ordinary)
    IS_EQUIV_STATS.__init__()
    adv_agree, slowest = 0, 0.0
    for row in adversarial:
        start = time.perf_counter()
        adv_agree += is_equiv(row["prediction"], row["reference"], timeout=args.timeout) == row["equal"]
        slowest = max(slowest, time.perf_counter() - start)
    table.append(("**ours** `rewards.math.is_equiv` (in-process fast path + 1 helper process)", agreement, rate,
                  adv_agree / len(adversarial), slowest, IS_EQUIV_STATS.timeouts, IS_EQUIV_STATS.crashes))

    cpu_start, workers_cpu_start, start = time.process_time(), _children_cpu_seconds(), time.perf_counter()
    scores, stats = score([solution_text(r["prediction"]) for r in ordinary], [r["reference"] for r in ordinary],
                          workers=args.workers, timeout=args.timeout, return_stats=True)
    rate = len(ordinary) / (time.perf_counter() - start)
    caller_cpu, workers_cpu = time.process_time() - cpu_start, _children_cpu_seconds() - workers_cpu_start
    agreement = sum((s == 1.0) == r["equal"] for s, r in zip(scores, ordinary)) / len(ordinary)
    adv_scores, adv_stats = score([solution_text(r["prediction"]) for r in adversarial],
                                  [r["reference"] for r in adversarial], workers=args.workers, timeout=args.timeout,
                                  return_stats=True, fallback_number=False)
    adv_agreement = sum((s == 1.0) == r["equal"] for s, r in zip(adv_scores, adversarial)) / len(adversarial)
    table.append((f"**ours** `rewards.math.score` ({args.workers} worker processes, full solutions)", agreement, rate,
                  adv_agreement, adv_stats.slowest, adv_stats.timeouts, adv_stats.crashes))

    print()
    print(f"| checker | agreement, all {len(rows)} rows | agreement, {len(ordinary)} ordinary | checks/s, ordinary "
          f"| agreement, {len(adversarial)} adversarial | slowest adversarial check (s) | killed at the limit "
          "| exceptions |")
    print("|---|---|---|---|---|---|---|---|")
    for name, agreement, rate, adv_agreement, slowest, killed, errors in table:
        both = (agreement * len(ordinary) + adv_agreement * len(adversarial)) / len(rows)
        print(f"| {name} | {both:.1%} | {agreement:.1%} | {rate:,.0f} | {adv_agreement:.1%} | {slowest:.2f} | "
              f"{killed} | {errors} |")
    print()
    print(f"Limits: ours {args.timeout:g} s per check (killed and scored 0 past it); baselines run in a killable "
          f"worker and are stopped after {args.baseline_limit:g} s. `score` on the {len(ordinary)} ordinary rows: "
          f"{stats.in_workers} checks needed algebra (worker processes), {stats.timeouts} timeouts, {stats.crashes} "
          f"crashes; CPU per check {1000 * caller_cpu / len(ordinary):.2f} ms in this process + "
          f"{1000 * workers_cpu / len(ordinary):.2f} ms in the workers. Adversarial rows: {adv_stats.timeouts} "
          f"killed at the limit, {adv_stats.crashes} crashes. ({_load()})")


def independent_corpora(args) -> None:
    """Corpus 2: agreement with the labels of the independent corpora, side by side, with checks/s."""
    print()
    print(f"## Independent corpora ({_load()})")
    print()
    print("| corpus | rows | checker | agreement | false positives | no-FP categories: false positives "
          "| killed at the limit / exceptions | checks/s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    pool = _baseline_pool(args.workers)
    try:
        for name, label in INDEPENDENT.items():
            if args.tuning_only and "never-tuned" in label:
                continue
            rows = load_independent(name)
            texts = [row.get("text") or solution_text(row["prediction"]) for row in rows]
            start = time.perf_counter()
            scores, stats = score(texts, [r["reference"] for r in rows], workers=args.workers, timeout=args.timeout,
                                  return_stats=True)
            results = [("**ours** `rewards.math.score`", [s == 1.0 for s in scores], time.perf_counter() - start,
                        stats.timeouts, stats.crashes)]
            for checker_name, checker in (("math-verify 0.9", math_verify_row), ("Hendrycks `is_equiv`", hendrycks_row)):
                start = time.perf_counter()
                got, pool_stats = pool.run([(checker, (row,)) for row in rows], timeout=args.baseline_limit)
                errors = sum(not isinstance(g, bool) and g != TIMEOUT for g in got)
                results.append((checker_name, [g is True for g in got], time.perf_counter() - start,
                                pool_stats.timeouts, errors))
            for checker_name, got, seconds, killed, errors in results:
                agree = sum(g == row["equal"] for g, row in zip(got, rows))
                false_pos = [row for g, row in zip(got, rows) if g and not row["equal"]]
                no_fp = sum(row["category"].startswith(NO_FALSE_POSITIVES) for row in false_pos)
                print(f"| {name} ({label}) | {len(rows):,} | {checker_name} | {agree / len(rows):.1%} "
                      f"({agree:,}) | {len(false_pos)} | {no_fp} | {killed} / {errors} | {len(rows) / seconds:,.0f} |")
    finally:
        pool.close()
    print()
    print(f"Each checker on {args.workers} processes; baselines killed after {args.baseline_limit:g} s, ours after "
          f"{args.timeout:g} s. ({_load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0, help="our per-check limit (seconds)")
    parser.add_argument("--baseline-limit", type=float, default=20.0,
                        help="kill a baseline check after this long (math-verify's own limits: 5 s to parse, 5 s to "
                             "verify)")
    parser.add_argument("--tuning-only", action="store_true",
                        help="leave out the never-tuned split (while developing the checker: that split is measured "
                             "once, at the end, and the checker is never adjusted after looking at its failures)")
    args = parser.parse_args()
    # The baselines' worker processes import this file as the module `bench_math`.
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    equiv_corpus(args)
    independent_corpora(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_math  # run as the module `bench_math`, the name the baselines' workers import them by

    bench_math.main()
