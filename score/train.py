"""The SCoRe training loop (Stage I or Stage II, chosen by `cfg.stage`).

Each step: sample prompts -> two-attempt rollout on the engines -> rewards -> one KL-regularised REINFORCE update on
the learner -> push the new weights to the engines -> log. Everything the step needs is derived from (seed, step),
so a resumed run repeats exactly the data order and sampling of the run it continues.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import time
from pathlib import Path

import numpy as np
import ray
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import AutoTokenizer

from envs import Problem, make_env
from score.actors import RolloutGroup, concurrent_phases, connect_gpu_weight_sync, start_learner
from score.config import Config, ConfigError, to_yaml
from score.engines import SamplingParams, fallback_notice, resolve_engine_kind
from score.learner import Batch
from score.learner_group import LearnerGroup
from score.logger import MetricsLogger
from score.metrics import self_correction_metrics
from score.objectives import kl_weights, per_turn_rewards, subtract_baseline
from score.reward_pool import RewardPool
from score.rollout import ChatRenderer, Trajectory, assign_rewards, feedback_hook, two_attempt_rollout

console = Console()


def step_problems(problems: list[Problem], step: int, count: int, seed: int) -> list[Problem]:
    """The prompts of a step: consecutive slices of a per-epoch shuffle seeded by (seed, epoch)."""
    orders: dict[int, np.ndarray] = {}  # one shuffle per epoch the step touches
    picked = []
    for index in range(step * count, (step + 1) * count):
        epoch, position = divmod(index, len(problems))
        if epoch not in orders:
            orders[epoch] = np.random.default_rng([seed, epoch]).permutation(len(problems))
        picked.append(problems[int(orders[epoch][position])])
    return picked


def make_batch(trajectories: list[Trajectory], cfg: Config) -> tuple[Batch, torch.Tensor]:
    """Per-turn rewards (shaped for the stage), minus the per-turn baseline, packed for the learner."""
    r1 = torch.tensor([t.r1 for t in trajectories])
    r2 = torch.tensor([t.r2 for t in trajectories])
    cut1 = torch.tensor([not t.y1.finished for t in trajectories])
    cut2 = torch.tensor([not t.y2.finished for t in trajectories])
    turn_ids = [t.turn_ids for t in trajectories]
    if cfg.algo.truncated == "zero":  # a cut-off attempt earns nothing, even if its partial text scored
        r1, r2 = r1.masked_fill(cut1, 0.0), r2.masked_fill(cut2, 0.0)
    elif cfg.algo.truncated == "mask":  # a cut-off attempt's tokens take no part in the loss or the KL
        turn_ids = [[0 if (k == 1 and c1) or (k == 2 and c2) else k for k in ids]
                    for ids, c1, c2 in zip(turn_ids, cut1.tolist(), cut2.tolist())]
    rewards = per_turn_rewards(r1, r2, stage=cfg.stage, alpha=cfg.algo.alpha)
    group = torch.tensor([t.group for t in trajectories])
    advantages = subtract_baseline(rewards, group, cfg.algo.baseline)
    batch = Batch(
        input_ids=[t.input_ids for t in trajectories],
        turn_ids=turn_ids,
        rollout_logprobs=[t.rollout_logprobs for t in trajectories],
        turn_advantages=[tuple(a) for a in advantages.tolist()],
        turn_kl_weights=kl_weights(cfg.stage, cfg.algo.beta1, cfg.algo.beta2),
    )
    return batch, rewards


def training_env_kwargs(name: str, kwargs: dict) -> dict:
    """env.kwargs for training: `strict_format` defaults to on where the environment has it (math, gsm8k, ...).

    The lenient reader falls back to e.g. the last number of the text, so a truncated or formless answer could earn
    reward 1 and RL would drift away from the instructed answer form. Set env.kwargs.strict_format=false to train on
    the lenient reading anyway; `score eval` reports both."""
    kwargs = dict(kwargs)
    if "strict_format" not in kwargs and hasattr(make_env(name, **kwargs), "strict_format"):
        kwargs["strict_format"] = True
    return kwargs


def latest_checkpoint(out_dir: Path) -> tuple[int, Path] | None:
    """The newest complete checkpoint (its trainer_state.json is written last)."""
    found = [(int(p.parent.name.split("_")[1]), p.parent) for p in out_dir.glob("checkpoints/step_*/trainer_state.json")]
    return max(found) if found else None


def init_ray(cfg: Config) -> None:
    if ray.is_initialized():
        return
    if cfg.ray.address:
        ray.init(address=cfg.ray.address)
        return
    # A local cluster gets enough logical CPUs for every actor, even on a 2-core laptop (they mostly take turns).
    needed = (cfg.ray.learner_num_cpus * cfg.learner.num_ranks + cfg.rollout.num_engines * cfg.rollout.num_cpus
              + 0.5 * cfg.ray.num_reward_workers)
    pythonpath = os.pathsep.join([os.getcwd(), *filter(None, [os.environ.get("PYTHONPATH")])])
    env_vars = {"PYTHONPATH": pythonpath, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # no per-actor loading bars
    # address="local": a new cluster even where `ray start` left one running on this machine (that is ray.address)
    ray.init(address="local", num_cpus=max(os.cpu_count() or 1, math.ceil(needed)), include_dashboard=False,
             runtime_env={"env_vars": env_vars})


def train(cfg: Config) -> Path:
    """Run one SCoRe stage; returns the folder of the final policy (OUTPUT_DIR/final)."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(cfg))
    env_kwargs = training_env_kwargs(cfg.env.name, cfg.env.kwargs)
    env = make_env(cfg.env.name, **env_kwargs)
    problems = env.load(cfg.env.train_split)
    if not problems:
        raise ConfigError(f"env.train_split: split {cfg.env.train_split!r} of {cfg.env.name!r} has no problems")
    policy_path = cfg.init_from or cfg.model.path
    renderer = ChatRenderer(AutoTokenizer.from_pretrained(policy_path))

    init_ray(cfg)
    # Every actor is shut down when the run ends, and also when its start fails (an engine refused, a bad
    # checkpoint): a leaked actor would keep the cluster's CPUs from the next run.
    with contextlib.ExitStack() as stop:
        def learner_ranks() -> LearnerGroup:
            ranks = start_learner(cfg, model_path=cfg.model.path, init_from=cfg.init_from, seed=cfg.seed)
            stop.callback(ranks.shutdown)
            return ranks

        # The actors start side by side: each process imports its libraries and loads its model at the same time.
        # Not where engines and learner may share a GPU: vLLM sizes its KV cache by the memory free while it starts.
        resolve_engine_kind(cfg.rollout.engine)  # an engine that is not installed fails here, before any actor starts
        may_share_gpu = 0 < cfg.rollout.num_gpus < 1 and 0 < cfg.ray.learner_num_gpus < 1
        learner = learner_ranks() if may_share_gpu else None
        engine_kwargs = dict(cfg.rollout.engine_kwargs)
        if cfg.rollout.weight_sync != "blob":
            engine_kwargs["weight_transfer_backend"] = cfg.rollout.weight_sync
        # Each worker resolves `auto` itself: vLLM, or the transformers engine where vLLM refuses the model.
        engines = RolloutGroup(cfg.rollout.engine, policy_path, engine_kwargs,
                               num_engines=cfg.rollout.num_engines, num_cpus=cfg.rollout.num_cpus,
                               num_gpus=cfg.rollout.num_gpus, timeout_s=cfg.rollout.timeout_s,
                               threads=cfg.rollout.threads, concurrent_phases=concurrent_phases(cfg))
        stop.callback(engines.shutdown)
        scorer = RewardPool(cfg.env.name, env_kwargs, num_workers=cfg.ray.num_reward_workers)
        stop.callback(scorer.shutdown)
        if learner is None:
            learner = learner_ranks()
        engine, refusal = engines.engine_info()
        if refusal:
            console.print(fallback_notice(refusal), markup=False, highlight=False, soft_wrap=True)
            if cfg.rollout.weight_sync != "blob":
                raise ConfigError(f"rollout.weight_sync={cfg.rollout.weight_sync} needs vLLM, which refused the "
                                  "model; set rollout.weight_sync=blob")
        if cfg.rollout.weight_sync != "blob":
            connect_gpu_weight_sync(learner, engines, cfg.rollout.weight_sync,
                                    int(engine_kwargs.get("tensor_parallel_size", 1)))

        start = 0
        resumed = latest_checkpoint(out) if cfg.resume else None
        upcoming = None  # train.async: the next step's rollout, generated during this step's update
        if resumed:
            start, path = resumed
            learner.load(str(path))
            push_weights(cfg, engines, learner)
            if cfg.train.async_rollouts:
                upcoming = load_pending_rollout(path, start, engines.version)
            console.print(f"resumed from {path} at step {start}")
        held_out = env.load(cfg.eval.split)[: cfg.eval.limit] if cfg.eval.every else []
        probe = None  # a fixed sequence whose log-probs must agree between learner and engines after every sync
        start_checksums = learner.parameter_checksums()
        logger = MetricsLogger(out, resume_from_step=start, tensorboard=bool(cfg.log.get("tensorboard", True)),
                               wandb_project=cfg.log.get("wandb_project"), run_config=dataclasses.asdict(cfg))
        stop.callback(logger.close)
        clipped: list[float] = []  # per step: was the gradient clipped (how train.max_grad_norm is chosen)
        with progress_bar() as progress:
            bar = progress.add_task(f"stage {cfg.stage}", total=cfg.train.steps, completed=start, status="")
            for step in range(start, cfg.train.steps):
                metrics, trajectories, upcoming = _train_step(cfg, step, problems, env, renderer, engines, scorer,
                                                              learner, upcoming)
                probe = probe or trajectories[0].input_ids
                checked = time.perf_counter()
                metrics["sync_logprob_diff"] = sync_check(probe, engines, learner)
                metrics["time_sync_check"] = time.perf_counter() - checked
                if held_out and (step + 1) % cfg.eval.every == 0:
                    metrics.update(evaluate_held_out(cfg, held_out, env, renderer, engines, scorer))
                logger.log(metrics)
                clipped.append(metrics["grad_clipped"])
                progress.update(bar, advance=1, status=f"acc_t1 {metrics['acc_t1']:.2f} acc_t2 {metrics['acc_t2']:.2f}"
                                f" kl_t1 {metrics['kl_t1']:.3f}")
                done = step + 1
                if done == cfg.train.steps or (cfg.train.save_every and done % cfg.train.save_every == 0):
                    save_checkpoint(out, done, learner, files=pending_rollout_files(upcoming, engines.version))
        final = out / "final"
        learner.save(str(final), with_optimizer=False)
        end_checksums = learner.parameter_checksums()
        summary = {"start": start_checksums, "end": end_checksums, "steps": cfg.train.steps,
                   "grad_clip_fraction": float(np.mean(clipped)) if clipped else None,
                   "rollout_workers": engines.placement(), "engine": engine, "feedback": env.feedback_kind,
                   "learner_ranks": learner.placement()}
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        console.print(f"stage {cfg.stage} done: final policy in {final}")
        return final


