"""Run configuration: plain dataclasses, loaded from YAML and overridden from the command line.

`score train cfg.yaml algo.alpha=5 rollout.n=4` merges, in order: these defaults, the YAML file, the overrides.
OmegaConf checks every key and type against the dataclasses, so a typo fails at start with the key's full name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


@dataclass
class ModelConfig:
    path: str = "???"
    """Base model (Hugging Face folder). It is also the frozen reference of the KL term in both stages."""
    dtype: str = "float32"
    """Learner precision: float32 or bfloat16."""


@dataclass
class EnvConfig:
    name: str = "arithmetic"
    """Environment: a built-in name, a plug-in name (entry point `score.envs`) or 'module.path:ClassName'."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the environment's constructor."""
    train_split: str = "train"
    """Split the training prompts come from."""


@dataclass
class RolloutConfig:
    engine: str = "auto"
    """Generation engine: vllm, hf, or auto (vllm where it is installed, else hf)."""
    num_engines: int = 1
    """Rollout actors, each holding one engine; prompts are sharded across them."""
    n: int = 4
    """Samples per prompt (the leave-one-out baseline needs n >= 2)."""
    temperature: float = 1.0
    """Sampling temperature of both attempts. `score train` requires 1.0 (the paper's value): the learner's log-probs
    are the untempered model's, so any other value would be off-policy."""
    top_p: float = 1.0
    """Nucleus sampling threshold; `score train` requires 1.0 for the same reason (no top-k either: engines sample
    the full distribution and ignore the model's generation_config)."""
    max_new_tokens: int = 64
    """Token budget of each attempt."""
    weight_sync: str = "blob"
    """How new weights reach the engines: blob (flat buckets in the engines' dtype through Ray's object store; CPU
    and GPU), or, GPU-only with the vLLM engine, nccl (learner and engines on different GPUs) or ipc (sharing a
    GPU), via vLLM's weight transfer."""
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra engine arguments (vLLM: kv_cache_memory_bytes, tensor_parallel_size, ...)."""
    num_cpus: float = 1.0
    """CPUs reserved for each rollout actor."""
    threads: int = 0
    """Torch threads of a transformers (hf) engine while it generates; 0: the node's cores divided by the engines on
    that node (in the synchronous loop the learner waits meanwhile; under train.async, by twice that, since the
    learner updates meanwhile). vLLM on CPU places its own threads."""
    num_gpus: float = 0.0
    """GPUs reserved for each rollout actor."""
    timeout_s: float = 1800.0
    """A generation or weight sync that takes longer stops the run with an error instead of hanging."""


@dataclass
class AlgoConfig:
    alpha: float = 10.0
    """Stage II progress bonus: turn-2 reward is r2 + alpha * (r2 - r1)."""
    beta1: float = 0.01
    """KL weight on turn 2 (Stage I) and on both turns (Stage II)."""
    beta2: float = 0.1
    """Stage I KL weight on turn 1: keeps attempt 1 close to the base model."""
    kl_mode: str = "reward"
    """Where the KL goes: 'reward' (k1 estimator folded into the per-token reward) or 'loss' (k3 estimator)."""
    baseline: str = "rloo"
    """Per-turn baseline: rloo (leave-one-out over the n samples of a prompt), mean (batch mean) or none."""
    loss_agg: str = "token_mean"
    """How token losses are averaged: token_mean (over all trained tokens) or seq_mean (sum per sequence, mean)."""
    tis_cap: float = 0.0
    """Truncated importance sampling cap for rollout/learner log-prob mismatch; 0 disables it."""
    truncated: str = "zero"
    """An attempt that hit rollout.max_new_tokens: 'zero' (its task reward is 0, whatever the text scored), 'mask'
    (its tokens are left out of the loss and the KL), or 'score' (rewarded as scored: only for tasks whose answers
    cannot run past the limit, or models that never end a turn, like the tests' random ones; a cut-off text can then
    earn reward 1)."""


@dataclass
class OptimizerConfig:
    """The optimizer settings every training command shares."""

    lr: float = 1e-5
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping threshold (global L2 norm)."""
    micro_batch_size: int = 8
    """Samples per forward/backward; gradients are accumulated over the batch."""
    save_every: int = 0
    """Save a resumable checkpoint every this many steps (0: only at the end)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass: less memory, about a third more compute."""
    logprob_chunk_tokens: int = 1024
    """Positions per chunk of the output layer when computing log-probs: the largest logits tensor is
    [chunk, vocab] in fp32, never [batch, length, vocab]."""


