"""`score` command line: train, eval, compare, plot, tiny-model."""

from __future__ import annotations

import argparse
import sys

from score.config import ConfigError


def _train(args: argparse.Namespace) -> int:
    from score.config import load_config
    from score.train import train

    cfg = load_config(args.config, args.overrides)
    train(cfg)
    return 0


def _tiny_model(args: argparse.Namespace) -> int:
    from score.tiny import build_tiny_model, default_corpus

    print(build_tiny_model(args.out, default_corpus(), seed=args.seed))
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    from score.engines import SamplingParams
    from score.evaluate import run_eval

    try:
        env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
        engine_kwargs = json.loads(args.engine_kwargs) if args.engine_kwargs else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"--env-kwargs / --engine-kwargs must be a JSON object, e.g. '{{\"digits\": 1}}' ({err})")
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                            seed=args.seed)
    run_eval(args.model, args.env, args.out, env_kwargs=env_kwargs, split=args.split, limit=args.limit,
             attempts=args.attempts, samples=args.samples, params=params, engine=args.engine,
             engine_kwargs={"dtype": args.dtype, **engine_kwargs}, baseline=args.baseline,
             scaling_budget=args.scaling, scaling_temperature=args.scaling_temperature, resamples=args.resamples,
             confidence=args.confidence, plots=not args.no_plots)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from score.report import compare_dirs, compare_table, write_json

    comparison = compare_dirs(Path(args.dir_a), Path(args.dir_b), resamples=args.resamples,
                              confidence=args.confidence, seed=args.seed)
    label_a, label_b = args.labels or (Path(args.dir_a).name, Path(args.dir_b).name)
    table = compare_table(comparison, label_a, label_b)
    print(f"{comparison['n']} problems; paired bootstrap, {int(100 * args.confidence)}% CI; * = interval excludes 0")
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "compare.json", comparison)
        (out / "compare.md").write_text(table + "\n")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from score.plots import plot_dir

    for path in plot_dir(args.run_dir, args.out):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="score", description="Self-correction RL (SCoRe) on Ray and vLLM.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="run Stage I or Stage II from a YAML config")
    p.add_argument("config", help="YAML config (see launch/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. algo.alpha=5 rollout.n=4")
    p.set_defaults(func=_train)

    from score.demo import add_demo_arguments, run_demo

    p = sub.add_parser("demo", help="offline CPU demo: a tiny model learns to self-correct (SFT base, eval, Stage I, "
                       "Stage II, eval, report)")
    add_demo_arguments(p)
    p.set_defaults(func=run_demo)

    p = sub.add_parser("tiny-model", help="build a tiny random model + locally trained tokenizer (for tests and trials)")
    p.add_argument("out", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_tiny_model)

    p = sub.add_parser("eval", help="evaluate self-correction: eval.json, samples.jsonl, report.md, plots")
    p.add_argument("--model", required=True, help="Hugging Face model folder (e.g. OUTPUT_DIR/final)")
    p.add_argument("--env", required=True, help="environment name (arithmetic, math500, humaneval, ...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--env-kwargs", default=None, help='JSON object of environment options, e.g. \'{"digits": 1}\'')
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="only the first N problems of the split")
    p.add_argument("--attempts", type=int, default=2, help="attempts per problem (K); 2 is SCoRe's protocol")
    p.add_argument("--samples", type=int, default=1, help="samples per problem (S); metrics average over them")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the paper's evaluation)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed")
    p.add_argument("--engine", default="auto", choices=["auto", "vllm", "hf"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--engine-kwargs", default=None, help='JSON object passed to the engine, e.g. \'{"max_model_len": 4096}\'')
    p.add_argument("--baseline", default=None, help="also evaluate this model (e.g. the base model) the same way, "
                   "into OUT/baseline, and compare")
    p.add_argument("--scaling", type=int, default=0, metavar="B", help="SCoRe §6.2: accuracy vs budget 1, 2, 4, ... B "
                   "(majority of B samples vs B/2 samples + one correction each)")
    p.add_argument("--scaling-temperature", type=float, default=1.0)
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=_eval)

    p = sub.add_parser("compare", help="paired comparison of two `score eval` folders on the same problems (A - B)")
    p.add_argument("dir_a")
    p.add_argument("dir_b")
    p.add_argument("--labels", nargs=2, default=None, metavar=("A", "B"))
    p.add_argument("--out", default=None, help="also write OUT/compare.json and OUT/compare.md")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_compare)

    p = sub.add_parser("plot", help="PNG plots of a training run (metrics.jsonl) or an eval folder (eval.json)")
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/plots)")
    p.set_defaults(func=_plot)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"score {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