@dataclasses.dataclass
class StepRollout:
    """One step's rollouts, scored and packed for the learner, and which weights generated them."""

    step: int
    trajectories: list[Trajectory]
    batch: Batch
    shaped: torch.Tensor
    version: int
    """The engines' weights version (`RolloutGroup.version`, one more per push) when they generated these."""
    time_rollout: float
    time_reward: float


def collect_rollout(cfg: Config, step: int, problems: list[Problem], env, renderer: ChatRenderer,
                    engines: RolloutGroup, scorer: RewardPool) -> StepRollout:
    """Step `step`'s prompts (from (seed, step) alone), two attempts each on the engines, scored and packed."""
    timer = time.perf_counter
    t0 = timer()
    version = engines.version
    params = SamplingParams(cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_new_tokens,
                            seed=cfg.seed * 1_000_003 + step)
    batch_problems = step_problems(problems, step, cfg.train.prompts_per_step, cfg.seed)
    trajectories = two_attempt_rollout(batch_problems, env, renderer, engines.generate, n=cfg.rollout.n,
                                       params=params, feedback=feedback_hook(env, scorer.feedbacks))
    t1 = timer()
    assign_rewards(trajectories, scorer.score)
    t2 = timer()
    batch, shaped = make_batch(trajectories, cfg)
    return StepRollout(step, trajectories, batch, shaped, version, t1 - t0, t2 - t1)


