"""`score` command line: train, scpo, iwsi, demo, eval, compare, plot, tiny-model, export, doctor."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from score.config import ConfigError

# Each command's help ends with an example that runs as written from the repository's root, in this order.
EXAMPLES = {
    "tiny-model": "score tiny-model runs/tiny-base",
    "train": "score train launch/tiny_stage1.yaml train.steps=2",
    "scpo": "score scpo launch/tiny_scpo.yaml",
    "iwsi": "score iwsi launch/tiny_iwsi.yaml iwsi.filter=majority",
    "verifier": "score verifier data launch/tiny_verifier.yaml",
    "demo": "score demo",
    "eval": "score eval --model runs/tiny-base --env arithmetic --limit 20 --max-new-tokens 8 --engine hf --out runs/eval-base",
    "compare": "score compare runs/eval-stage1 runs/eval-base   # after another `score eval ... --out runs/eval-stage1`",
    "plot": "score plot runs/tiny-stage1",
    "export": "score export openrlhf --env arithmetic --out runs/openrlhf/agent_func.py --data runs/openrlhf/prompts.jsonl",
    "doctor": "score doctor",
}


def _example(command: str) -> str:
    return f"example:\n  {EXAMPLES[command]}"


def _json_object(text: str | None, flag: str) -> dict:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be a JSON object, e.g. '{{\"digits\": 1}}' ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, e.g. '{{\"digits\": 1}}', not {text}")
    return value


def _choose_local_ray_auth() -> None:
    """Ray turns token authentication on for a new local cluster, and warns about it at every start unless
    RAY_AUTH_MODE is set. Setting the same mode keeps the protection and drops the warning. Ray reads the variable
    when it is imported, so this runs before `import ray`; a cluster joined by address keeps Ray's own choice."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def _train(args: argparse.Namespace) -> int:
    from score.config import load_config

    cfg = load_config(args.config, args.overrides)
    if not cfg.ray.address:
        _choose_local_ray_auth()
    from score.train import train

    train(cfg)
    return 0


def _selftrain(args: argparse.Namespace) -> int:
    from score.selftrain.config import load_selftrain_config

    cfg = load_selftrain_config(args.config, args.overrides, method=args.command)
    if not cfg.ray.address:
        _choose_local_ray_auth()
    from score.selftrain.loop import run

    run(cfg)
    return 0


def _verifier(args: argparse.Namespace) -> int:
    from score.verifiers.config import load_verifier_config

    cfg = load_verifier_config(args.config, args.overrides)
    if args.action == "data":
        from score.verifiers.data import run_data

        run_data(cfg)
        return 0
    if not cfg.ray.address:
        _choose_local_ray_auth()
    if args.action == "train":
        from score.verifiers.train import run_train

        run_train(cfg)
    else:
        from score.verifiers.w2s import run_w2s

        run_w2s(cfg)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from score.demo import run_demo

    _choose_local_ray_auth()  # the demo's stages run on a local cluster
    return run_demo(args)


def _tiny_model(args: argparse.Namespace) -> int:
    from score.tiny import build_tiny_model, default_corpus

    print(build_tiny_model(args.out, default_corpus(), seed=args.seed))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from score.engines import SamplingParams
    from score.evaluate import run_eval

    env_kwargs = _json_object(args.env_kwargs, "--env-kwargs")
    engine_kwargs = _json_object(args.engine_kwargs, "--engine-kwargs")
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                            seed=args.seed)
    if args.select or args.guide:  # verifiers at inference (score.verifiers.inference)
        from score.verifiers.inference import parse_verifiers, run_select

        run_select(args.model, args.env, args.out, env_kwargs=env_kwargs, split=args.split, limit=args.limit,
                   samples=args.samples, params=params, engine=args.engine,
                   engine_kwargs={"dtype": args.dtype, **engine_kwargs},
                   methods=[m for m in (args.select or "").split(",") if m], verifiers=parse_verifiers(args.verifier),
                   weighted_by=args.weighted_by, guide=args.guide, guide_mode=args.guide_mode,
                   guide_threshold=args.guide_threshold, resamples=args.resamples, confidence=args.confidence,
                   plots=not args.no_plots)
        return 0
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


