"""A score environment inside OpenRLHF (0.10 and later): as a multi-turn agent, or as a reward function.

`score export openrlhf` writes a small Python file that OpenRLHF loads by path; the file imports this module, which
never imports OpenRLHF itself.

- The agent file (`--train.agent_func_path agent_func.py`) defines `AgentExecutor`, a `MultiTurnAgentExecutor`
  whose `AgentInstance` runs `SelfCorrectionEpisode`: attempt 1 answers the prompt, and each later attempt follows
  the environment's correction instruction (or its feedback on the attempt, where it gives some), rendered with the
  model's chat template exactly as `score train` renders it. Rewards follow OpenRLHF's convention: each step returns a 0-d tensor under "rewards" and OpenRLHF adds them up
  into the trajectory's reward. Step 1 returns r(y_1) and step k > 1 returns (1 + alpha) * (r(y_k) - r(y_{k-1})), so
  the sum is r(y_K) + alpha * (r(y_K) - r(y_1)) (or the same for the last attempt reached, if OpenRLHF's token budget
  ends the episode early); "scores" (for dynamic filtering) is the last attempt's reward.
- The reward file (`--reward.remote_url reward_func.py`) defines `reward_func(queries, prompts, labels)`: the
  environment's reward of one single-turn response.
"""

from __future__ import annotations

import asyncio
import pprint
import re
from pathlib import Path
from typing import Any

from envs import Problem
from score.interop.problems import problem_index
from score.rollout import ChatRenderer, feedback_hook, next_instructions

_TRAILING_SPECIAL = re.compile(r"(?:\s*(?:<\|[^<>|\s]+\|>|</s>|<eos>|<end_of_turn>))+\s*$")


def response_of(query: str, prompt: str) -> str:
    """The model's response in an OpenRLHF query (prompt + response, decoded with special tokens kept), without the
    prompt and without the end-of-turn token(s) at its end.

    >>> response_of("<|im_start|>user\\n2+3=<|im_end|>\\n<|im_start|>assistant\\n5<|im_end|>",
    ...             "<|im_start|>user\\n2+3=<|im_end|>\\n<|im_start|>assistant\\n")
    '5'
    >>> response_of("[INST] 2+3= [/INST] The answer is 5</s>", "[INST] 2+3= [/INST]")
    ' The answer is 5'
    """
    response = query.removeprefix(prompt)
    return _TRAILING_SPECIAL.sub("", response)


def score_queries(env_name: str, env_kwargs: dict[str, Any], queries: list[str], prompts: list[str],
                  labels: list[Any]) -> dict[str, Any]:
    """OpenRLHF's reward_func contract: rewards (a tensor, one per query), scores (the same, in [0, 1] for binary
    environments) and extra_logs."""
    import torch

    index = problem_index(env_name, env_kwargs)
    problems = [index.find(label, prompt) for prompt, label in zip(prompts, labels, strict=True)]
    responses = [response_of(q, p) for q, p in zip(queries, prompts, strict=True)]
    rewards = torch.tensor([float(r) for r in index.env.rewards(responses, problems)])
    return {"rewards": rewards, "scores": rewards, "extra_logs": {}}


