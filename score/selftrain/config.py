"""Configuration of `score scpo` and `score iwsi`: the sections `score train` has (model, env, rollout, eval, ray,
log), a per-round training section, and one section per method. Loaded like `score train`'s: defaults <- YAML <-
`key=value` overrides, every key and type checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from score.config import (
    ConfigError,
    EnvConfig,
    EvalConfig,
    LearnerConfig,
    ModelConfig,
    OptimizerConfig,
    RayConfig,
    RolloutConfig,
    check_choices,
    check_positive,
    merge_config,
    validate_shared,
)


@dataclass
class RoundTrainConfig(OptimizerConfig):
    """lr, weight_decay, max_grad_norm, micro_batch_size (a DPO pair is never split) and save_every as in `score
    train`; every round starts a fresh optimizer, as the papers' rounds are separate fine-tuning runs."""

    steps: int = 10
    """Optimizer steps per round."""
    batch_size: int = 16
    """Preference pairs (SCPO) or samples (IWSI) per step, drawn from the round's data (reshuffled every epoch)."""


@dataclass
class ScpoConfig:
    beta: float = 0.5
    """DPO temperature beta."""
    alpha: float = 1.0
    """Weight of the length-normalised NLL term on the chosen answer."""
    vote_threshold: float = 0.5
    """tau: drop problems whose most voted answer got fewer than tau * k of the k votes."""
    reference: str = "round"
    """Frozen reference of the DPO term: round (the model that sampled the round's pairs, as in the paper) or base
    (model.path in every round, also when init_from sets another first policy)."""


@dataclass
class IwsiConfig:
    filter: str = "ds"
    """ds (IWSI: majority answer, then DS weight), majority (LMSI), entropy, or none (every sample)."""
    keep_percentile: float = 0.8
    """ds: keep the majority samples whose DS weight is at or below this percentile (as a fraction)."""
    entropy_max: float = 0.5
    """entropy: keep problems whose normalised answer entropy is at most this."""
    valid_size: int = 32
    """Labelled validation problems for the DS weight: the first ones of valid_split (removed from the unlabelled
    problems when valid_split is env.train_split). Their gold answers are the only labels IWSI reads."""
    valid_split: str = "train"
    valid_template: str = "{reference}"
    """How a gold answer is written as a model answer; {reference} and the problem's meta fields (e.g. a worked
    solution column) may appear. For the SCoRe math prompt: 'Final Answer: The final answer is ${reference}$. I hope
    it is correct.'"""


@dataclass
class SelfTrainConfig:
    method: str = "scpo"
    """scpo or iwsi (set by the command: `score scpo` / `score iwsi`)."""
    output_dir: str = "runs/selftrain"
    """metrics.jsonl, config.yaml, rounds/round_R/ (data, model), checkpoints/step_N/, final/."""
    init_from: str | None = None
    """First policy (e.g. a SCoRe run's final/); None: model.path."""
    seed: int = 0
    resume: bool = False
    """Continue from the newest finished round or checkpoint in output_dir."""
    rounds: int = 2
    """Iterations: round r samples from the model trained in round r - 1."""
    problems_per_round: int = 64
    """Unlabelled problems sampled per round: consecutive slices of one seeded shuffle of the train split."""
    log_label_accuracy: bool = True
    """Log pseudo-label accuracy against the hidden gold labels (diagnostics only; training never reads them)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(n=8))
    """rollout.n is k (SCPO) or m (IWSI): answers sampled per problem."""
    train: RoundTrainConfig = field(default_factory=RoundTrainConfig)
    scpo: ScpoConfig = field(default_factory=ScpoConfig)
    iwsi: IwsiConfig = field(default_factory=IwsiConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    log: dict[str, Any] = field(default_factory=lambda: {"tensorboard": True, "wandb_project": None})


def load_selftrain_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (),
                          method: str | None = None) -> SelfTrainConfig:
    """Defaults <- YAML <- overrides, validated. `method` (from the command) must agree with the file's."""
    cfg = merge_config(SelfTrainConfig, path, overrides)
    if method is not None:
        if _sets_method(path, overrides) and cfg.method != method:
            raise ConfigError(f"method: the config says {cfg.method!r} but the command is `score {method}`")
        cfg.method = method
    validate_selftrain(cfg)
    return cfg


def _sets_method(path: str | Path | None, overrides: list[str] | tuple[str, ...]) -> bool:
    import yaml

    in_file = path is not None and "method" in (yaml.safe_load(Path(path).read_text()) or {})
    return in_file or any(item.startswith("method=") for item in overrides)


def validate_selftrain(cfg: SelfTrainConfig) -> None:
    validate_shared(cfg)
    check_choices(cfg, {"method": ("scpo", "iwsi"), "scpo.reference": ("round", "base"),
                        "iwsi.filter": ("ds", "majority", "entropy", "none")})
    if cfg.rollout.weight_sync != "blob":
        raise ConfigError("rollout.weight_sync: self-training starts a new learner every round, which the GPU "
                          "weight-transfer group does not follow yet; use blob")
    if cfg.rollout.n < 2:
        raise ConfigError(f"rollout.n: voting needs at least 2 answers per problem, got {cfg.rollout.n}")
    if cfg.rollout.temperature <= 0:
        raise ConfigError("rollout.temperature: must be > 0; greedy answers all agree, so votes carry no signal")
    check_positive({"rounds": cfg.rounds, "problems_per_round": cfg.problems_per_round,
                    "train.steps": cfg.train.steps, "train.batch_size": cfg.train.batch_size,
                    "iwsi.valid_size": cfg.iwsi.valid_size})
    fractions = {"scpo.vote_threshold": cfg.scpo.vote_threshold, "iwsi.keep_percentile": cfg.iwsi.keep_percentile,
                 "iwsi.entropy_max": cfg.iwsi.entropy_max}
    for key, value in fractions.items():
        if not 0 <= value <= 1:
            raise ConfigError(f"{key}: must be in [0, 1], got {value}")
    if cfg.scpo.beta <= 0 or cfg.scpo.alpha < 0:
        raise ConfigError(f"scpo.beta must be > 0 and scpo.alpha >= 0, got {cfg.scpo.beta} and {cfg.scpo.alpha}")
