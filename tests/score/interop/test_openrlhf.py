"""The exported OpenRLHF files, loaded and driven the way OpenRLHF does, without OpenRLHF installed.

OpenRLHF cannot be installed here (it pins a CUDA-only flash-attn), so the test writes a stand-in for the one module the
agent file imports, `openrlhf.utils.agent`, from OpenRLHF's documented contract (0.10 and 0.11), in our own words:

- `AgentExecutorBase.execute(prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None)`
  returns a dict with observation_tokens, action_ranges, reward, scores, extra_logs.
- `AgentInstanceBase`: `reset(states)` gets {"observation": prompt, "label": label} and returns {"observation": ...};
  `step(states)` gets observation_text, action_text, label, sampling_params and returns rewards (a tensor: OpenRLHF
  calls `.item()`), scores, environment_feedback, done, sampling_params, extra_logs.
- `MultiTurnAgentExecutor(agent_instance_cls)`: one instance per prompt; tokenizes the prompt without special tokens;
  then, until done: `await llm_engine.generate(token_ids, sampling_params)` (its `.outputs[0]` has `token_ids` and
  `text`), records the action's token range, calls step, adds rewards, appends the action's tokens and the tokenized
  feedback; the last step's scores and extra_logs are kept.

It is loaded as OpenRLHF loads an agent file: by path, `AgentExecutor` must subclass `AgentExecutorBase`, built with
no arguments. The reward file is loaded by path and called as `reward_func(queries, prompts, labels)`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from score.cli import main
from score.rollout import ChatRenderer

AGENT_INTERFACE = '''
from abc import ABC, abstractmethod


class AgentExecutorBase(ABC):
    @abstractmethod
    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        ...


class AgentInstanceBase(ABC):
    @abstractmethod
    def __init__(self, *args, **kwargs):
        ...

    async def reset(self, states, **kwargs):
        return states

    @abstractmethod
    async def step(self, states, **kwargs):
        ...


class MultiTurnAgentExecutor(AgentExecutorBase):
    def __init__(self, agent_instance_cls):
        assert issubclass(agent_instance_cls, AgentInstanceBase)
        self.agent_instance_cls = agent_instance_cls

    async def execute(self, prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images=None):
        agent = self.agent_instance_cls()
        observation = (await agent.reset({"observation": prompt, "label": label}))["observation"]
        tokens = hf_tokenizer(text=observation, add_special_tokens=False)["input_ids"]
        ranges, total, scores, logs = [], 0.0, None, {}
        while True:
            out = (await llm_engine.generate(tokens, sampling_params)).outputs[0]
            ranges.append((len(tokens), len(tokens) + len(out.token_ids)))
            result = await agent.step({"observation_text": observation, "action_text": out.text, "label": label,
                                       "sampling_params": sampling_params})
            total += result["rewards"].item()
            scores, logs = result.get("scores", total), result.get("extra_logs", {})
            feedback = result["environment_feedback"]
            observation = observation + out.text + feedback
            tokens = tokens + list(out.token_ids) + hf_tokenizer(text=feedback, add_special_tokens=False)["input_ids"]
            if result["done"]:
                break
        return {"prompt": prompt, "label": label, "observation_tokens": tokens, "action_ranges": ranges,
                "reward": total, "scores": scores, "extra_logs": logs}
'''

ENV_KWARGS = {"digits": 1, "num_train": 20, "num_test": 5}


@pytest.fixture
def openrlhf_standin(tmp_path, monkeypatch):
    package = tmp_path / "standin" / "openrlhf" / "utils"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "agent.py").write_text(AGENT_INTERFACE)
    monkeypatch.syspath_prepend(str(tmp_path / "standin"))
    yield
    for name in ("openrlhf", "openrlhf.utils", "openrlhf.utils.agent"):
        monkeypatch.delitem(__import__("sys").modules, name, raising=False)


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _export(tmp_path, *extra) -> tuple:
    agent, prompts = tmp_path / "agent_func.py", tmp_path / "prompts.jsonl"
    assert main(["export", "openrlhf", "--env", "arithmetic", "--env-kwargs", json.dumps(ENV_KWARGS),
                 "--out", str(agent), "--data", str(prompts), *extra]) == 0
    return agent, [json.loads(line) for line in prompts.read_text().splitlines()]


class ScriptedEngine:
    """Answers with the given texts in turn, each ending with the end-of-turn token (a finished generation)."""

    def __init__(self, tokenizer, texts):
        self.tokenizer, self.texts, self.prompts = tokenizer, list(texts), []

    async def generate(self, token_ids, sampling_params, **kwargs):
        self.prompts.append(list(token_ids))
        text = self.texts.pop(0)
        ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=text)])


@pytest.mark.parametrize(("answers", "alpha", "reward", "logs"), [
    (["wrong", "right"], 10.0, 11.0, {"acc_t1": 0.0, "acc_t2": 1.0, "delta_i2c": 1.0, "delta_c2i": 0.0}),
    (["right", "wrong"], 10.0, -10.0, {"acc_t1": 1.0, "acc_t2": 0.0, "delta_i2c": 0.0, "delta_c2i": 1.0}),
    (["right", "right"], 0.0, 1.0, {"acc_t1": 1.0, "acc_t2": 1.0, "delta_i2c": 0.0, "delta_c2i": 0.0}),
    (["right", "wrong", "right"], 10.0, 1.0,
     {"acc_t1": 1.0, "acc_t2": 0.0, "acc_t3": 1.0, "delta_i2c": 0.0, "delta_c2i": 1.0}),
    (["wrong", "wrong", "right"], 0.0, 1.0,
     {"acc_t1": 0.0, "acc_t2": 0.0, "acc_t3": 1.0, "delta_i2c": 0.0, "delta_c2i": 0.0}),
])
def test_agent_runs_k_attempts_like_score_train(openrlhf_standin, tmp_path, tiny_model_path, answers, alpha, reward,
                                                 logs):
    agent_path, rows = _export(tmp_path, "--attempts", str(len(answers)), "--alpha", str(alpha))
    from openrlhf.utils.agent import AgentExecutorBase

    module = _load(agent_path, "agent_module")
    assert issubclass(module.AgentExecutor, AgentExecutorBase)
    executor = module.AgentExecutor()

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    row = rows[0]  # "9+7=" (reference 16)
    problem_text = row["input"][-1]["content"]
    a, b = problem_text.rstrip("=").split("+")
    texts = [str(int(a) + int(b)) if answer == "right" else "99" for answer in answers]
    engine = ScriptedEngine(tokenizer, texts)
    prompt = tokenizer.apply_chat_template(row["input"], tokenize=False, add_generation_prompt=True)
    result = asyncio.run(executor.execute(prompt, row["label"], SimpleNamespace(max_tokens=8), 512, tokenizer, engine))

    assert result["reward"] == pytest.approx(reward)
    assert result["scores"] == float(answers[-1] == "right")
    assert result["extra_logs"] == logs
    # Token for token the conversation `score train` builds: [user: x] [assistant: y1] [user: p] [assistant: y2] ...
    renderer = ChatRenderer(tokenizer)
    between = renderer.between_turns("Check the answer above and write it again, corrected if needed.",
                                     [renderer.end_of_turn_id])
    expected, ranges = renderer.first_turn(row["input"]), []
    for k, text in enumerate(texts):
        ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
        ranges.append((len(expected), len(expected) + len(ids)))
        expected = expected + ids + (between if k < len(texts) - 1 else [])
    assert result["observation_tokens"] == expected
    assert result["action_ranges"] == ranges
    assert engine.prompts[1] == expected[: ranges[1][0]]


def test_agent_shows_the_environment_s_feedback(openrlhf_standin, tmp_path, tiny_model_path):
    """With `feedback: oracle` the user turn after a wrong attempt says so, as in `score train`."""
    agent = tmp_path / "agent_func.py"
    assert main(["export", "openrlhf", "--env", "arithmetic", "--env-kwargs",
                 json.dumps({**ENV_KWARGS, "feedback": "oracle"}), "--attempts", "3", "--out", str(agent),
                 "--data", str(tmp_path / "prompts.jsonl")]) == 0
    row = json.loads((tmp_path / "prompts.jsonl").read_text().splitlines()[0])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    engine = ScriptedEngine(tokenizer, ["99", str(sum(map(int, row["input"][-1]["content"].rstrip("=").split("+")))),
                                        "0"])
    prompt = tokenizer.apply_chat_template(row["input"], tokenize=False, add_generation_prompt=True)
    executor = _load(agent, "agent_feedback_module").AgentExecutor()
    result = asyncio.run(executor.execute(prompt, row["label"], SimpleNamespace(max_tokens=8), 512, tokenizer, engine))
    renderer = ChatRenderer(tokenizer)
    told = [tokenizer.decode(engine.prompts[k][len(engine.prompts[k - 1]):]) for k in (1, 2)]
    assert "The answer above is wrong. Write it again, corrected." in told[0]
    assert "The answer above is right. Write it again." in told[1]
    wrong = renderer.between_turns("The answer above is wrong. Write it again, corrected.", [renderer.end_of_turn_id])
    assert engine.prompts[1][-len(wrong):] == wrong
    assert result["extra_logs"]["acc_t2"] == 1.0


def test_reward_func_scores_queries_by_label_or_by_reference(tmp_path, tiny_model_path):
    reward_path = tmp_path / "reward_func.py"
    _, rows = _export(tmp_path)
    assert main(["export", "openrlhf", "--kind", "reward", "--env", "arithmetic", "--env-kwargs",
                 json.dumps(ENV_KWARGS), "--out", str(reward_path)]) == 0
    reward_func = _load(reward_path, "reward_func").reward_func

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    prompts = [tokenizer.apply_chat_template(row["input"], tokenize=False, add_generation_prompt=True)
               for row in rows[:2]]
    answers = [str(eval(row["input"][-1]["content"].rstrip("="))) for row in rows[:2]]  # "a+b" from the generator
    # As OpenRLHF decodes them: prompt + response, special tokens kept.
    queries = [prompts[0] + answers[0] + "<|im_end|>", prompts[1] + "99<|im_end|>"]
    out = reward_func(queries, prompts, [rows[0]["label"], rows[1]["label"]])
    assert out["rewards"].tolist() == [1.0, 0.0]
    assert out["scores"].tolist() == [1.0, 0.0]
    # A dataset of OpenRLHF's own kind: the label is the answer itself.
    out = reward_func(["Q: 2+2=\nA: 4", "Q: 2+2=\nA: 5"], ["Q: 2+2=\nA:", "Q: 2+2=\nA:"], ["4", "4"])
    assert out["rewards"].tolist() == [1.0, 0.0]


def test_export_refuses_what_the_frameworks_cannot_load(tmp_path, capsys):
    assert main(["export", "openrlhf", "--env", "arithmetic", "--out", str(tmp_path / "agent.txt")]) == 2
    assert "only .py" in capsys.readouterr().err
    assert main(["export", "openrlhf", "--env", "nope", "--out", str(tmp_path / "a.py")]) == 2
    assert "unknown environment 'nope'" in capsys.readouterr().err
    assert main(["export", "openrlhf", "--env", "arithmetic", "--attempts", "1", "--out", str(tmp_path / "a.py")]) == 2
    assert "--attempts must be >= 2" in capsys.readouterr().err
