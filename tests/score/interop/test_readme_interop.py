"""The README's "Interop" section runs as written: its `score` commands, its reward file and its YAML."""

from __future__ import annotations

import json
import shlex

import yaml

from envs import make_env
from score.cli import main

HEADING = "## Interop: OpenRLHF and verl"


def test_commands_reward_file_and_yaml(tmp_path, monkeypatch, tiny_model_path, readme_blocks):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_reward.py").write_text(readme_blocks(HEADING, "python")[0])
    (tmp_path / "runs").mkdir()
    commands = [line for block in readme_blocks(HEADING, "bash") for line in block.splitlines()
                if line.startswith("score ")]
    assert any("export openrlhf" in c for c in commands) and any("export verl" in c for c in commands)
    for command in commands:
        if command.startswith("score tiny-model runs/tiny-base"):  # the session's fixture is that same model
            (tmp_path / "runs/tiny-base").symlink_to(tiny_model_path)
            continue
        assert main(shlex.split(command)[1:]) == 0, command
    for path in ("openrlhf/agent_func.py", "openrlhf/prompts.jsonl", "openrlhf/reward_func.py",
                 "verl/compute_score.py", "verl/train.parquet", "verl/test.parquet"):
        assert (tmp_path / "runs" / path).is_file(), path
    assert json.loads((tmp_path / "runs/eval-my-reward/eval.json").read_text())["n"] == 20

    env_config = yaml.safe_load(readme_blocks(HEADING, "yaml")[0])["env"]
    env = make_env(env_config["name"], **env_config["kwargs"])
    problem = env.load("test")[0]
    assert env.rewards([f"It is {problem.reference}.", "It is 100000."], [problem] * 2) == [1.0, 0.0]