class SelfCorrectionEpisode:
    """One prompt's K attempts, driven by OpenRLHF's `MultiTurnAgentExecutor` through `reset` and `step`.

    OpenRLHF tokenizes `environment_feedback` and appends it after the attempt's tokens (which end with the
    end-of-turn token), so the feedback is the rest of the turn boundary: [user: instruction], then the opening of
    the next assistant turn.
    """

    renderer: ChatRenderer | None = None  # set from the executor's tokenizer (`use_tokenizer`); shared per process

    @classmethod
    def use_tokenizer(cls, tokenizer) -> None:
        if cls.renderer is None or cls.renderer.tokenizer is not tokenizer:
            cls.renderer = ChatRenderer(tokenizer)

    def __init__(self, env_name: str, env_kwargs: dict[str, Any], *, attempts: int = 2, alpha: float = 0.0) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self.index = problem_index(env_name, env_kwargs)
        self.attempts, self.alpha = attempts, alpha
        self.problem: Problem | None = None
        self.texts: list[str] = []
        self.rewards: list[float] = []

    def reset(self, states: dict[str, Any]) -> dict[str, Any]:
        self.problem = self.index.find(states["label"], states["observation"])
        self.texts, self.rewards = [], []
        return {"observation": states["observation"]}

    def next_instruction(self, attempt: str) -> str:
        """The user turn before the next attempt: SCoRe's instruction, which never says whether the attempt was
        right, or, for an environment that gives feedback (`env.kwargs.feedback`, a `feedback` hook), its feedback on
        `attempt`, bounded as in `score train`."""
        env = self.index.env
        return next_instructions(env, [attempt], [self.problem], feedback_hook(env))[0]

    async def step(self, states: dict[str, Any]) -> dict[str, Any]:
        import torch

        assert self.problem is not None, "step before reset"
        text = states["action_text"]
        done = len(self.rewards) + 1 >= self.attempts
        # Feedback and rewards may take seconds (sympy, a sandboxed program): keep them off OpenRLHF's event loop.
        # Feedback first: a code environment then scores the attempt with the verdict it ran for the feedback.
        instruction = None if done else await asyncio.to_thread(self.next_instruction, text)
        (reward,) = await asyncio.to_thread(self.index.env.rewards, [text], [self.problem])
        self.texts.append(text)
        self.rewards.append(float(reward))
        # Telescoping step rewards: whatever the last attempt reached, their sum is r(last) + alpha * (r(last) - r(1)).
        step_reward = self.rewards[0] if len(self.rewards) == 1 else (1 + self.alpha) * (reward - self.rewards[-2])
        feedback = ""
        if not done:
            if self.renderer is None:
                raise RuntimeError("SelfCorrectionEpisode.use_tokenizer was not called (the exported "
                                   "AgentExecutor.execute does it)")
            # the attempt OpenRLHF generated ended its turn (with the template's end-of-turn token)
            between = self.renderer.between_turns(instruction, [self.renderer.end_of_turn_id])
            feedback = self.renderer.tokenizer.decode(between, skip_special_tokens=False)
        logs = {f"acc_t{k + 1}": float(r >= 0.5) for k, r in enumerate(self.rewards)}
        if len(self.rewards) >= 2:
            first, second = self.rewards[0], self.rewards[1]
            logs.update(delta_i2c=float(first < 0.5 <= second), delta_c2i=float(second < 0.5 <= first))
        return {
            "rewards": torch.tensor(step_reward),
            "scores": self.rewards[-1],
            "environment_feedback": feedback,
            "done": done,
            "sampling_params": states.get("sampling_params"),
            "extra_logs": logs,
        }