def _train_step(cfg: Config, step: int, problems: list[Problem], env, renderer: ChatRenderer,
                engines: RolloutGroup, scorer: RewardPool, learner, prefetched: StepRollout | None = None
                ) -> tuple[dict, list[Trajectory], StepRollout | None]:
    """Rollout (or the one `prefetched` during the previous update), update, weight push. With `train.async` the
    next step's rollout is generated while the learner updates (the engines still hold the previous weights) and
    returned, to be this function's `prefetched` at the next step."""
    timer = time.perf_counter
    t0 = timer()
    rollout = prefetched or collect_rollout(cfg, step, problems, env, renderer, engines, scorer)
    # Every earlier update has been pushed, so the learner's policy is the engines' current version: the
    # difference is how many updates behind the rollouts' weights are (0 on-policy, 1 under train.async).
    staleness = engines.version - rollout.version
    t2 = timer()
    handle = learner.submit_train_step(rollout.batch, kl_mode=cfg.algo.kl_mode, loss_agg=cfg.algo.loss_agg,
                                       micro_batch_size=cfg.train.micro_batch_size,
                                       max_grad_norm=cfg.train.max_grad_norm, tis_cap=cfg.algo.tis_cap,
                                       share_prompt=cfg.train.share_prompt,
                                       share_prompt_max_tokens=cfg.train.share_prompt_max_tokens)
    upcoming = None
    if cfg.train.async_rollouts and step + 1 < cfg.train.steps:
        upcoming = collect_rollout(cfg, step + 1, problems, env, renderer, engines, scorer)
    stats = learner.wait(handle)
    t3 = timer()
    push_weights(cfg, engines, learner)
    t4 = timer()
    trajectories, shaped = rollout.trajectories, rollout.shaped
    outcome = self_correction_metrics([t.r1 for t in trajectories], [t.r2 for t in trajectories])
    generated = sum(len(t.y1.token_ids) + len(t.y2.token_ids) for t in trajectories)
    return {
        "step": step + 1,
        "stage": cfg.stage,
        "feedback": env.feedback_kind,  # intrinsic or extrinsic: their deltas are different experiments
        **{k: v for k, v in outcome.items() if k != "n"},
        "reward_t1": float(shaped[:, 0].mean()),
        "reward_t2": float(shaped[:, 1].mean()),
        **stats,
        "response_len_t1": float(np.mean([len(t.y1.token_ids) for t in trajectories])),
        "response_len_t2": float(np.mean([len(t.y2.token_ids) for t in trajectories])),
        "truncated_t1": float(np.mean([not t.y1.finished for t in trajectories])),
        "truncated_t2": float(np.mean([not t.y2.finished for t in trajectories])),
        "n_samples": len(trajectories),
        "staleness": staleness,
        "time_rollout": rollout.time_rollout,  # under train.async: generated during the previous update
        "time_reward": rollout.time_reward,
        "time_update": t3 - t2,  # under train.async: includes the next step's rollout, which overlaps it
        "time_sync": t4 - t3,
        "time_step": t4 - t0,  # wall clock of the whole step: what train.async shortens (the learner's own phases:
        # time_ref_forward, time_policy_forward, ...)
        "generated_tokens": generated,  # both attempts of every sample
        "tokens_per_s": generated / (t4 - t0),
        "rollout_restarts": engines.restarts,
    }, trajectories, upcoming


