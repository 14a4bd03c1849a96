"""Turn boundaries under real chat templates whose end-of-turn token is not `tokenizer.eos_token`.

The templates are Qwen2.5's (ChatML; base tokenizer eos `<|endoftext|>`), Llama-3's (`<|eot_id|>` against eos
`<|end_of_text|>`) and Gemma's (`<end_of_turn>` against `<eos>`), written out from their published template strings
(the tool-calling branches left out) on a small locally trained tokenizer that has their special tokens. The
rollout's ids must equal the template's own rendering of the same conversation, token by token.
"""

import pytest

from score.engines.base import Completion, SamplingParams
from score.rollout import ChatRenderer, two_attempt_rollout

QWEN25 = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if (message.role == 'user') or (message.role == 'system' and not loop.first)"
    " or (message.role == 'assistant') %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>'"
    " + '\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)
# name: (template, special tokens, bos, eos, the template's end-of-turn token)
TEMPLATES = {
    "qwen2.5": (QWEN25, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|endoftext|>", "<|im_end|>"),
    "llama3": (LLAMA3, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                        "<|eot_id|>"], "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"),
    "gemma": (GEMMA, ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>",
              "<end_of_turn>"),
}
INSTRUCTION = "There might be an error in the solution above. Please correct it."


def _tokenizer(name: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    template, specials, bos, eos, _ = TEMPLATES[name]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["What is 3 + 4? I think 7. It is 7.", INSTRUCTION, "user assistant model system"] * 20,
                            trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=specials[0],
                                   chat_template=template)


class Scripted:
    """An engine that answers turn 1 and turn 2 with fixed ids (what a model would generate)."""

    def __init__(self, y1: list[int], y2: list[int]) -> None:
        self.replies = [y1, y2]

    def generate(self, prompts, params):
        ids = self.replies.pop(0)
        return [Completion(ids, [-0.1] * len(ids), True) for _ in prompts]


class OneProblemEnv:
    correction_instruction = INSTRUCTION

    def first_turn_messages(self, problem):
        return [{"role": "user", "content": problem.prompt}]


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_rollout_ids_equal_the_templates_rendering(name):
    from envs.base import Problem

    tok = _tokenizer(name)
    end_of_turn = tok.convert_tokens_to_ids(TEMPLATES[name][4])
    assert end_of_turn != tok.eos_token_id  # the case the old eos_token rule got wrong
    renderer = ChatRenderer(tok)
    assert renderer.end_of_turn_id == end_of_turn
    y1 = renderer.encode("I think 7.") + [end_of_turn]  # the model closed its turn itself
    y2 = renderer.encode("It is 7.") + [end_of_turn]
    problem = Problem(id="0", prompt="What is 3 + 4?", reference="7")
    (t,) = two_attempt_rollout([problem], OneProblemEnv(), renderer, Scripted(y1, y2).generate, n=1,
                               params=SamplingParams())
    conversation = [{"role": "user", "content": problem.prompt}, {"role": "assistant", "content": "I think 7."},
                    {"role": "user", "content": INSTRUCTION}, {"role": "assistant", "content": "It is 7."}]
    expected = tok.apply_chat_template(conversation, tokenize=True, return_dict=False)
    got = t.input_ids
    assert got == expected[: len(got)], [tok.convert_ids_to_tokens(x) for x in (got, expected)]
    assert tok.decode(expected[len(got):]).strip() == ""  # only the template's trailing newline is left
    assert t.turn_ids.count(1) == len(y1) and t.turn_ids.count(2) == len(y2)


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_attempt_ended_by_another_eos_or_the_length_limit_gets_its_turn_closed(name):
    tok = _tokenizer(name)
    renderer = ChatRenderer(tok)
    end_of_turn = renderer.end_of_turn_id
    closed = renderer.between_turns(INSTRUCTION, renderer.encode("I think 7.") + [end_of_turn])
    # stopped on the generation_config EOS (Llama-3 ships <|end_of_text|> there) or cut off: the turn is closed by
    # the template's own token, which y1 does not contain
    for y1 in (renderer.encode("I think 7.") + [tok.eos_token_id], renderer.encode("I think")):
        between = renderer.between_turns(INSTRUCTION, y1)
        assert between == [end_of_turn] + closed
