"""Which task suits SmolLM2-135M-Instruct? Base-model Acc@t1 / Acc@t2 on offline candidate tasks.

The real-model experiment (benchmarks/real_model.py) needs a task where the base model is neither hopeless nor
saturated (Acc@t1 between 15% and 70%). This script measures the base model on each candidate, two attempts, with
`score eval`'s own evaluation code, on the TRAIN split of every candidate (the held-out split stays unseen: wording
and task are chosen here). One vLLM engine (bf16) serves every candidate.

    python benchmarks/real_model_survey.py --limit 100 --temperatures 0 1 --out runs/survey
    python benchmarks/real_model_survey.py --only word_problems arithmetic_2d   # a subset
    python benchmarks/real_model_survey.py --rescore   # re-score the stored samples with the current reward code

Writes OUT/<candidate>_T<temperature>/ (eval.json, samples.jsonl, as `score eval` does) and OUT/survey.json,
OUT/survey.md (the table). Also reports Acc@t1 under strict_format (only "The final answer is ..." or \\boxed{}
counts) for the math-like candidates, read back from the same samples.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

ANSWER_LINE = "Compute the result. Reply with one line: The final answer is <number>."
"""The answer-format system prompt (chosen on the train split of 2-digit arithmetic: it cut answers to ~11 tokens)."""

CANDIDATES: dict[str, dict[str, Any]] = {
    "arithmetic_1d": {"env": "arithmetic", "kwargs": {"digits": 1, "ops": "+-*", "num_train": 200, "num_test": 50},
                      "max_new_tokens": 64},
    "arithmetic_2d": {"env": "arithmetic", "kwargs": {"digits": 2, "ops": "+-", "num_train": 2000, "num_test": 500},
                      "max_new_tokens": 64},
    "arithmetic_2d_mul": {"env": "arithmetic", "kwargs": {"digits": 2, "ops": "*", "num_train": 2000,
                                                          "num_test": 500}, "max_new_tokens": 64},
    "arithmetic_3d": {"env": "arithmetic", "kwargs": {"digits": 3, "ops": "+-", "num_train": 2000, "num_test": 500},
                      "max_new_tokens": 64},
    "arithmetic_small": {"env": "arithmetic", "kwargs": {"max_operand": 20, "ops": "+-*", "num_train": 823,
                                                         "num_test": 500, "system_prompt": ANSWER_LINE},
                         "max_new_tokens": 48},
    "arithmetic_small_words": {"env": "arithmetic", "kwargs": {"max_operand": 20, "ops": "+-*", "num_train": 823,
                                                               "num_test": 500, "system_prompt": ANSWER_LINE,
                                                               "prompt_template": "What is {a} {op_word} {b}?"},
                               "max_new_tokens": 48},
    "arithmetic_small_spaced": {"env": "arithmetic", "kwargs": {"max_operand": 20, "ops": "+-*", "num_train": 823,
                                                                "num_test": 500, "system_prompt": ANSWER_LINE,
                                                                "prompt_template": "{a} {op} {b} = ?"},
                                "max_new_tokens": 48},
    "arithmetic_1d_answer_line": {"env": "arithmetic", "kwargs": {"max_operand": 9, "ops": "+-*", "num_train": 200,
                                                                  "num_test": 100, "system_prompt": ANSWER_LINE},
                                  "max_new_tokens": 48},
    "word_problems": {"env": "word_problems", "kwargs": {}, "max_new_tokens": 160},
    "word_problems_small": {"env": "word_problems", "kwargs": {"max_value": 20}, "max_new_tokens": 160},
    "rg_basic_arithmetic": {"env": "reasoning_gym", "kwargs": {"tasks": "basic_arithmetic", "size": 200},
                            "max_new_tokens": 160},
    "rg_chain_sum": {"env": "reasoning_gym", "kwargs": {"tasks": "chain_sum", "size": 200}, "max_new_tokens": 160},
    "humaneval": {"env": "humaneval", "kwargs": {}, "max_new_tokens": 256, "split": "test"},
}
"""name -> env, env.kwargs, token budget per attempt; `split` (default train) is where the base model is measured.
HumanEval has only one split (164 problems): it is measured there and would need another held-out set if chosen."""


def strict_accuracy(records: list[dict[str, Any]], attempt: int) -> float | None:
    """Acc@t`attempt` when only the instructed answer forms count (None when the references are not strings)."""
    from rewards import math as math_reward

    hits = []
    for record in records:
        if not isinstance(record["reference"], str):
            return None
        answer = math_reward.extract_answer(record["attempts"][attempt - 1]["text"], strict=True)
        hits.append(answer is not None and math_reward.is_equiv(answer, record["reference"]))
    return sum(hits) / len(hits) if hits else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/survey")
    parser.add_argument("--limit", type=int, default=100, help="problems per candidate (the first of its split)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--only", nargs="*", default=None, help="candidate names (default: all)")
    parser.add_argument("--model", default=None, help="model folder (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--engine", default="vllm", choices=["vllm", "hf"])
    parser.add_argument("--dtype", default="float32", help="vLLM dtype (float32: this CPU has no bf16 instructions)")
    parser.add_argument("--rescore", action="store_true",
                        help="no generation: re-score OUT's stored samples with the current reward code, rewrite the table")
    parser.add_argument("--eager", action=argparse.BooleanOptionalAction, default=True,
                        help="vLLM without torch.compile (default; a loaded 2-core machine compiles for many minutes)")
    args = parser.parse_args()
    if args.rescore:
        rescore(Path(args.out))
        return

    from transformers import AutoTokenizer

    from envs import make_env
    from score import report
    from score.engines import make_engine
    from score.evaluate import GREEDY, evaluate, sample_records
    from score.models import smollm2_path
    from score.rollout import ChatRenderer

    model = args.model or str(smollm2_path())
    names = args.only or list(CANDIDATES)
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise SystemExit(f"--only: unknown candidate(s) {unknown}; known: {sorted(CANDIDATES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "survey.json"
    table = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    renderer = ChatRenderer(AutoTokenizer.from_pretrained(model))
    engine = (make_engine("hf", model, dtype=args.dtype) if args.engine == "hf" else
              make_engine("vllm", model, dtype=args.dtype, kv_cache_memory_bytes=1 << 30, enforce_eager=args.eager))
    try:
        for name in names:
            spec = CANDIDATES[name]
            env = make_env(spec["env"], **spec["kwargs"])
            split = spec.get("split", "train")
            problems = env.load(split)[: args.limit]
            for temperature in args.temperatures:
                params = dataclasses.replace(GREEDY, temperature=temperature, max_new_tokens=spec["max_new_tokens"])
                started = time.perf_counter()
                result = evaluate(env, problems, renderer, engine.generate, params=params, chunk_size=256,
                                  show_progress=True)
                seconds = time.perf_counter() - started
                summary = result.summary()
                summary["config"] = {"model": model, "env": spec["env"], "env_kwargs": spec["kwargs"], "split": split,
                                     **dataclasses.asdict(params)}
                records = sample_records(result, env)
                folder = out / f"{name}_T{temperature:g}"
                report.write_eval(folder, summary, records)
                tokens = sum(a["num_tokens"] for r in records for a in r["attempts"])
                row = {"candidate": name, "env": spec["env"], "env_kwargs": spec["kwargs"], "split": split,
                       "temperature": temperature, "n": summary["n"], "acc_t1": summary["acc_t1"],
                       "acc_t2": summary["acc_t2"], "delta": summary["delta"], "delta_i2c": summary["delta_i2c"],
                       "delta_c2i": summary["delta_c2i"], "ci": summary["ci"],
                       "strict_acc_t1": strict_accuracy(records, 1) if spec["env"] != "humaneval" else None,
                       "mean_tokens": tokens / (2 * len(records)),
                       "truncated": sum(not a["finished"] for r in records for a in r["attempts"]) / (2 * len(records)),
                       "seconds": seconds, "load": os.getloadavg()[0]}
                table[f"{name}_T{temperature:g}"] = row
                summary_path.write_text(json.dumps(table, indent=2) + "\n")
                print(f"{name} T={temperature:g}: acc_t1 {row['acc_t1']:.3f} acc_t2 {row['acc_t2']:.3f} "
                      f"strict_t1 {row['strict_acc_t1']} tokens/attempt {row['mean_tokens']:.0f} "
                      f"truncated {row['truncated']:.2f} {seconds:.0f} s", flush=True)
    finally:
        engine.shutdown()
    (out / "survey.md").write_text(markdown(table))
    print(markdown(table))


def rescore(out: Path) -> None:
    """Recompute every row of OUT/survey.json from its stored samples with the environment's current reward (the
    generations stay as they were): a checker fix shows in the table without rerunning the model."""
    from envs import make_env
    from score import report
    from score.evaluate import summarize

    summary_path = out / "survey.json"
    table = json.loads(summary_path.read_text())
    for key, row in table.items():
        env = make_env(row["env"], **row["env_kwargs"])
        problems = {p.id: p for p in env.load(row["split"])}
        records = report.read_samples(out / key)
        for record in records:
            for attempt in record["attempts"]:
                attempt["reward"] = env.reward(attempt["text"], problems[record["problem_id"]])
        rewards = [[[a["reward"] for a in r["attempts"]]] for r in records]
        summary = summarize(rewards)
        row.update({name: summary[name] for name in ("acc_t1", "acc_t2", "delta", "delta_i2c", "delta_c2i", "ci")})
        row["strict_acc_t1"] = strict_accuracy(records, 1) if row["env"] != "humaneval" else None
        print(f"{key}: acc_t1 {row['acc_t1']:.3f} acc_t2 {row['acc_t2']:.3f}", flush=True)
    summary_path.write_text(json.dumps(table, indent=2) + "\n")
    (out / "survey.md").write_text(markdown(table))
    print(markdown(table))


def markdown(table: dict[str, dict[str, Any]]) -> str:
    """The candidate table: percentages with 95% bootstrap intervals."""
    def pct(row: dict[str, Any], key: str) -> str:
        low, high = row["ci"][key]
        return f"{100 * row[key]:.1f} [{100 * low:.1f}, {100 * high:.1f}]"

    lines = ["| candidate | split | T | n | Acc@t1 | Acc@t2 | Δ(t1,t2) | Δi→c | Δc→i | Acc@t1 strict | tokens/attempt "
             "| truncated |", "|---|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|"]
    for row in table.values():
        strict = "–" if row["strict_acc_t1"] is None else f"{100 * row['strict_acc_t1']:.1f}"
        lines.append(f"| {row['candidate']} | {row['split']} | {row['temperature']:g} | {row['n']} | "
                     f"{pct(row, 'acc_t1')} | {pct(row, 'acc_t2')} | {pct(row, 'delta')} | "
                     f"{100 * row['delta_i2c']:.1f} | {100 * row['delta_c2i']:.1f} | {strict} | "
                     f"{row['mean_tokens']:.0f} | {100 * row['truncated']:.0f}% |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
