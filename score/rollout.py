"""Two-attempt rollouts: [user: x] [assistant: y1] [user: p] [assistant: y2], built from token ids.

The token ids of y1 are kept exactly as the engine generated them. The tokens between y1 and y2 (end of the assistant
turn, the user's correction instruction, the start of the next assistant turn) are rendered once with the model's
own chat template and appended, so there is no decode/re-encode drift. Masks are built where tokens are appended.

An environment that gives feedback (`Environment.feedback`) replaces the instruction with its feedback on y1; those
tokens sit where the instruction's did and are masked the same way (never trained on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from envs.base import Environment, Problem, clip_feedback
from score.engines.base import Completion, SamplingParams

_PROBE_USER, _PROBE_ASSISTANT = "PROBE-USER-7f3a", "PROBE-ASSISTANT-9c1e"


@dataclass
class Trajectory:
    """One sample: both attempts of one problem, with their token ids, log-probs and rewards."""

    problem: Problem
    group: int
    """Index of the prompt within the step: samples of the same prompt share it (for the leave-one-out baseline)."""
    prompt_ids: list[int]
    y1: Completion
    between_ids: list[int] = field(default_factory=list)
    y2: Completion | None = None
    y1_text: str = ""
    y2_text: str = ""
    instruction: str = ""
    """The user message between y1 and y2: the correction instruction, or the environment's feedback on y1."""
    r1: float = 0.0
    r2: float = 0.0

    @property
    def input_ids(self) -> list[int]:
        assert self.y2 is not None
        return self.prompt_ids + self.y1.token_ids + self.between_ids + self.y2.token_ids

    @property
    def turn_ids(self) -> list[int]:
        """0 for prompt and instruction tokens, 1 for y1 tokens, 2 for y2 tokens (aligned with input_ids)."""
        assert self.y2 is not None
        return (
            [0] * len(self.prompt_ids)
            + [1] * len(self.y1.token_ids)
            + [0] * len(self.between_ids)
            + [2] * len(self.y2.token_ids)
        )

    @property
    def rollout_logprobs(self) -> list[float]:
        """The engine's log-probs, aligned with input_ids (0 where nothing was generated)."""
        assert self.y2 is not None
        return (
            [0.0] * len(self.prompt_ids)
            + self.y1.logprobs
            + [0.0] * len(self.between_ids)
            + self.y2.logprobs
        )


class ChatRenderer:
    """Turns conversations into token ids with a tokenizer's chat template."""

    def __init__(self, tokenizer) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "the tokenizer has no chat template; SCoRe renders both attempts as a conversation. "
                "Set tokenizer.chat_template in the model folder's tokenizer_config.json."
            )
        self.tokenizer = tokenizer
        self._between_cache: dict[str, list[int]] = {}
        # Strings the tokenizer turns into control tokens (<|im_end|>, ...): feedback may quote them from model output.
        self._special = sorted({t for t in [*tokenizer.all_special_tokens,
                                            *(a.content for a in tokenizer.added_tokens_decoder.values() if a.special)]
                                if t}, key=len, reverse=True)

    def _text(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def first_turn(self, messages: list[dict[str, str]]) -> list[int]:
        return self.encode(self._text(messages, add_generation_prompt=True))

    def inert(self, text: str) -> str:
        """`text` with every control-token string broken by a zero-width space, so that quoted model output cannot
        end the user turn or open a turn of its own: it stays text in the template's user message."""
        for token in self._special:
            if token in text:
                text = text.replace(token, token[0] + "\u200b" + token[1:])
        return text

    def between_turns(self, instruction: str, y1_ids: list[int]) -> list[int]:
        """Ids that close the assistant turn of y1, add [user: instruction] and open the next assistant turn.

        The template's own closing text is rendered once. Whether y1 already closed its turn is decided by the last
        token y1 actually generated, not by `tokenizer.eos_token`: if that token is the template's end-of-turn token
        (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`) it is not repeated. Otherwise (y1 hit the length limit, or the
        engine stopped on another EOS from the model's generation_config, e.g. Llama-3's `<|end_of_text|>`) the turn
        is closed here, so the next turn never starts inside an unclosed one. The instruction is made `inert` first
        (it may be feedback that quotes model output).
        """
        instruction = self.inert(instruction)
        if len(self._between_cache) > 4096:  # feedback makes instructions vary; keep the cache bounded
            self._between_cache.clear()
        if instruction not in self._between_cache:
            probe = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ASSISTANT}]
            before = self._text(probe, add_generation_prompt=False)
            after = self._text(probe + [{"role": "user", "content": instruction}], add_generation_prompt=True)
            if not after.startswith(before):
                raise ValueError("the chat template renders earlier turns differently once a turn is added")
            text = before[before.rindex(_PROBE_ASSISTANT) + len(_PROBE_ASSISTANT) :] + after[len(before) :]
            self._between_cache[instruction] = self.encode(text)
        between = self._between_cache[instruction]
        if y1_ids and between and y1_ids[-1] == between[0]:
            return between[1:]
        return between

    @property
    def end_of_turn_id(self) -> int:
        """The token the template closes an assistant turn with (the first token after an assistant message)."""
        return self.between_turns("", [])[0]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


