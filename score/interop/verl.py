"""A score environment's reward inside verl: a `compute_score` file for `custom_reward_function.path`.

verl calls `compute_score(data_source=, solution_str=, ground_truth=, extra_info=)` once per response, with the
response decoded without special tokens, and uses the returned number as the reward at the response's last token.
`score export verl` writes that file, and the environment's prompts as verl's Parquet rows (`data_source`, `prompt`
as chat messages, `reward_model.ground_truth` holding the problem's label, `extra_info`).
"""

from __future__ import annotations

import pprint
from pathlib import Path
from typing import Any

from score.interop.problems import problem_index


def score_solution(env_name: str, env_kwargs: dict[str, Any], solution_str: str, ground_truth: Any) -> float:
    """The environment's reward of one verl response; `ground_truth` is a problem label or the reference itself."""
    index = problem_index(env_name, env_kwargs)
    (reward,) = index.env.rewards([solution_str], [index.find(ground_truth)])
    return float(reward)


COMPUTE_SCORE_FILE = '''"""verl reward function: the reward of the score environment {env!r} for one response.

Written by `{command}`.
Train with verl:

    python3 -m verl.trainer.main_ppo custom_reward_function.path={path} custom_reward_function.name=compute_score \\
        data.train_files=TRAIN.parquet data.val_files=TEST.parquet ...

where the Parquet files come from `score export verl --env {env} --split train --data TRAIN.parquet` (same
--env-kwargs). A ground truth that is not one of those labels is taken as the reference answer itself.
"""

from score.interop.verl import score_solution

ENV = {env!r}
ENV_KWARGS = {env_kwargs}


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    return score_solution(ENV, ENV_KWARGS, solution_str, ground_truth)
'''


def write_compute_score_file(path: str | Path, env_name: str, env_kwargs: dict[str, Any], *,
                             command: str = "score export verl") -> Path:
    """Write the file verl's `custom_reward_function.path` loads."""
    path = Path(path)
    if path.suffix != ".py":
        raise ValueError(f"--out {path}: verl loads the reward function from a .py file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(COMPUTE_SCORE_FILE.format(env=env_name, env_kwargs=pprint.pformat(env_kwargs), path=path.name,
                                              command=command))
    return path


def write_prompts(path: str | Path, rows: list[dict[str, Any]], env_name: str, split: str) -> Path:
    """verl's RL dataset as Parquet, one row per problem (what its data_preprocess scripts write)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix != ".parquet":
        raise ValueError(f"--data {path}: verl reads Parquet files (name it *.parquet)")
    records = [
        {"data_source": env_name, "prompt": row["messages"],
         "reward_model": {"style": "rule", "ground_truth": row["label"]},
         "extra_info": {"split": split, "index": i}}
        for i, row in enumerate(rows)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)
    return path