def _export(args: argparse.Namespace) -> int:
    from envs import make_env
    from score.interop.problems import prompt_rows

    if not (args.out or args.data):
        raise ValueError("score export: give --out (the reward/agent file), --data (the prompts), or both")
    env_kwargs = _json_object(args.env_kwargs, "--env-kwargs")
    env = make_env(args.env, **env_kwargs)  # an unknown name or option fails here, not inside the other framework
    command = "score " + " ".join(shlex.quote(a) for a in args.argv)
    kind = args.kind or ("agent" if args.framework == "openrlhf" else "reward")
    written = []
    if args.framework == "openrlhf":
        from score.interop import openrlhf

        if args.out and kind == "agent":
            written.append(openrlhf.write_agent_file(args.out, args.env, env_kwargs, attempts=args.attempts,
                                                     alpha=args.alpha, command=command))
        elif args.out:
            written.append(openrlhf.write_reward_file(args.out, args.env, env_kwargs, command=command))
        if args.data:
            written.append(openrlhf.write_prompts(args.data, prompt_rows(env, args.split, args.limit)))
    else:
        from score.interop import verl

        if kind != "reward" or args.attempts != 2 or args.alpha:
            raise ValueError("score export verl writes a compute_score reward file: --kind agent, --attempts and "
                             "--alpha are for openrlhf")
        if args.out:
            written.append(verl.write_compute_score_file(args.out, args.env, env_kwargs, command=command))
        if args.data:
            written.append(verl.write_prompts(args.data, prompt_rows(env, args.split, args.limit), args.env,
                                              args.split))
    for path in written:
        print(path)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from score.doctor import run_doctor

    run_doctor()
    return 0


