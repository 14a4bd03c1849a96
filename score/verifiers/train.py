"""`score verifier train`: an ORM, SimPO or PRM verifier from `score verifier data`'s records, on SCoRe's machinery.

The learner is a Ray actor (`score.actors`' resources, `ray.learner_num_cpus`); every step is one
`Learner.train_sequences` call with the verifier's objective (`score.verifiers.losses`):

- orm: `HeadLearner` (a one-output head on the base model), one row per solution, values["label"] = correct
  (or a weak supervisor's probability, weak-to-strong);
- prm: `HeadLearner`, one row per solution that has step labels, the labels in the mask;
- simpo: the plain `Learner` (the language model itself), rows (correct, incorrect) in groups of 2: per problem up to
  `verifier.pairs_per_problem` pairs, each sample used once, drawn with the run's seed.

Batches of `train.batch_size` rows or pairs are drawn epoch by epoch (`score.train.step_problems`). Checkpoints
(checkpoints/step_N/, every `train.save_every` steps) resume with `resume=true`; OUTPUT_DIR/final is a Hugging Face
folder with verifier.json (kind, aggregation, step splitting) that `score eval --select` loads.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from rich.console import Console
from transformers import AutoTokenizer

from score.config import ConfigError, to_yaml
from score.learner import Learner, SequenceBatch
from score.logger import MetricsLogger
from score.rollout import ChatRenderer
from score.train import init_ray, step_problems
from score.verifiers.config import VerifierConfig
from score.verifiers.data import read_data
from score.verifiers.learner import HeadLearner
from score.verifiers.losses import orm_objective, prm_objective, simpo_objective
from score.verifiers.scoring import SPEC_FILE, encode_row

console = Console(stderr=True)


def simpo_pairs(records: Sequence[dict[str, Any]], per_problem: int, seed: int) -> list[tuple[dict, dict]]:
    """(correct, incorrect) pairs: per problem, shuffled with the seed, the i-th correct with the i-th incorrect.

    >>> recs = [{"problem_id": "a", "correct": c, "solution": s} for c, s in ((1, "x"), (0, "y"), (0, "z"))]
    >>> [(p["solution"], n["solution"]) for p, n in simpo_pairs(recs, 4, 0)] in ([("x", "y")], [("x", "z")])
    True
    """
    by_problem: dict[str, tuple[list, list]] = {}
    for r in records:
        by_problem.setdefault(r["problem_id"], ([], []))[0 if r["correct"] else 1].append(r)
    rng = random.Random(seed)
    pairs = []
    for problem_id in sorted(by_problem):
        right, wrong = (list(side) for side in by_problem[problem_id])
        rng.shuffle(right)
        rng.shuffle(wrong)
        pairs += list(zip(right, wrong))[:per_problem]
    return pairs


def training_batch(records: Sequence[dict[str, Any]], renderer: ChatRenderer, cfg: VerifierConfig,
                   labels: Sequence[float] | None = None) -> SequenceBatch:
    """Every training row (or pair) of the data. `labels` replace the records' own labels (weak supervision)."""
    spec, limit = cfg.verifier, cfg.train.max_length
    if spec.kind == "simpo":
        pairs = simpo_pairs(records, spec.pairs_per_problem, cfg.seed)
        rows = [encode_row(renderer, r["messages"], r["solution"], kind="simpo", max_length=limit)
                for pair in pairs for r in pair]
        return SequenceBatch([r.input_ids for r in rows], [r.loss_mask for r in rows], {}, group_size=2)
    if spec.kind == "prm":
        usable = [r for r in records if r.get("step_labels")]
        rows = [encode_row(renderer, r["messages"], r["solution"], kind="prm", ends=r["step_ends"],
                           labels=r["step_labels"], max_length=limit) for r in usable]
        rows = [row for row in rows if row.step_count]
        return SequenceBatch([r.input_ids for r in rows], [r.loss_mask for r in rows], {})
    targets = [float(r["correct"]) for r in records] if labels is None else [float(v) for v in labels]
    rows = [(encode_row(renderer, r["messages"], r["solution"], kind="orm", max_length=limit), y)
            for r, y in zip(records, targets, strict=True)]
    rows = [(row, y) for row, y in rows if row.step_count]  # an empty solution has no token to read
    return SequenceBatch([r.input_ids for r, _ in rows], [r.loss_mask for r, _ in rows],
                         {"label": [y for _, y in rows]})


def objective_for(cfg: VerifierConfig):
    spec = cfg.verifier
    if spec.kind == "orm":
        return functools.partial(orm_objective, head=spec.orm_head, confidence_alpha=spec.confidence_alpha)
    if spec.kind == "simpo":
        return functools.partial(simpo_objective, beta=spec.simpo_beta, gamma=spec.simpo_gamma)
    return prm_objective