PENDING_ROLLOUT = "pending_rollout.pkl"
"""Under train.async, a checkpoint's rollout for the next step, generated before the checkpoint's last update."""


def pending_rollout_files(rollout: StepRollout | None, version: int) -> dict[str, bytes]:
    """The checkpoint file that lets a resumed train.async run continue exactly: the next step's rollout (made with
    the weights before the checkpoint's last update, which the checkpoint does not hold) and its staleness."""
    if rollout is None:
        return {}
    return {PENDING_ROLLOUT: pickle.dumps((version - rollout.version, rollout))}


def load_pending_rollout(path: Path, step: int, version: int) -> StepRollout | None:
    """The checkpoint's pending rollout for `step`, its version set to be as stale as it was; None when the
    checkpoint has none (saved by a synchronous run, or at a run's last step): the first resumed step then generates
    on-policy."""
    file = path / PENDING_ROLLOUT
    if not file.is_file():
        return None
    staleness, rollout = pickle.loads(file.read_bytes())
    if rollout.step != step:
        raise RuntimeError(f"{file} holds the rollout of step {rollout.step + 1}, not of step {step + 1}; delete it to "
                           "resume with a fresh rollout")
    return dataclasses.replace(rollout, version=version - staleness)


def push_weights(cfg: Config, engines: RolloutGroup, learner: LearnerGroup) -> None:
    """Learner -> every engine, in place: flat buckets through Ray's object store (`score.flat_weights`), in the
    engines' dtype (a bfloat16 engine gets bfloat16 bytes, half of fp32), or NCCL/IPC on GPUs. Either way every
    learner rank gathers the full tensors together, a bucket (or a tensor) at a time."""
    if cfg.rollout.weight_sync == "blob":
        dtype = cfg.rollout.engine_kwargs.get("dtype", "float32")
        engines.update_weights(lambda: learner.weight_buckets(dtype))
    else:
        engines.pushed_weights(learner.send_weights)


