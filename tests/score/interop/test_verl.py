"""The exported verl reward file and prompts, loaded and called the way verl does, without verl installed.

verl's contract (custom_reward_function, 0.4 and later), in our own words: the file is imported by path and the
function named by `custom_reward_function.name` (default compute_score) is called once per response with keywords,
`compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)`, where solution_str is the
response decoded without special tokens and the others come from the dataset row (`data_source`,
`reward_model["ground_truth"]`, `extra_info`); a number (or a dict with "score") comes back. The dataset is Parquet
with a `prompt` column of chat messages.
"""

from __future__ import annotations

import importlib.util
import json

import pyarrow.parquet as pq

from score.cli import main


def test_compute_score_and_parquet_prompts(tmp_path):
    reward_path, data_path = tmp_path / "compute_score.py", tmp_path / "train.parquet"
    env_kwargs = json.dumps({"digits": 1, "num_train": 20, "num_test": 5})
    assert main(["export", "verl", "--env", "arithmetic", "--env-kwargs", env_kwargs, "--out", str(reward_path),
                 "--data", str(data_path), "--limit", "3"]) == 0

    spec = importlib.util.spec_from_file_location("custom_module", reward_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    compute_score = module.compute_score

    rows = pq.read_table(data_path).to_pylist()
    assert len(rows) == 3 and {"data_source", "prompt", "reward_model", "extra_info"} <= rows[0].keys()
    row = rows[0]
    assert row["prompt"][-1]["role"] == "user" and row["data_source"] == "arithmetic"
    right = str(eval(row["prompt"][-1]["content"].rstrip("=")))  # "a+b" from the generator

    def score(solution: str, ground_truth=row["reward_model"]["ground_truth"]) -> float:
        return compute_score(data_source=row["data_source"], solution_str=solution, ground_truth=ground_truth,
                             extra_info=row["extra_info"])

    assert score(f"The answer is {right}") == 1.0
    assert score("The answer is 99") == 0.0
    assert score("no number at all") == 0.0
    assert score("4", ground_truth="4") == 1.0  # a dataset of verl's own kind: the ground truth is the answer


def test_verl_export_writes_no_agent(tmp_path, capsys):
    assert main(["export", "verl", "--env", "arithmetic", "--kind", "agent", "--out", str(tmp_path / "r.py")]) == 2
    assert "compute_score" in capsys.readouterr().err
    assert main(["export", "verl", "--env", "arithmetic", "--data", str(tmp_path / "train.jsonl")]) == 2
    assert "Parquet" in capsys.readouterr().err
