"""Build small models and tokenizers offline, for tests, benchmarks and the demo.

Nothing can be downloaded here, so a tokenizer is trained locally with `tokenizers` and a Llama-architecture model
is built from a config with random weights. Both are saved as an ordinary Hugging Face folder that transformers and
vLLM load like any hub model.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tokenizer(corpus: list[str], vocab_size: int = 512):
    """A byte-level BPE tokenizer with single-digit tokens and a ChatML chat template; <|im_end|> ends a turn."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )


def build_tiny_model(
    out_dir: str | Path,
    corpus: list[str],
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 128,
    vocab_size: int = 512,
    max_position_embeddings: int = 512,
    seed: int = 0,
    tie_word_embeddings: bool = False,
    attention_dropout: float = 0.0,
) -> Path:
    """Save a randomly initialised Llama model and its tokenizer to `out_dir`; returns the folder.

    `tie_word_embeddings` shares the output layer with the input embedding, as many small open models do
    (SmolLM2, Qwen2.5 up to 3B); tests use it to check that weight sync and checkpoints handle the shared tensor."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = build_tokenizer(corpus, vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        attention_dropout=attention_dropout,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def default_corpus() -> list[str]:
    """Text covering arithmetic problems, the prompts of the built-in environments and ChatML markup."""
    import random

    from envs.base import CODE_CORRECTION_INSTRUCTION, MATH_CORRECTION_INSTRUCTION, MATH_SYSTEM_PROMPT

    rng = random.Random(0)
    lines = [MATH_SYSTEM_PROMPT, MATH_CORRECTION_INSTRUCTION, CODE_CORRECTION_INSTRUCTION]
    lines += ["Check the answer above and write it again, corrected if needed.", "user assistant system"]
    lines += [f"{rng.randint(0, 999)}{rng.choice('+-*')}{rng.randint(0, 999)}={rng.randint(-999, 9999)}" for _ in range(2000)]
    lines += ["def f(x):\n    return x + 1\n", "The answer is 42. Final Answer: The final answer is $42$."]
    return lines * 3
