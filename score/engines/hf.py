"""A plain transformers generation engine: the fallback where vLLM is not installed, and the reference in tests."""

from __future__ import annotations

import safetensors.torch
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from score.engines.base import Completion, SamplingParams
from score.flat_weights import FlatBucket, tensors
from score.weights import load_shareable_state


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


class HFEngine:
    """Batched `model.generate` with left padding; log-probs come from the raw (pre-temperature) logits."""

    def __init__(self, model_path: str, *, dtype: str = "float32", batch_size: int = 64, **_: object) -> None:
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=_dtype(dtype)).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id])
        # transformers fills every sampling setting not passed to generate() from the model's generation_config
        # (repetition penalty, top-k, ...), so samples would come from another distribution than the raw log-probs
        # the learner trains on. Only its stop tokens are kept; every sampling setting is passed explicitly below.
        self.model.generation_config = GenerationConfig(eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id)
        self.batch_size = batch_size

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        torch.manual_seed(params.seed)
        completions: list[Completion] = []
        for start in range(0, len(prompts), self.batch_size):
            completions += self._generate_batch(prompts[start : start + self.batch_size], params)
        return completions

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts])
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        sample = params.temperature > 0
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            do_sample=sample,
            temperature=params.temperature if sample else None,
            top_p=params.top_p if sample else None,
            top_k=0 if sample else None,
            min_p=None,
            typical_p=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            bad_words_ids=None,
            suppress_tokens=None,
            begin_suppress_tokens=None,
            max_new_tokens=params.max_new_tokens,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        new_tokens = out.sequences[:, width:]
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1)
        token_logprobs = logprobs.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        completions = []
        for row in range(len(prompts)):
            ids = new_tokens[row].tolist()
            stop = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
            end = len(ids) if stop is None else stop + 1
            completions.append(
                Completion(token_ids=ids[:end], logprobs=token_logprobs[row, :end].tolist(), finished=stop is not None)
            )
        return completions

    def update_weights(self, weights: bytes | FlatBucket, partial: bool = False) -> None:
        """Copy new weights into the model: a `FlatBucket` (zero-copy views of its buffer, which Ray maps from the
        object store) or a safetensors blob. Tensors in another dtype are cast by the copy."""
        state = dict(tensors(weights)) if isinstance(weights, FlatBucket) else safetensors.torch.load(weights)
        if partial:  # one bucket of a stream: only names the model has
            unexpected = self.model.load_state_dict(state, strict=False).unexpected_keys
            if unexpected:
                raise ValueError(f"update_weights: names not in the model: {unexpected[:5]}")
        else:
            load_shareable_state(self.model, state)  # a tied output layer arrives once, under the embedding's name

    @torch.no_grad()
    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        result = []
        for seq in sequences:
            ids = torch.tensor([seq])
            logprobs = self.model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)
            result.append(logprobs.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1).tolist())
        return result

    def shutdown(self) -> None:
        del self.model