@dataclass
class TrainConfig(OptimizerConfig):
    steps: int = 10
    """Number of RL updates."""
    prompts_per_step: int = 8
    """Distinct prompts per step; the batch has prompts_per_step * rollout.n two-attempt samples."""
    async_rollouts: bool = False
    """Written `train.async` (accepted in YAML files and overrides; `async` is a Python keyword, so the field has
    this name). True: generate step t+1's rollouts while the learner updates on step t's, with the weights of step
    t-1, then push the new weights. Every rollout after the first is one update behind the learner (logged as
    `staleness`), so it needs algo.tis_cap > 0: truncated importance sampling with the engines' sampling log-probs
    corrects for it. Prompts and sampling seeds are those of the synchronous run; the samples differ."""
    share_prompt: bool = True
    """Compute each prompt once for its rollout.n samples in the update (score.packing: one row per prompt, its
    samples after it, a mask that keeps them apart): the same log-probs and gradients on fewer token positions. Needs
    the model's attention to be sdpa or eager; other implementations run unpacked."""
    share_prompt_max_tokens: int = 2048
    """Widest packed row; a prompt's samples that would not fit are split over several rows (each repeats the
    prompt). Attention over a packed row grows with the square of its width."""


@dataclass
class EvalConfig:
    every: int = 0
    """Evaluate on the held-out split every this many steps, logged as eval_acc_t1, ... (0: never)."""
    split: str = "test"
    """The held-out split."""
    limit: int = 64
    """Held-out problems per evaluation (the first `limit` of the split, the same ones every time)."""
    max_new_tokens: int | None = None
    """Token budget per attempt; None: rollout.max_new_tokens."""


@dataclass
class RayConfig:
    address: str | None = None
    """Ray cluster address; None starts a local cluster."""
    num_reward_workers: int = 1
    """Reward-scoring actors."""
    learner_num_cpus: float = 1.0
    """CPUs reserved for each learner rank (learner.num_ranks actors)."""
    learner_num_gpus: float = 0.0
    """GPUs reserved for each learner rank: 1 on a GPU cluster (the rank's FSDP shard and NCCL live there)."""
    learner_threads: int = 0
    """Torch threads of each learner rank while it works; 0: the node's cores divided by the ranks on that node (in
    the synchronous loop the engines wait meanwhile; under train.async, by twice that). Ray alone would give each
    actor num_cpus threads."""


@dataclass
class LearnerConfig:
    num_ranks: int = 1
    """Learner ranks (Ray actors, one device each on GPUs). With N > 1 the policy, its gradients and AdamW state
    and the reference are sharded N ways with FSDP2, and each step's samples are split across the ranks; the update
    equals the 1-rank one. Each rank gets ray.learner_num_cpus CPUs and ray.learner_num_gpus GPUs."""
    placement: str = "PACK"
    """Placement group strategy of the ranks: PACK (as few nodes as possible), SPREAD, STRICT_PACK, STRICT_SPREAD."""
    sync_bucket_mb: float = 256.0
    """Weight sync to the engines streams the policy in buckets of about this size (whole decoder layers)."""
    timeout_s: float = 1800.0
    """A learner call (or a collective between ranks) that takes longer stops the run with an error."""


@dataclass
class Config:
    stage: int = 1
    """SCoRe stage: 1 (initialisation, strong KL on attempt 1) or 2 (both attempts rewarded, progress bonus)."""
    output_dir: str = "runs/score"
    """Where metrics.jsonl, the saved config and checkpoints go."""
    init_from: str | None = None
    """Policy initialisation (Stage II: the Stage I run's final/ folder). None: the base model."""
    seed: int = 0
    """Fixes data order, sampling and initialisation."""
    resume: bool = False
    """Continue from the newest checkpoint in output_dir/checkpoints."""
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    log: dict[str, Any] = field(default_factory=lambda: {"tensorboard": True, "wandb_project": None})
    """Logging: tensorboard (bool), wandb_project (str or None: Weights & Biases off)."""


class ConfigError(ValueError):
    """A configuration problem, with the key that causes it and how to fix it."""


_SHARED_CHOICES = {
    "rollout.engine": ("auto", "vllm", "hf"),
    "rollout.weight_sync": ("blob", "nccl", "ipc"),
    "model.dtype": ("float32", "bfloat16"),
    "learner.placement": ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
}
_ALGO_CHOICES = {
    "algo.kl_mode": ("reward", "loss"),
    "algo.baseline": ("rloo", "mean", "none"),
    "algo.loss_agg": ("token_mean", "seq_mean"),
    "algo.truncated": ("zero", "mask", "score"),
}


def check_choices(cfg: Any, choices: dict[str, tuple[str, ...]]) -> None:
    """Each dotted key of `cfg` (e.g. "data.steps.split") holds one of its allowed values."""
    for key, allowed in choices.items():
        value = cfg
        for name in key.split("."):
            value = getattr(value, name)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")