def start_verifier_learner(cfg: VerifierConfig):
    learner_class = Learner if cfg.verifier.kind == "simpo" else HeadLearner
    threads = max(1, int(cfg.ray.learner_num_cpus))
    return (ray.remote(learner_class).options(num_cpus=cfg.ray.learner_num_cpus, num_gpus=cfg.ray.learner_num_gpus)
            .remote(model_path=cfg.model.path, init_from=cfg.init_from, dtype=cfg.model.dtype, lr=cfg.train.lr,
                    weight_decay=cfg.train.weight_decay, seed=cfg.seed, num_threads=threads))


def spec_record(cfg: VerifierConfig) -> dict[str, Any]:
    """verifier.json: what `Verifier` needs to read solutions the way training did."""
    return {"kind": cfg.verifier.kind, "orm_head": cfg.verifier.orm_head, "prm_aggregate": cfg.verifier.prm_aggregate,
            "steps": dataclasses.asdict(cfg.data.steps), "max_length": cfg.train.max_length,
            "base_model": cfg.init_from or cfg.model.path}


def save_checkpoint(out: Path, step: int, learner) -> None:
    """OUTPUT_DIR/checkpoints/step_N: the verifier, optimizer and RNG; trainer_state.json last (marks it complete)."""
    path = out / "checkpoints" / f"step_{step}"
    ray.get(learner.save.remote(str(path), with_optimizer=True))
    (path / "trainer_state.json").write_text(json.dumps({"step": step}))


def _resume_step(out: Path) -> tuple[int, Path | None]:
    found = [(json.loads(p.read_text())["step"], p.parent) for p in out.glob("checkpoints/step_*/trainer_state.json")]
    return max(found) if found else (0, None)


def run_train(cfg: VerifierConfig, records: Sequence[dict[str, Any]] | None = None,
              labels: Sequence[float] | None = None) -> Path:
    """Train the verifier; returns OUTPUT_DIR/final. `records`/`labels` default to the data folder's."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(to_yaml(cfg))
    records = list(records) if records is not None else read_data(cfg.data_dir())
    renderer = ChatRenderer(AutoTokenizer.from_pretrained(cfg.init_from or cfg.model.path))
    data = training_batch(records, renderer, cfg, labels)
    if len(data) == 0:
        need = {"simpo": "a problem with both a correct and an incorrect sample",
                "prm": "step labels (data.prm_labels=true)", "orm": "a non-empty solution"}[cfg.verifier.kind]
        raise ConfigError(f"verifier.kind={cfg.verifier.kind}: the data ({len(records)} records) has no training row; "
                          f"it needs {need}")
    start, checkpoint = _resume_step(out) if cfg.resume else (0, None)
    init_ray(cfg)
    logger = MetricsLogger(out, resume_from_step=start, tensorboard=bool(cfg.log.get("tensorboard", False)),
                           wandb_project=cfg.log.get("wandb_project"), run_config=dataclasses.asdict(cfg))
    learner = start_verifier_learner(cfg)
    objective = objective_for(cfg)
    try:
        if checkpoint is not None:
            ray.get(learner.load.remote(str(checkpoint)))
            console.print(f"resuming from {checkpoint}")
        size = min(cfg.train.batch_size, len(data))
        for step in range(start, cfg.train.steps):
            groups = step_problems(list(range(len(data))), step, size, cfg.seed)
            t0 = time.perf_counter()
            stats = ray.get(learner.train_sequences.remote(data.take(groups), objective,
                                                           micro_batch_size=cfg.train.micro_batch_size,
                                                           max_grad_norm=cfg.train.max_grad_norm))
            metrics = {"step": step + 1, **stats, "rows": float(len(data)), "time_update": time.perf_counter() - t0}
            logger.log(metrics)
            if step % 10 == 0 or step + 1 == cfg.train.steps:
                console.print(f"step {step + 1}/{cfg.train.steps} loss {metrics['loss']:.4f}")
            if cfg.train.save_every and (step + 1) % cfg.train.save_every == 0 and step + 1 < cfg.train.steps:
                save_checkpoint(out, step + 1, learner)
        final = out / "final"
        ray.get(learner.save.remote(str(final), with_optimizer=False))
        (final / SPEC_FILE).write_text(json.dumps(spec_record(cfg), indent=2))
    finally:
        logger.close()
        ray.kill(learner)
    console.print(f"verifier ({cfg.verifier.kind}) in {final}")
    return final