AGENT_FILE = '''"""OpenRLHF agent: the score environment {env!r}, {attempts} attempts per prompt (self-correction).

Written by `{command}`.
Train with OpenRLHF (0.11: flags as below; 0.10: --agent_func_path, --prompt_data, --input_key, ...):

    python3 -m openrlhf.cli.train_ppo_ray --train.agent_func_path {path} \\
        --data.prompt_dataset PROMPTS.jsonl --data.input_key input --data.label_key label \\
        --data.apply_chat_template ...

where PROMPTS.jsonl comes from `score export openrlhf --env {env} --data PROMPTS.jsonl` (same --env-kwargs).
Attempt 1 answers the prompt; every later attempt sees the conversation so far and the environment's correction
instruction. The step rewards add up to r(y_K) + alpha * (r(y_K) - r(y_1)) with alpha = {alpha} (y_K: the last
attempt reached); "scores" is r(y_K); extra_logs carry acc_t1 ... acc_tK, delta_i2c and delta_c2i.

What OpenRLHF cannot do, and `score train` does: OpenRLHF adds the step rewards into one number per trajectory,
applies it to every generated token, and has one KL coefficient for all of them. SCoRe needs per-turn rewards
(Stage II: r(y1) on attempt 1's tokens, r(y2) + alpha * (r(y2) - r(y1)) on attempt 2's, no discount between turns)
and a per-turn KL (Stage I: a strong beta2 on attempt 1, beta1 on attempt 2). Training with this file is
multi-turn RL on the last attempt's reward, not SCoRe.
"""

from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor

from score.interop.openrlhf import SelfCorrectionEpisode

ENV = {env!r}
ENV_KWARGS = {env_kwargs}
ATTEMPTS = {attempts}
ALPHA = {alpha}


class AgentInstance(AgentInstanceBase):
    def __init__(self, *args, **kwargs):
        self.episode = SelfCorrectionEpisode(ENV, ENV_KWARGS, attempts=ATTEMPTS, alpha=ALPHA)

    async def reset(self, states, **kwargs):
        return self.episode.reset(states)

    async def step(self, states, **kwargs):
        return await self.episode.step(states)


class AgentExecutor(MultiTurnAgentExecutor):
    def __init__(self):
        super().__init__(AgentInstance)

    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, *args, **kwargs):
        SelfCorrectionEpisode.use_tokenizer(hf_tokenizer)  # the turns between attempts use the model's chat template
        return await super().execute(prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, *args,
                                     **kwargs)
'''

REWARD_FILE = '''"""OpenRLHF reward function: the reward of the score environment {env!r} for one single-turn response.

Written by `{command}`.
Train with OpenRLHF (0.11: flags as below; 0.10: --remote_rm_url, --prompt_data, --input_key, ...):

    python3 -m openrlhf.cli.train_ppo_ray --reward.remote_url {path} \\
        --data.prompt_dataset PROMPTS.jsonl --data.input_key input --data.label_key label \\
        --data.apply_chat_template ...

where PROMPTS.jsonl comes from `score export openrlhf --env {env} --data PROMPTS.jsonl` (same --env-kwargs); a
label that is not one of those is taken as the reference answer itself. This scores single-turn answers only; for
self-correction (several attempts) export the agent file instead.
"""

from score.interop.openrlhf import score_queries

ENV = {env!r}
ENV_KWARGS = {env_kwargs}


def reward_func(queries, prompts, labels, **kwargs):
    return score_queries(ENV, ENV_KWARGS, queries, prompts, labels)
'''


def write_agent_file(path: str | Path, env_name: str, env_kwargs: dict[str, Any], *, attempts: int = 2,
                     alpha: float = 0.0, command: str = "score export openrlhf") -> Path:
    """Write the AgentExecutor file OpenRLHF's `--train.agent_func_path` loads."""
    if attempts < 2:
        raise ValueError(f"--attempts must be >= 2 for a self-correction agent, got {attempts}")
    text = AGENT_FILE.format(env=env_name, env_kwargs=pprint.pformat(env_kwargs), attempts=attempts,
                             alpha=float(alpha), path=Path(path).name, command=command)
    return _write(path, text)


def write_reward_file(path: str | Path, env_name: str, env_kwargs: dict[str, Any], *,
                      command: str = "score export openrlhf --kind reward") -> Path:
    """Write the `reward_func(queries, prompts, labels)` file OpenRLHF's `--reward.remote_url` loads."""
    text = REWARD_FILE.format(env=env_name, env_kwargs=pprint.pformat(env_kwargs), path=Path(path).name,
                              command=command)
    return _write(path, text)


def _write(path: str | Path, text: str) -> Path:
    path = Path(path)
    if path.suffix != ".py":
        raise ValueError(f"--out {path}: OpenRLHF loads only .py files")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_prompts(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """OpenRLHF's prompt dataset as JSONL: `input` (chat messages, for --data.apply_chat_template) and `label`."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps({"input": row["messages"], "label": row["label"]}) + "\n")
    return path
