"""A generator whose completions a test chooses: the labelling rules (Math-Shepherd, CoTnPoT) checked on known
completions. The tests that run the real engines use the tiny model instead."""

import pytest

from score.engines.base import Completion


class ScriptedGenerate:
    """generate(prompts, params): the completion `script(prompt_ids) -> token ids` for each prompt."""

    def __init__(self, script):
        self.script = script
        self.prompts = []

    def __call__(self, prompts, params):
        self.prompts += prompts
        outputs = [list(self.script(p)) for p in prompts]
        return [Completion(ids, [0.0] * len(ids), True) for ids in outputs]


@pytest.fixture
def scripted():
    return ScriptedGenerate
