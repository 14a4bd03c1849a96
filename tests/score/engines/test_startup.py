"""vLLM refusing a model ends in one line: at once when vLLM declares it (CPU attention head sizes), after a real
start otherwise; `engine: auto` then uses the transformers engine.

The trigger is real: vLLM 0.32's CPU attention has no kernel for head size 16 (a model with hidden size 32 and two
heads), which it reports only in its worker process, at the first forward pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from score.cli import main
from score.engines import EngineRefused, engine_kind, make_engine
from score.engines.base import SamplingParams
from score.tiny import build_tiny_model, default_corpus

pytest.importorskip("vllm")


@pytest.fixture(scope="module")
def head16_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("head16"), default_corpus(), hidden_size=32, num_heads=2)


def test_declared_refusal_is_one_line_and_auto_falls_back(head16_model, capsys):
    with pytest.raises(EngineRefused) as refused:
        make_engine("vllm", str(head16_model))
    message = str(refused.value)
    assert "\n" not in message and "this model's is 16" in message and "32, 64" in message

    engine = make_engine("auto", str(head16_model))
    assert engine_kind(engine) == "hf"
    assert len(engine.generate([[1, 2, 3]], SamplingParams(temperature=0.0, max_new_tokens=3))[0].token_ids) >= 1
    said = [line for line in capsys.readouterr().err.splitlines() if "vLLM" in line]
    assert len(said) == 1 and said[0].endswith("; using the transformers engine")


def test_score_eval_says_why_in_one_line(head16_model, tmp_path, capsys):
    args = ["eval", "--model", str(head16_model), "--env", "arithmetic", "--env-kwargs",
            json.dumps({"digits": 1, "num_train": 10, "num_test": 3}), "--max-new-tokens", "4", "--no-plots"]
    assert main([*args, "--engine", "vllm", "--out", str(tmp_path / "vllm")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("score eval: error: vLLM cannot run") and "Traceback" not in err
    assert sum("vLLM" in line for line in err.splitlines()) == 1

    assert main([*args, "--out", str(tmp_path / "auto")]) == 0
    assert json.loads((tmp_path / "auto" / "eval.json").read_text())["config"]["engine"] == "hf"


@pytest.mark.slow
def test_refusal_found_by_starting_the_engine(head16_model, monkeypatch):
    """Without the declared check, vLLM starts, dies at the first forward pass, and the root cause is still one line;
    the full log stays on disk and no engine process is left behind."""
    from score.engines import startup

    monkeypatch.setattr(startup, "cpu_refusal", lambda model_path: None)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(EngineRefused) as refused:
        make_engine("vllm", str(head16_model), kv_cache_memory_bytes=1 << 28, enforce_eager=True)
    message = str(refused.value)
    assert "\n" not in message
    assert "RuntimeError: Unsupported CPU attention configuration: head_dim=16" in message
    log = message.rsplit("full log: ", 1)[1].rstrip(")")
    assert "Traceback" in Path(log).read_text()
    engine_children = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
                       and "resource_tracker" not in " ".join(p.cmdline())]
    assert engine_children == []


def _train_overrides(model, out, engine):
    return [f"output_dir={out}", f"model.path={model}", "env.name=arithmetic",
            'env.kwargs={"digits": 1, "num_train": 10, "num_test": 3}', f"rollout.engine={engine}", "rollout.n=2",
            "rollout.max_new_tokens=4", "train.steps=1", "train.prompts_per_step=2", "log.tensorboard=false"]


def test_score_train_says_why_in_one_line_and_auto_falls_back(head16_model, ray_cluster, tmp_path, capsys):
    from score.config import load_config
    from score.train import train

    with pytest.raises(EngineRefused) as refused:
        train(load_config(None, _train_overrides(head16_model, tmp_path / "vllm", "vllm")))
    assert "\n" not in str(refused.value) and "this model's is 16" in str(refused.value)

    capsys.readouterr()
    out = tmp_path / "auto"
    train(load_config(None, _train_overrides(head16_model, out, "auto")))
    said = [line for line in capsys.readouterr().out.splitlines() if "vLLM" in line]
    assert len(said) == 1 and said[0].startswith("vLLM cannot run") and said[0].endswith(
        "; using the transformers engine")
    assert json.loads((out / "summary.json").read_text())["engine"] == "hf"
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
