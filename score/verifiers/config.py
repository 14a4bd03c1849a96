"""Configuration of `score verifier data` and `score verifier train`: one file for both (the data the verifier
trains on and the verifier), loaded like `score train`'s: defaults <- YAML <- `key=value` overrides, every key and
type checked.

The sections shared with `score train` keep their meaning: `model` is the verifier's base model, `rollout` how the
generators sample (rollout.n: N samples per problem), `ray` where the learner runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from score.config import (
    ConfigError,
    EnvConfig,
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
from score.verifiers.steps import StepConfig


@dataclass
class CotnpotConfig:
    enabled: bool = False
    """Ask the generator for a Python program computing its own solution's answer, run it in the code sandbox, and
    record whether the two answers agree (`cotnpot_agree` in the data)."""
    filter: bool = False
    """Drop the samples whose program disagrees (CoTnPoT as a data filter); needs enabled."""
    max_new_tokens: int = 128
    """Token budget of the program."""
    timeout: float = 5.0
    """Seconds per program in the sandbox."""


@dataclass
class DataConfig:
    models: list[str] = field(default_factory=list)
    """Generators (Hugging Face folders); empty: model.path. Each samples rollout.n solutions per problem."""
    split: str = "train"
    """Split the problems come from (the verifier never sees the evaluation split)."""
    problems: int = 64
    """The first this many problems of the split."""
    offset: int = 0
    """Skip this many problems first (disjoint slices for weak-to-strong)."""
    dedup: bool = True
    """Keep one copy of solutions with the same text (whitespace collapsed) for the same problem."""
    format: str = "jsonl"
    """jsonl (DIR/data.jsonl) or hf (also a Hugging Face dataset in DIR/hf, `datasets.load_from_disk`)."""
    path: str | None = None
    """Where the data goes (and where `score verifier train` reads it); None: OUTPUT_DIR/data."""
    prm_labels: bool = False
    """Math-Shepherd step labels: from every step prefix of a wrong solution, sample prm_completions completions; the
    step is good when any reaches the right answer (every step of a right solution is good: it completes itself)."""
    prm_completions: int = 4
    """Completions sampled per step prefix."""
    steps: StepConfig = field(default_factory=StepConfig)
    """How solutions are cut into steps (score.verifiers.steps)."""
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    cotnpot: CotnpotConfig = field(default_factory=CotnpotConfig)


@dataclass
class VerifierSpec:
    kind: str = "orm"
    """orm (scalar head, BCE), simpo (length-normalised log-probability, pairwise) or prm (per-step head)."""
    orm_head: str = "final"
    """orm: final (BCE on the last token's logit) or every (every solution token predicts the outcome)."""
    simpo_beta: float = 2.0
    simpo_gamma: float = 1.0
    """simpo: loss -log sigmoid(beta * (r(y+) - r(y-)) - gamma), r the mean token log-probability."""
    pairs_per_problem: int = 4
    """simpo: (correct, incorrect) pairs per problem, each sample used at most once."""
    prm_aggregate: str = "min"
    """prm: a solution's score from its steps' probabilities: min or prod."""
    confidence_alpha: float = 0.0
    """orm: weight of the auxiliary confidence loss (weak-to-strong, Burns et al. 2023); 0: off."""


@dataclass
class W2sConfig:
    """`score verifier w2s`: a weak verifier trained on gold labels of one half of the data's problems labels the
    other half, on which a stronger student (model.path) trains; the strong ceiling trains on that half's gold labels.
    All three are evaluated on eval_data (problems none of them saw)."""

    weak_model: str | None = None
    """The weak verifier's base model (required)."""
    weak_kind: str = "orm"
    """orm or prm: the weak supervisor must give a probability."""
    student_kind: str = "orm"
    """orm (trains on the weak probabilities or labels) or simpo (pairs built from the weak labels)."""
    hard_labels: bool = True
    """Weak labels as 1 for the weak verifier's top-scored share of samples, the share being the right samples' share
    in its own training data (True), or the weak probability itself (False, orm student only)."""
    confidence_alpha: float = 0.0
    """orm student: weight of the auxiliary confidence loss (0: off)."""
    weak_fraction: float = 0.5
    """Share of the data's problems the weak verifier trains on; the rest is the student's (held out from the weak)."""
    eval_data: str | None = None
    """Labelled samples of problems no verifier trains on (a `score verifier data` folder on the test split)."""


@dataclass
class VerifierTrainConfig(OptimizerConfig):
    steps: int = 50
    batch_size: int = 16
    """Rows (orm, prm) or pairs (simpo) per step, drawn epoch by epoch from the data."""
    max_length: int = 512
    """Longer rows are cut from the left (the problem's start), keeping the whole solution when it fits."""


@dataclass
class VerifierConfig:
    output_dir: str = "runs/verifier"
    """data/ (from `score verifier data`), metrics.jsonl, config.yaml, checkpoints/step_N/, final/ (the verifier)."""
    init_from: str | None = None
    """Start the verifier from this folder instead of model.path."""
    seed: int = 0
    resume: bool = False
    """`score verifier train`: continue from the newest checkpoint in output_dir."""
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(n=8))
    """How the generators sample (engine, n, temperature, max_new_tokens)."""
    data: DataConfig = field(default_factory=DataConfig)
    verifier: VerifierSpec = field(default_factory=VerifierSpec)
    train: VerifierTrainConfig = field(default_factory=VerifierTrainConfig)
    w2s: W2sConfig = field(default_factory=W2sConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    """learner.num_ranks must be 1: a verifier trains in one learner actor."""
    ray: RayConfig = field(default_factory=RayConfig)
    log: dict[str, Any] = field(default_factory=lambda: {"tensorboard": False, "wandb_project": None})

    def data_dir(self) -> Path:
        return Path(self.data.path) if self.data.path else Path(self.output_dir) / "data"


_CHOICES = {
    "verifier.kind": ("orm", "simpo", "prm"),
    "verifier.orm_head": ("final", "every"),
    "verifier.prm_aggregate": ("min", "prod"),
    "data.format": ("jsonl", "hf"),
    "data.steps.split": ("newline", "regex", "chars"),
    "w2s.weak_kind": ("orm", "prm"),
    "w2s.student_kind": ("orm", "simpo"),
}


def load_verifier_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> VerifierConfig:
    cfg = merge_config(VerifierConfig, path, overrides)
    validate_verifier(cfg)
    return cfg


def validate_verifier(cfg: VerifierConfig) -> None:
    validate_shared(cfg)
    check_choices(cfg, _CHOICES)
    for model in cfg.data.models:
        if not (Path(model) / "config.json").is_file():
            raise ConfigError(f"data.models: {model!r} is not a model folder (no config.json there); check the path")
    check_positive({"data.problems": cfg.data.problems, "rollout.n": cfg.rollout.n, "train.steps": cfg.train.steps,
                    "train.batch_size": cfg.train.batch_size, "data.prm_completions": cfg.data.prm_completions,
                    "verifier.pairs_per_problem": cfg.verifier.pairs_per_problem,
                    "data.steps.every": cfg.data.steps.every})
    if cfg.data.steps.split == "regex" and not cfg.data.steps.pattern:
        raise ConfigError("data.steps.pattern: split=regex needs a pattern, e.g. '[.!?](?=\\s)'")
    if cfg.learner.num_ranks != 1:
        raise ConfigError(f"learner.num_ranks: a verifier trains in one learner actor; set 1, not {cfg.learner.num_ranks}")
    if cfg.data.cotnpot.filter and not cfg.data.cotnpot.enabled:
        raise ConfigError("data.cotnpot.filter needs data.cotnpot.enabled=true")
    if not 0 < cfg.w2s.weak_fraction < 1:
        raise ConfigError(f"w2s.weak_fraction: must be in (0, 1), got {cfg.w2s.weak_fraction}")
    if not 0 <= cfg.w2s.confidence_alpha < 1:
        raise ConfigError(f"w2s.confidence_alpha: must be in [0, 1), got {cfg.w2s.confidence_alpha}")
    if not 0 <= cfg.verifier.confidence_alpha < 1:
        raise ConfigError(f"verifier.confidence_alpha: must be in [0, 1), got {cfg.verifier.confidence_alpha}")
    if cfg.verifier.simpo_beta <= 0:
        raise ConfigError(f"verifier.simpo_beta: must be > 0, got {cfg.verifier.simpo_beta}")