Generate = Callable[[list[list[int]], SamplingParams], list[Completion]]
Score = Callable[[list[str], list[Problem]], list[float]]
Feedback = Callable[[list[str], list[Problem]], list["str | None"]]
"""`feedbacks(attempts, problems)`: an environment's `feedbacks`, or the reward pool's that runs it on its workers."""


def feedback_hook(env: Environment, feedbacks: Feedback | None = None) -> Feedback | None:
    """The feedback callable to use for `env`: None where it gives none (SCoRe's fixed instruction, and no calls),
    else `feedbacks` (e.g. the reward pool's) or the environment's own."""
    if env.feedback_kind == "intrinsic":
        return None
    return feedbacks or env.feedbacks


def next_instructions(env: Environment, attempts: list[str], problems: list[Problem],
                      feedback: Feedback | None) -> list[str]:
    """The user message after each attempt: the correction instruction, or the environment's feedback on the attempt
    (cut to `env.feedback_max_chars`, control characters removed) where it gives some."""
    if feedback is None or not attempts:
        return [env.correction_instruction] * len(attempts)
    said = feedback(attempts, problems)
    if len(said) != len(attempts):
        raise RuntimeError(f"env {env.name!r}: feedbacks returned {len(said)} messages for {len(attempts)} attempts")
    return [env.correction_instruction if text is None else clip_feedback(text, env.feedback_max_chars)
            for text in said]


def two_attempt_rollout(
    problems: list[Problem],
    env: Environment,
    renderer: ChatRenderer,
    generate: Generate,
    *,
    n: int,
    params: SamplingParams,
    feedback: Feedback | None = None,
) -> list[Trajectory]:
    """Generate both attempts for `n` samples of every problem (rewards are assigned by `assign_rewards`).

    Generation is two-phase and batched: all turn-1 prompts, then all turn-2 prompts. Samples of problem i are
    consecutive and share group i. With `feedback` (see `feedback_hook`), y2's prompt carries the environment's
    feedback on y1 instead of the correction instruction.
    """
    prompts = [renderer.first_turn(env.first_turn_messages(p)) for p in problems]
    trajectories = [
        Trajectory(problem=p, group=i, prompt_ids=prompts[i], y1=Completion([], [], False))
        for i, p in enumerate(problems)
        for _ in range(n)
    ]
    first = generate([t.prompt_ids for t in trajectories], params)
    for t, completion in zip(trajectories, first, strict=True):
        t.y1 = completion
        t.y1_text = renderer.decode(completion.token_ids)
    instructions = next_instructions(env, [t.y1_text for t in trajectories], [t.problem for t in trajectories],
                                     feedback)
    for t, instruction in zip(trajectories, instructions, strict=True):
        t.instruction = instruction
        t.between_ids = renderer.between_turns(instruction, t.y1.token_ids)

    second_params = SamplingParams(
        temperature=params.temperature, top_p=params.top_p, max_new_tokens=params.max_new_tokens, seed=params.seed + 1
    )
    second = generate([t.prompt_ids + t.y1.token_ids + t.between_ids for t in trajectories], second_params)
    for t, completion in zip(trajectories, second, strict=True):
        t.y2 = completion
        t.y2_text = renderer.decode(completion.token_ids)
    return trajectories


def assign_rewards(trajectories: list[Trajectory], score: Score) -> None:
    """Score both attempts of every trajectory in one batch call."""
    texts = [t.y1_text for t in trajectories] + [t.y2_text for t in trajectories]
    rewards = score(texts, [t.problem for t in trajectories] * 2)
    for i, t in enumerate(trajectories):
        t.r1, t.r2 = float(rewards[i]), float(rewards[len(trajectories) + i])
