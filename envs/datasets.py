"""Rows of a dataset: from a local JSON/JSONL/Parquet file or from the Hugging Face hub through `datasets`.

Environments turn rows into `Problem`s; this module only fetches rows and checks that the fields an environment
needs are there, so that bad data fails when training starts (with the row index and the field name), not hours
later inside a reward function. `datasets` and `pyarrow` are imported only when a dataset is actually loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")

#: A data source: one hub name or local file, or one per split (`{"train": "a.jsonl", "test": "b.jsonl"}`).
Source = str | Mapping[str, str]


def is_local(path: str) -> bool:
    """Whether `path` names a local data file (by its suffix) rather than a dataset on the Hugging Face hub.

    >>> is_local("data/train.jsonl"), is_local("openai/gsm8k")
    (True, False)
    """
    return str(path).lower().endswith(LOCAL_SUFFIXES)


def source_for_split(source: Source, split: str) -> str:
    """The file or hub name holding `split`: a per-split mapping is looked up, `{split}` in a string is filled in.

    >>> source_for_split({"train": "a.jsonl", "test": "b.jsonl"}, "test")
    'b.jsonl'
    >>> source_for_split("data/math_{split}.jsonl", "train")
    'data/math_train.jsonl'
    """
    if isinstance(source, Mapping):
        if split not in source:
            raise ValueError(f"env.kwargs.path has no entry for split {split!r}; it has {sorted(source)}")
        return str(source[split])
    return str(source).replace("{split}", split)


def read_local(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a local file: JSON Lines (.jsonl), a JSON list of objects (.json) or Parquet (.parquet)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"env.kwargs.path: no such data file {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if suffix == ".jsonl":
        rows = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {line_number} is not valid JSON ({err})") from err
    elif suffix == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: a .json data file must hold a list of objects (use .jsonl for JSON Lines)")
    else:
        raise ValueError(f"{path}: unsupported data file type {suffix!r}; use one of {', '.join(LOCAL_SUFFIXES)}")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {index} is a {type(row).__name__}, not an object with named fields")
    return rows


def load_hub(name: str, *, split: str, config: str | None = None) -> list[dict[str, Any]]:
    """All rows of one split of a Hugging Face hub dataset (from the local cache when there is no network)."""
    import datasets

    try:
        data = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # offline, unknown name, bad config/split: all end here with one actionable message
        raise RuntimeError(
            f"could not load dataset {name!r} (config={config!r}, split={split!r}) with `datasets`: {err}\n"
            "The data must be downloaded first (run once with network access so that it lands in the Hugging Face "
            "cache, then HF_HUB_OFFLINE=1 reads it offline), or given as a local JSON/JSONL/Parquet file with "
            "env.kwargs.path=/path/to/file.jsonl."
        ) from err
    return data.to_list()


def load_rows(source: Source, *, split: str, hub_split: str | None = None, config: str | None = None) -> list[dict]:
    """Rows of `split` from `source` (see `source_for_split`); `hub_split` renames the split on the hub."""
    path = source_for_split(source, split)
    if is_local(path):
        return read_local(path)
    return load_hub(path, split=hub_split or split, config=config)


def check_rows(rows: Iterable[Mapping[str, Any]], fields: Mapping[str, str], *, where: str) -> list[Mapping]:
    """Fail with the row index and field name when a row lacks a required field, or when there are no rows.

    `fields` maps what the environment needs ("problem", "reference") to the column that holds it.

    >>> check_rows([{"q": "1+1", "a": "2"}], {"problem": "q", "reference": "a"}, where="demo")
    [{'q': '1+1', 'a': '2'}]
    >>> check_rows([{"q": "1+1"}], {"problem": "q", "reference": "a"}, where="demo")
    Traceback (most recent call last):
    ...
    ValueError: demo: row 0 has no field 'a' (the reference). Its fields are ['q']; map another column with env.kwargs.fields={'reference': 'COLUMN'}.
    """
    rows = list(rows)
    if not rows:
        raise ValueError(f"{where}: the dataset is empty (0 rows)")
    for index, row in enumerate(rows):
        for role, column in fields.items():
            value = row.get(column)
            if value is None or (isinstance(value, str | list | tuple | dict) and len(value) == 0):
                problem = "has no field" if column not in row else "has an empty field"
                raise ValueError(
                    f"{where}: row {index} {problem} {column!r} (the {role}). Its fields are {sorted(row)}; "
                    f"map another column with env.kwargs.fields={{{role!r}: 'COLUMN'}}."
                )
    return rows