def check_positive(values: dict[str, int]) -> None:
    """Each count (keyed by its config key) is at least 1."""
    for key, value in values.items():
        if value < 1:
            raise ConfigError(f"{key}: must be >= 1, got {value}")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML file <- `key=value` overrides, validated. Raises ConfigError naming the bad key."""
    cfg = merge_config(Config, path, overrides)
    validate(cfg)
    return cfg


KEY_ALIASES = {("train", "async"): "async_rollouts"}
"""Config keys users write that cannot be dataclass fields (Python keywords): (section, key) -> field name."""


def _unalias(loaded: Any) -> Any:
    """A loaded YAML (or dotlist) config with every `KEY_ALIASES` key renamed to its field."""
    for (section, key), field_name in KEY_ALIASES.items():
        part = loaded.get(section) if hasattr(loaded, "get") else None
        if part is not None and hasattr(part, "keys") and key in part:
            if field_name in part:
                raise ConfigError(f"{section}.{key} and {section}.{field_name} are the same setting; keep one")
            part[field_name] = part.pop(key)
    return loaded


def merge_config(schema: type[T], path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """The dataclass `schema`'s defaults <- YAML file <- `key=value` overrides, type-checked by OmegaConf."""
    try:
        merged = OmegaConf.structured(schema)
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"config file {str(path)!r} does not exist")
            merged = OmegaConf.merge(merged, _unalias(OmegaConf.load(path)))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value (e.g. algo.alpha=5)")
        merged = OmegaConf.merge(merged, _unalias(OmegaConf.from_dotlist(list(overrides))))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        message = str(getattr(err, "msg", err)).splitlines()[0]
        raise ConfigError(f"config key {key!r}: {message}") from None


def validate(cfg: Config) -> None:
    """Checks that types alone cannot express. Paths are checked here so that a typo fails before Ray starts."""
    validate_shared(cfg)
    check_choices(cfg, _ALGO_CHOICES)
    if cfg.stage not in (1, 2):
        raise ConfigError(f"stage: {cfg.stage!r} must be 1 or 2")
    check_positive({"rollout.n": cfg.rollout.n, "train.prompts_per_step": cfg.train.prompts_per_step,
                    "train.share_prompt_max_tokens": cfg.train.share_prompt_max_tokens})
    if cfg.algo.baseline == "rloo" and cfg.rollout.n < 2:
        raise ConfigError("algo.baseline=rloo needs rollout.n >= 2 (or set algo.baseline=mean or none)")
    for key in ("alpha", "beta1", "beta2", "tis_cap"):
        if getattr(cfg.algo, key) < 0:
            raise ConfigError(f"algo.{key}: must be >= 0, got {getattr(cfg.algo, key)}")
    # The learner scores tokens under the model's raw distribution (temperature 1, nothing truncated). Sampling from
    # anything else would make every update silently off-policy, so it is refused rather than half-corrected.
    if cfg.rollout.temperature != 1.0:
        raise ConfigError(f"rollout.temperature: training samples at 1.0 (the paper's setting; the learner's log-probs "
                          f"are those of the untempered model), got {cfg.rollout.temperature}. Set "
                          "rollout.temperature=1.0; greedy and other temperatures are for `score eval`.")
    if cfg.train.async_rollouts and cfg.algo.tis_cap <= 0:
        raise ConfigError("train.async=true needs algo.tis_cap > 0: its rollouts come from the weights one update "
                          "behind the learner, and truncated importance sampling with the engines' sampling "
                          "log-probs corrects for that. Set algo.tis_cap (e.g. algo.tis_cap=2) or train.async=false")
    if cfg.rollout.top_p != 1.0:
        raise ConfigError(f"rollout.top_p: training samples the full distribution (top_p=1.0), got "
                          f"{cfg.rollout.top_p}; nucleus sampling would make the learner's log-probs off-policy.")


def validate_shared(cfg: Any) -> None:
    """The checks of the sections every training command shares: model, init_from, rollout, train, ray."""
    check_choices(cfg, _SHARED_CHOICES)
    if cfg.model.path == "???":
        raise ConfigError("model.path is required: a Hugging Face model folder (the base and reference model)")
    for key, value in (("model.path", cfg.model.path), ("init_from", cfg.init_from)):
        if value is not None and not (Path(value) / "config.json").is_file():
            raise ConfigError(f"{key}: {value!r} is not a model folder (no config.json there); check the path")
    check_positive({
        "rollout.num_engines": cfg.rollout.num_engines,
        "rollout.max_new_tokens": cfg.rollout.max_new_tokens,
        "train.micro_batch_size": cfg.train.micro_batch_size,
        "train.logprob_chunk_tokens": cfg.train.logprob_chunk_tokens,
        "ray.num_reward_workers": cfg.ray.num_reward_workers,
        "learner.num_ranks": cfg.learner.num_ranks,
    })
    if cfg.rollout.weight_sync != "blob" and cfg.rollout.engine == "hf":
        raise ConfigError(f"rollout.weight_sync={cfg.rollout.weight_sync} needs rollout.engine=vllm (GPU)")
    if cfg.rollout.temperature < 0:
        raise ConfigError(f"rollout.temperature: must be >= 0, got {cfg.rollout.temperature}")
    for key, value in (("rollout.threads", cfg.rollout.threads), ("ray.learner_threads", cfg.ray.learner_threads)):
        if value < 0:
            raise ConfigError(f"{key}: must be >= 0 (0 = auto: the node's cores / processes sharing them), got {value}")
    if cfg.learner.sync_bucket_mb <= 0:
        raise ConfigError(f"learner.sync_bucket_mb: must be > 0, got {cfg.learner.sync_bucket_mb}")


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
