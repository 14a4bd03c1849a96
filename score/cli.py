"""`score` command line: train, eval."""

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="score", description="Self-correction RL (SCoRe) on Ray and vLLM.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="run Stage I or Stage II from a YAML config")
    p.add_argument("config", help="YAML config (see launch/)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. algo.alpha=5 rollout.n=4")
    p.set_defaults(func=_train)

    p = sub.add_parser("tiny-model", help="build a tiny random model + locally trained tokenizer (for tests and trials)")
    p.add_argument("out", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_tiny_model)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"score {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