def evaluate_held_out(cfg: Config, problems: list[Problem], env, renderer: ChatRenderer, engines: RolloutGroup,
                      scorer: RewardPool) -> dict[str, float]:
    """Greedy two-attempt evaluation on held-out problems, with the same code as `score eval`."""
    from score.evaluate import evaluate

    start = time.perf_counter()
    params = SamplingParams(temperature=0.0, max_new_tokens=cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens)
    result = evaluate(env, problems, renderer, engines.generate, attempts=2, params=params, score=scorer.score,
                      feedbacks=scorer.feedbacks)
    return {**result.log_metrics(prefix="eval_"), "time_eval": time.perf_counter() - start}


def sync_check(sequence: list[int], engines: RolloutGroup, learner) -> float:
    """Largest |log p_engine - log p_learner| over a fixed sequence and every engine: shows that each engine runs
    the learner's weights."""
    learner_lp = np.array(learner.sequence_logprobs([sequence])[0])
    return max(float(np.max(np.abs(np.array(lp[0]) - learner_lp))) for lp in engines.sequence_logprobs([sequence]))


def save_checkpoint(out: Path, step: int, learner, files: dict[str, bytes] | None = None, **state: int) -> None:
    """OUTPUT_DIR/checkpoints/step_N: policy, optimizer, RNG, any extra `files` (name -> bytes); trainer_state.json
    ({"step": N, **state}) last."""
    path = out / "checkpoints" / f"step_{step}"
    learner.save(str(path), with_optimizer=True)
    for name, data in (files or {}).items():
        (path / name).write_bytes(data)
    (path / "trainer_state.json").write_text(json.dumps({"step": step, **state}))


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[status]}"), console=console)
