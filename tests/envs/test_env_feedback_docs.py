"""The README's feedback example runs as written: its module as a script, its `score` commands, its YAML."""

import json
import shlex
import subprocess
import sys

import yaml

from envs import make_env
from score.cli import main

HEADING = "### Feedback between attempts (extrinsic self-correction)"


def test_feedback_example_runs_as_written(tmp_path, monkeypatch, tiny_model_path, capsys, readme_blocks):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_hints.py").write_text(readme_blocks(HEADING, "python")[0])
    (tmp_path / "runs").mkdir()
    lines = [line for block in readme_blocks(HEADING, "bash") for line in block.splitlines() if line.strip()]
    script, printed = lines[0].split("  # ")
    assert script == "python my_hints.py"
    result = subprocess.run([sys.executable, "my_hints.py"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == printed

    printed_by = {}
    for line in lines[1:]:
        if line == "score tiny-model runs/tiny-base":  # the session's fixture is that same model
            (tmp_path / "runs/tiny-base").symlink_to(tiny_model_path)
            continue
        if line.startswith("PYTHONPATH=. "):
            monkeypatch.syspath_prepend(str(tmp_path))
            line = line.removeprefix("PYTHONPATH=. ")
        assert line.startswith("score "), line
        capsys.readouterr()
        assert main(shlex.split(line)[1:]) == 0, line
        printed_by[line.split(" ")[1]] = capsys.readouterr().out
    kinds = {name: json.loads((tmp_path / "runs" / name / "eval.json").read_text())["feedback"]
             for name in ("eval-high-low", "eval-oracle", "eval-intrinsic", "eval-tests")}
    assert kinds == {"eval-high-low": "extrinsic:high-low", "eval-oracle": "extrinsic:oracle",
                     "eval-intrinsic": "intrinsic", "eval-tests": "extrinsic:tests"}
    # `score compare` of an extrinsic and an intrinsic evaluation labels each side
    compare = [line for line in printed_by["compare"].splitlines() if line.startswith("| metric |")]
    assert compare == ["| metric | eval-oracle (extrinsic:oracle) | eval-intrinsic (intrinsic) | "
                       "eval-oracle (extrinsic:oracle) − eval-intrinsic (intrinsic) | significant |"]

    env_config = yaml.safe_load(readme_blocks(HEADING, "yaml")[0])["env"]
    assert make_env(env_config["name"], **env_config["kwargs"]).feedback_kind == "extrinsic:tests"