def _add_parser(sub, name: str, help: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, epilog=_example(name),
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    first_steps = "\n".join(f"  {EXAMPLES[c]}" for c in ("tiny-model", "train", "eval"))
    parser = argparse.ArgumentParser(
        prog="score", description="Self-correction RL (SCoRe) on Ray and vLLM.",
        epilog=f"examples (from the repository's root):\n  score demo\n{first_steps}\n  score doctor\n\n"
               "`score COMMAND --help` shows each command's options and an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = _add_parser(sub, "train", "run Stage I or Stage II from a YAML config")
    p.add_argument("config", help="YAML config (see launch/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. algo.alpha=5 rollout.n=4")
    p.set_defaults(func=_train)

    for name, what in (("scpo", "self-consistency preference optimisation (no labels): vote, weighted DPO + NLL"),
                       ("iwsi", "importance-weighted self-improvement (no labels): vote, DS-weight filter, SFT; "
                                "iwsi.filter=majority|entropy|none for the baselines")):
        p = _add_parser(sub, name, what)
        p.add_argument("config", help="YAML config (see launch/)")
        p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. rounds=3 rollout.n=16")
        p.set_defaults(func=_selftrain)

    p = _add_parser(sub, "verifier", "verifiers: sample and label data (data), train an ORM, SimPO or PRM verifier "
                    "(train), weak-to-strong (w2s); use them with score eval --select")
    p.add_argument("action", choices=["data", "train", "w2s"])
    p.add_argument("config", help="YAML config (see launch/*verifier*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. verifier.kind=simpo rollout.n=16")
    p.set_defaults(func=_verifier)

    from score.demo import add_demo_arguments

    p = _add_parser(sub, "demo", "offline CPU demo: a tiny model learns to self-correct (SFT base, eval, Stage I, "
                    "Stage II, eval, report)")
    add_demo_arguments(p)
    p.set_defaults(func=_demo)

    p = _add_parser(sub, "tiny-model", "build a tiny random model + locally trained tokenizer (for tests and trials)")
    p.add_argument("out", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_tiny_model)

    p = _add_parser(sub, "eval", "evaluate self-correction: eval.json, samples.jsonl, report.md, plots")
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
    p.add_argument("--engine", default="auto", choices=["auto", "vllm", "hf"],
                   help="auto: vLLM where installed and able to run the model, else transformers")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--engine-kwargs", default=None, help='JSON object passed to the engine, e.g. \'{"max_model_len": 4096}\'')
    p.add_argument("--baseline", default=None, help="also evaluate this model (e.g. the base model) the same way, "
                   "into OUT/baseline, and compare")
    p.add_argument("--scaling", type=int, default=0, metavar="B", help="SCoRe §6.2: accuracy vs budget 1, 2, 4, ... B "
                   "(majority of B samples vs B/2 samples + one correction each)")
    p.add_argument("--scaling-temperature", type=float, default=1.0)
    p.add_argument("--select", default=None, metavar="M1,M2", help="best-of-N over --samples S: any of vote, orm, "
                   "prm, simpo, weighted-vote, cotnpot (comma-separated); curves for N = 1, 2, 4, ... S")
    p.add_argument("--verifier", action="append", default=[], metavar="KIND=PATH",
                   help="a trained verifier (score verifier train's final/), e.g. orm=runs/v/final (repeatable)")
    p.add_argument("--weighted-by", default=None, choices=["orm", "prm", "simpo"],
                   help="the verifier whose scores weight the votes of weighted-vote (default: the first given)")
    p.add_argument("--guide", default=None, choices=["orm", "prm", "simpo"],
                   help="verifier-guided self-correction: attempt 2 only when this verifier doubts attempt 1")
    p.add_argument("--guide-mode", default="request", choices=["request", "keep"],
                   help="request: generate attempt 2 only when doubted; keep: generate it always, keep it when doubted")
    p.add_argument("--guide-threshold", type=float, default=None,
                   help="doubt when the score is below this (default 0.5 for orm/prm; required for simpo)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--no-plots", action="store_true")
    p.set_defaults(func=_eval)

    p = _add_parser(sub, "compare", "paired comparison of two `score eval` folders on the same problems (A - B)")
    p.add_argument("dir_a")
    p.add_argument("dir_b")
    p.add_argument("--labels", nargs=2, default=None, metavar=("A", "B"))
    p.add_argument("--out", default=None, help="also write OUT/compare.json and OUT/compare.md")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_compare)

    p = _add_parser(sub, "plot", "PNG plots of a training run (metrics.jsonl) or an eval folder (eval.json)")
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/plots)")
    p.set_defaults(func=_plot)

    p = _add_parser(sub, "export", "a score environment for OpenRLHF (agent or reward_func file) or verl "
                    "(compute_score file), and its prompts in their dataset format")
    p.add_argument("framework", choices=["openrlhf", "verl"])
    p.add_argument("--env", required=True, help="environment name (arithmetic, math500, humaneval, ...)")
    p.add_argument("--env-kwargs", default=None, help='JSON object of environment options, e.g. \'{"digits": 1}\'')
    p.add_argument("--out", default=None, help="the .py file to write (OpenRLHF: --train.agent_func_path or "
                   "--reward.remote_url; verl: custom_reward_function.path)")
    p.add_argument("--kind", choices=["agent", "reward"], default=None,
                   help="openrlhf: agent (K attempts, the default) or reward (reward_func, single turn); verl: reward")
    p.add_argument("--attempts", type=int, default=2, help="openrlhf agent: attempts per prompt (K)")
    p.add_argument("--alpha", type=float, default=0.0, help="openrlhf agent: trajectory reward r(y_K) + alpha * "
                   "(r(y_K) - r(y_1)) (SCoRe's Stage II bonus, summed into one reward)")
    p.add_argument("--data", default=None, help="also write the prompts: OpenRLHF .jsonl (input, label), "
                   "verl .parquet (data_source, prompt, reward_model, extra_info)")
    p.add_argument("--split", default="train", help="split of the prompts written with --data")
    p.add_argument("--limit", type=int, default=None, help="only the first N problems of the split")
    p.set_defaults(func=_export)

    p = _add_parser(sub, "doctor", "what this machine has (vLLM build, bubblewrap, GPUs, Ray cluster, cached models "
                    "and datasets) and what each feature needs")
    p.set_defaults(func=_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    from score.terminal import quiet_interpreter_teardown

    quiet_interpreter_teardown()  # first, so that it runs after every other exit handler
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"score {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
