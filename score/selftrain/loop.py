"""`score scpo` / `score iwsi`: rounds of sample -> vote -> select -> train, on the SCoRe trainer's Ray actors.

Round r (0-based) of R:
1. a learner starts with policy M_r (round 0: init_from or model.path; later: the previous round's model) and the
   method's frozen reference (SCPO: M_r), with a fresh optimizer;
2. the rollout engines, which hold M_r, sample rollout.n answers to each of `problems_per_round` unlabelled problems
   (their references hidden: `Environment.load_unlabelled`);
3. the method turns the votes into training data (SCPO: weighted preference pairs; IWSI: filtered samples), saved
   with the round's statistics in OUTPUT_DIR/rounds/round_r/ (data.json, stats.json, and votes.jsonl: every
   problem's answers and which samples were trained on as right);
4. `train.steps` optimizer steps through `Learner.train_sequences` with the method's loss;
5. the model is saved to rounds/round_r/model and pushed to the engines, which sample round r+1 from it.

OUTPUT_DIR/final is the last round's model. metrics.jsonl has one line per optimizer step (`step` counts over all
rounds); the first line of a round also carries the round's vote, filter and label statistics.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from rich.console import Console
from transformers import AutoTokenizer

from envs import Problem, make_env
from score.actors import RolloutGroup, start_learner
from score.config import ConfigError, to_yaml
from score.engines import SamplingParams, fallback_notice, resolve_engine_kind
from score.learner import SequenceBatch
from score.logger import MetricsLogger
from score.reward_pool import RewardPool
from score.rollout import ChatRenderer
from score.selftrain.common import GoldLabels, label_diagnostics, sample_answers, top_vote_share
from score.selftrain.config import SelfTrainConfig
from score.selftrain.iwsi import Iwsi, learner_mean_nll, validation_sequences
from score.selftrain.scpo import Scpo
from score.train import (
    evaluate_held_out,
    init_ray,
    progress_bar,
    push_weights,
    save_checkpoint,
    step_problems,
    sync_check,
)

console = Console()


def run(cfg: SelfTrainConfig) -> Path:
    """Run every round; returns OUTPUT_DIR/final."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(cfg))
    env = make_env(cfg.env.name, **cfg.env.kwargs)
    unlabelled = env.load_unlabelled(cfg.env.train_split)
    first_model = cfg.init_from or cfg.model.path
    renderer = ChatRenderer(AutoTokenizer.from_pretrained(first_model))
    if cfg.method == "scpo":
        method = Scpo(cfg.scpo)
    else:
        valid = env.load(cfg.iwsi.valid_split)[: cfg.iwsi.valid_size]
        if cfg.iwsi.valid_split == cfg.env.train_split:  # labelled validation problems never self-train
            taken = {p.id for p in valid}
            unlabelled = [p for p in unlabelled if p.id not in taken]
        method = Iwsi(cfg.iwsi, validation_sequences(valid, env, renderer, cfg.iwsi.valid_template))
    if len(unlabelled) < cfg.problems_per_round:
        raise ConfigError(f"problems_per_round: {cfg.problems_per_round} asked, but split {cfg.env.train_split!r} "
                          f"has {len(unlabelled)} unlabelled problems")
    start_round, start_step, checkpoint = _resume_point(out, cfg) if cfg.resume else (0, 0, None)
    final = out / "final"
    if start_round == cfg.rounds:
        console.print(f"all {cfg.rounds} rounds are done: {final}")
        return final

    init_ray(cfg)
    resolve_engine_kind(cfg.rollout.engine)  # an engine that is not installed fails here, before any actor starts
    engines = RolloutGroup(cfg.rollout.engine, first_model, dict(cfg.rollout.engine_kwargs),
                           num_engines=cfg.rollout.num_engines, num_cpus=cfg.rollout.num_cpus,
                           num_gpus=cfg.rollout.num_gpus, timeout_s=cfg.rollout.timeout_s,
                           threads=cfg.rollout.threads)
    _, refusal = engines.engine_info()  # `auto` where vLLM refuses the model: the transformers engine, said once
    if refusal:
        console.print(fallback_notice(refusal), markup=False, highlight=False, soft_wrap=True)
    scorer = RewardPool(cfg.env.name, cfg.env.kwargs, num_workers=cfg.ray.num_reward_workers)
    # The only holder of the train split's gold labels: it scores samples for the logs, after selection.
    gold = GoldLabels(env.load(cfg.env.train_split), scorer.score) if cfg.log_label_accuracy else None
    held_out = env.load(cfg.eval.split)[: cfg.eval.limit] if cfg.eval.every else []
    steps = cfg.train.steps
    logger = MetricsLogger(out, resume_from_step=start_round * steps + start_step,
                           tensorboard=bool(cfg.log.get("tensorboard", True)),
                           wandb_project=cfg.log.get("wandb_project"), run_config=dataclasses.asdict(cfg))
    order = np.random.default_rng([cfg.seed, 17]).permutation(len(unlabelled))
    try:
        with progress_bar() as progress:
            bar = progress.add_task(cfg.method, total=cfg.rounds * steps, completed=start_round * steps + start_step,
                                    status="")
            for r in range(start_round, cfg.rounds):
                round_model = first_model if r == 0 else str(_round_dir(out, r - 1) / "model")
                learner = start_learner(cfg, model_path=method.reference(round_model, cfg.model.path),
                                        init_from=round_model, seed=cfg.seed + r)
                try:
                    first_step = start_step if r == start_round else 0
                    if r == start_round and checkpoint is not None:
                        learner.load(str(checkpoint))
                    if r == start_round and cfg.resume and (r > 0 or checkpoint is not None):
                        push_weights(cfg, engines, learner)  # the engines started from the first model
                    problems = [unlabelled[int(order[(r * cfg.problems_per_round + i) % len(unlabelled)])]
                                for i in range(cfg.problems_per_round)]
                    data, round_stats = _round_data(cfg, r, out, problems, env, renderer, engines, method, learner,
                                                    gold)
                    for s in range(first_step, steps):
                        metrics = _train_step(cfg, r, s, data, method, learner)
                        if s == 0:
                            metrics.update(round_stats)
                        last = s == steps - 1
                        evaluate = bool(held_out) and metrics["step"] % cfg.eval.every == 0
                        if last or evaluate:  # the engines only need new weights to sample or to evaluate
                            start = time.perf_counter()
                            push_weights(cfg, engines, learner)
                            metrics["time_sync"] = time.perf_counter() - start
                            metrics["sync_logprob_diff"] = sync_check(data.input_ids[0], engines, learner)
                        if evaluate:
                            metrics.update(evaluate_held_out(cfg, held_out, env, renderer, engines, scorer))
                        logger.log(metrics)
                        progress.update(bar, advance=1, status=f"round {r + 1}/{cfg.rounds} loss "
                                        f"{metrics['loss']:.3f} kept {round_stats.get('kept', 0):.0f}")
                        if last:
                            _save_round_model(out, r, learner)
                        elif cfg.train.save_every and metrics["step"] % cfg.train.save_every == 0:
                            save_checkpoint(out, metrics["step"], learner, round=r)
                finally:
                    learner.shutdown()
        if final.exists():
            shutil.rmtree(final)
        shutil.copytree(_round_dir(out, cfg.rounds - 1) / "model", final)
        rounds = [json.loads((_round_dir(out, r) / "stats.json").read_text()) for r in range(cfg.rounds)]
        (out / "summary.json").write_text(json.dumps({"method": cfg.method, "rounds": rounds,
                                                      "rollout_workers": engines.placement()}, indent=2))
        console.print(f"{cfg.method} done: final policy in {final}")
        return final
    finally:
        logger.close()
        engines.shutdown()
        scorer.shutdown()


