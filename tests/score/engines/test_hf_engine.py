"""The transformers engine samples from the raw model distribution whatever the model's generation_config ships.

transformers fills every generate() setting left unset from the model's generation_config; a repetition penalty or
a top-k there would make the samples differ from the raw log-probs the learner trains on.
"""

import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from score.engines.base import SamplingParams
from score.engines.hf import HFEngine
from score.tiny import build_tiny_model, default_corpus

def _model_shipping_a_generation_config(path):
    """A random tiny model whose generation_config sets a strong repetition penalty, top-k 3 and temperature 0.5."""
    build_tiny_model(path, default_corpus(), seed=5)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.generation_config = GenerationConfig(
        do_sample=True, top_k=3, temperature=0.5, repetition_penalty=100.0,
        eos_token_id=model.config.eos_token_id, pad_token_id=model.config.pad_token_id)
    model.save_pretrained(path)
    return path


def test_greedy_ignores_the_shipped_repetition_penalty(tmp_path):
    engine = HFEngine(str(_model_shipping_a_generation_config(tmp_path / "m")))
    # A long prompt covering much of the vocabulary: the raw argmax soon picks one of its tokens, which a
    # repetition penalty of 100 (it counts prompt tokens too) would push away.
    prompt = list(range(5, 205))
    completion = engine.generate([prompt], SamplingParams(temperature=0.0, max_new_tokens=16))[0]
    ids = prompt + completion.token_ids
    with torch.no_grad():
        logits = engine.model(input_ids=torch.tensor([ids])).logits[0, len(prompt) - 1 : -1]
    raw_argmax = logits.argmax(-1).tolist()
    assert completion.token_ids == raw_argmax
    assert set(raw_argmax) & set(prompt)  # the case where the penalty would have changed the choice


def test_sampling_ignores_the_shipped_top_k_and_temperature(tmp_path):
    engine = HFEngine(str(_model_shipping_a_generation_config(tmp_path / "m")))
    prompts = [list(range(5 + i, 15 + i)) for i in range(4)]
    completions = engine.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=16, seed=0))
    # with the shipped top_k=3 merged in, every sampled token would lie in the raw top 3; sampling a random model's
    # full distribution at temperature 1, most do not
    outside = 0
    for prompt, c in zip(prompts, completions):
        with torch.no_grad():
            logits = engine.model(input_ids=torch.tensor([prompt + c.token_ids])).logits[0, len(prompt) - 1 : -1]
        top3 = logits.topk(3, dim=-1).indices
        outside += sum(int(t not in top3[i]) for i, t in enumerate(c.token_ids))
    assert outside > 10, outside
