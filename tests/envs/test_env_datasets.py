"""Loading rows from local files and the hub, and failing early on bad data (envs/datasets.py, Environment.load)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from envs import make_env
from envs.datasets import load_rows, read_local

DATA = Path(__file__).parent.parent / "data"
ROWS = [{"q": "What is 2 + 2?", "a": "4"}, {"q": "What is 3 * 3?", "a": "9"}]


def write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_local_files_of_every_format_give_the_same_rows(tmp_path, suffix):
    path = write(tmp_path / f"rows{suffix}", ROWS)
    assert read_local(path) == ROWS
    env = make_env("math_dataset", path=str(path), fields={"problem": "q", "reference": "a"})
    problems = env.load("test")
    assert [(p.prompt, p.reference) for p in problems] == [("What is 2 + 2?", "4"), ("What is 3 * 3?", "9")]


def test_per_split_files_by_mapping_and_by_placeholder(tmp_path):
    write(tmp_path / "qa_train.jsonl", ROWS[:1])
    write(tmp_path / "qa_test.jsonl", ROWS[1:])
    fields = {"problem": "q", "reference": "a"}
    by_placeholder = make_env("math_dataset", path=str(tmp_path / "qa_{split}.jsonl"), fields=fields)
    by_mapping = make_env(
        "math_dataset",
        path={"train": str(tmp_path / "qa_train.jsonl"), "test": str(tmp_path / "qa_test.jsonl")},
        fields=fields,
    )
    for env in (by_placeholder, by_mapping):
        assert [p.reference for p in env.load("train")] == ["4"]
        assert [p.reference for p in env.load("test")] == ["9"]


def test_a_row_without_a_required_field_fails_with_its_index_and_field_name(tmp_path):
    rows = [ROWS[0], ROWS[1], {"q": "What is 1 + 1?", "answer": "2"}]
    path = write(tmp_path / "bad.jsonl", rows)
    env = make_env("math_dataset", path=str(path), fields={"problem": "q", "reference": "a"})
    with pytest.raises(ValueError, match=r"row 2 has no field 'a' \(the reference\)") as err:
        env.load("train")
    assert "env.kwargs.fields" in str(err.value)  # says how to fix it


def test_an_empty_field_is_reported_like_a_missing_one(tmp_path):
    env = make_env("gsm8k", path=str(write(tmp_path / "bad.jsonl", [{"question": "", "answer": "#### 1"}])))
    with pytest.raises(ValueError, match=r"row 0 has an empty field 'question' \(the problem\)"):
        env.load("train")


def test_an_empty_dataset_fails_at_load(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty"):
        make_env("math", path=str(tmp_path / "empty.jsonl")).load("train")


def test_bad_files_fail_with_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="env.kwargs.path"):
        read_local(tmp_path / "missing.jsonl")
    (tmp_path / "object.json").write_text('{"q": "x"}')
    with pytest.raises(ValueError, match="list of objects"):
        read_local(tmp_path / "object.json")
    (tmp_path / "broken.jsonl").write_text('{"q": "x"}\n{oops\n')
    with pytest.raises(ValueError, match="line 2"):
        read_local(tmp_path / "broken.jsonl")


def test_unknown_split_and_unknown_option_are_rejected():
    env = make_env("math500", path=str(DATA / "math500.jsonl"))
    with pytest.raises(ValueError, match="splits \\['test'\\]"):
        env.load("train")
    with pytest.raises(TypeError, match="env.kwargs.colour"):
        make_env("gsm8k", colour="blue")


def test_a_hub_dataset_without_network_says_to_download_or_give_a_local_file():
    # Offline mode makes `datasets` fail at once instead of retrying the network for half a minute.
    code = "from envs.datasets import load_rows\nload_rows('openai/gsm8k', split='test', config='main')"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert "could not load dataset 'openai/gsm8k'" in result.stderr
    assert "must be downloaded" in result.stderr and "env.kwargs.path" in result.stderr


def test_load_rows_reads_a_local_file_for_any_split():
    assert load_rows(str(DATA / "qa.json"), split="train") == load_rows(str(DATA / "qa.json"), split="test")
