"""Step metrics to OUTPUT_DIR/metrics.jsonl (the contract), TensorBoard and, optionally, Weights & Biases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# metrics.jsonl keys -> namespaced TensorBoard/W&B tags
_NAMESPACE = {
    "acc_t1": "train/acc_t1", "acc_t2": "train/acc_t2", "delta": "train/delta",
    "delta_i2c": "train/delta_i2c", "delta_c2i": "train/delta_c2i",
    "reward_t1": "train/reward_t1", "reward_t2": "train/reward_t2",
    "response_len_t1": "train/response_len_t1", "response_len_t2": "train/response_len_t2",
    "loss": "loss/total", "kl_t1": "loss/kl_t1", "kl_t2": "loss/kl_t2", "grad_norm": "loss/grad_norm",
    "logprob_mismatch": "rollout/logprob_mismatch", "is_clip_frac": "rollout/is_clip_frac",
    "pad_frac": "perf/pad_frac", "tokens": "perf/tokens", "generated_tokens": "perf/generated_tokens",
    "tokens_per_s": "perf/tokens_per_s", "learner_threads": "perf/learner_threads",
}


def tag(key: str) -> str:
    """The namespaced name of a metric: 'acc_t2' -> 'train/acc_t2', 'time_sync' -> 'time/sync'."""
    if key in _NAMESPACE:
        return _NAMESPACE[key]
    for prefix in ("time_", "eval_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return f"train/{key}"


class MetricsLogger:
    def __init__(self, out_dir: Path, *, resume_from_step: int = 0, tensorboard: bool = True,
                 wandb_project: str | None = None, run_config: dict[str, Any] | None = None) -> None:
        self.path = out_dir / "metrics.jsonl"
        # A resumed run drops the lines of steps after its checkpoint (it redoes them), so every step appears once.
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= resume_from_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_from_step + 1 if resume_from_step else None)
        self.wandb = None
        if wandb_project:
            import wandb

            self.wandb = wandb.init(project=wandb_project, dir=str(out_dir), config=run_config, resume="allow")

    def log(self, metrics: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(metrics) + "\n")
        step = int(metrics["step"])
        scalars = {tag(k): v for k, v in metrics.items() if k not in ("step", "stage") and isinstance(v, int | float)}
        if self.tb is not None:
            for name, value in scalars.items():
                self.tb.add_scalar(name, value, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