def _round_dir(out: Path, r: int) -> Path:
    return out / "rounds" / f"round_{r}"


def _round_data(cfg: SelfTrainConfig, r: int, out: Path, problems: list[Problem], env, renderer: ChatRenderer,
                engines: RolloutGroup, method, learner, gold: GoldLabels | None) -> tuple[SequenceBatch, dict]:
    """Sample, vote and select round r's training data, or read it back when a resumed run already made it."""
    folder = _round_dir(out, r)
    if (folder / "stats.json").is_file():
        data = json.loads((folder / "data.json").read_text())
        return SequenceBatch(**data), json.loads((folder / "stats.json").read_text())
    timer = time.perf_counter
    t0 = timer()
    params = SamplingParams(cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_new_tokens,
                            seed=cfg.seed * 1_000_003 + r)
    groups = sample_answers(problems, env, renderer, engines.generate, k=cfg.rollout.n, params=params)
    t1 = timer()
    context = SimpleNamespace(mean_nll=learner_mean_nll(learner.sequence_logprobs))
    data, pseudo_labelled, stats = method.round_data(groups, context)
    t2 = timer()
    if len(data) == 0:
        knob = "scpo.vote_threshold" if cfg.method == "scpo" else "iwsi.filter / iwsi.entropy_max"
        raise RuntimeError(f"round {r + 1}: no problem passed the filter ({len(problems)} sampled); loosen {knob} "
                           "or sample more (problems_per_round, rollout.n)")
    flat = [s for group in groups for s in group]
    stats = {
        "problems": float(len(problems)),
        **stats,
        "vote_share": float(np.mean([top_vote_share([s.key for s in group]) for group in groups])),
        "no_answer_frac": float(np.mean([s.key is None for s in flat])),
        "response_len": float(np.mean([len(s.completion.token_ids) for s in flat])),
        **label_diagnostics(groups, pseudo_labelled, gold),  # logged only, after the data is fixed
        "time_rollout": t1 - t0,
        "time_select": t2 - t1,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.json").write_text(json.dumps(dataclasses.asdict(data)))
    trained_as_right = {(s.problem.id, s.index) for s in pseudo_labelled}
    with (folder / "votes.jsonl").open("w") as f:  # for inspection: what each problem's answers voted for
        for group in groups:
            f.write(json.dumps({"problem_id": group[0].problem.id, "prompt": group[0].problem.prompt,
                                "answers": [s.key for s in group],
                                "pseudo_labelled": [s.index for s in group if (s.problem.id, s.index) in trained_as_right]
                                }) + "\n")
    (folder / "stats.json").write_text(json.dumps(stats, indent=2))  # written last: marks the data complete
    return data, stats


def _train_step(cfg: SelfTrainConfig, r: int, s: int, data: SequenceBatch, method, learner) -> dict:
    """One optimizer step on a batch of whole groups (pairs or samples), drawn epoch by epoch from the round's data."""
    groups = step_problems(list(range(len(data))), s, min(cfg.train.batch_size, len(data)), cfg.seed * 1000 + r)
    start = time.perf_counter()
    stats = learner.train_sequences(data.take(groups), method.objective, use_reference=method.uses_reference,
                                    micro_batch_size=cfg.train.micro_batch_size, max_grad_norm=cfg.train.max_grad_norm)
    return {"step": r * cfg.train.steps + s + 1, "round": r + 1, **stats, "batch_groups": float(len(groups)),
            "time_update": time.perf_counter() - start}


def _save_round_model(out: Path, r: int, learner) -> None:
    folder = _round_dir(out, r)
    learner.save(str(folder / "model"), with_optimizer=False)
    (folder / "done.json").write_text(json.dumps({"round": r + 1}))  # last: the round is complete


def _resume_point(out: Path, cfg: SelfTrainConfig) -> tuple[int, int, Path | None]:
    """(round, step within it, checkpoint to load) after the newest finished round or mid-round checkpoint."""
    done = 0
    while done < cfg.rounds and (_round_dir(out, done) / "done.json").is_file():
        done += 1
    if done == cfg.rounds:
        return done, 0, None
    steps = cfg.train.steps
    inside = [(int(p.parent.name.split("_")[1]), p.parent) for p in out.glob("checkpoints/step_*/trainer_state.json")
              if json.loads(p.read_text()).get("round") == done]
    if not inside:
        return done, 0, None
    step, path = max(inside)
    console.print(f"resuming round {done + 1} from {path}")
    return done, step - done * steps, path
